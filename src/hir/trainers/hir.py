"""HIR: Hindsight Instruction Relabeling (Zhang et al., 2023; docs/method.md section 2).

Every buffered sample is relabeled with the instruction it satisfies in hindsight (binary: a
correct output -> "correct answer", a wrong one -> "wrong answer"; graded scores -> quantile
instructions; or a user function), and the policy trains `epochs_per_iteration` epochs on

    L = CE(label smoothing) + contrastive_weight * contrastive - entropy_weight * entropy

Options beyond the paper (its values are the defaults), each one way to give the contrastive
term a larger share of the update (docs/findings.md says why that share matters):
`contrastive_score` (sum vs mean token scores), `balance_instructions` (each instruction's items
weigh the same in the CE), `contrast_first_epochs` (epochs on the contrastive term alone first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hir.callables import load_callable
from hir.errors import HIRError
from hir.losses import (
    TokenStatistics,
    balanced_weights,
    in_batch_contrastive_loss,
    label_smoothed_nll,
    mean_entropy,
    pairwise_contrastive_loss,
    sequence_scores,
)
from hir.online.learned_relabel import LearnedRelabel
from hir.online.relabel import (
    BinaryRelabel,
    CallableRelabel,
    ConstraintRelabel,
    OwnInstructionRelabel,
    QuantileRelabel,
)
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.tasks import Task
from hir.trainers.loop import SupervisedTrainer, TrainItem, item_weights
from hir.trainers.run_config import SamplingConfig, SupervisedFields

SCRIPTED = ("binary", "quantile", "percentile")
IN_BATCH_GROUP = 8  # the in-batch form scores every output under every context: group^2 sequences


@dataclass
class HIRConfig(SupervisedFields, SamplingConfig):
    """Hindsight Instruction Relabeling, with the paper's defaults.

    Each iteration samples `num_samples` outputs per training query at `temperature` under the
    target instruction, scores them, adds them to the replay buffer, relabels every buffered
    sample with the instruction it satisfies, trains `epochs_per_iteration` epochs on
    L = CE(label smoothing) + contrastive_weight * contrastive - entropy_weight * entropy,
    and evaluates greedy accuracy under the target instruction.
    """

    relabel: str = field(
        default="binary",
        metadata=flag_help("binary | quantile | percentile (quantile buckets in the wording of "
                           "the method's RLHF example; for a reward model) | constraints (the "
                           "constraints an output satisfies, for --task constraints) | "
                           "module:function"),
    )  # fmt: skip
    wrong_instruction: str | None = field(
        default=None, metadata=flag_help("default: the task's wrong-answer instruction")
    )
    num_buckets: int = field(
        default=4, metadata=flag_help("quantile relabel: number of score buckets")
    )
    graded_keeps_instruction: bool = field(
        default=True,
        metadata=flag_help("quantile/percentile relabel: the bucket's words follow the task's "
                           "instruction (false: the bucket's words alone, as the paper's example, "
                           "which names no task)"),
    )  # fmt: skip
    contrastive_weight: float = field(
        default=1.0, metadata=flag_help("alpha (paper: 1); 0 = no contrastive term")
    )
    contrastive_form: str = field(
        default="pairwise",
        metadata=flag_help("pairwise (public code) | in_batch (paper's equation)"),
    )
    contrastive_smoothing: float = field(
        default=0.2, metadata=flag_help("epsilon of the pairwise form (public code: 0.2)")
    )
    contrastive_score: str = field(
        default="mean",
        metadata=flag_help("a sequence's score in the contrastive term: mean token log-prob "
                           "(public code) | sum (the sequence's log-prob)"),
    )  # fmt: skip
    balance_instructions: bool = field(
        default=False,
        metadata=flag_help("weight the cross-entropy so that each instruction's items count "
                           "equally over the buffer (paper: off; every item counts once)"),
    )  # fmt: skip
    contrast_first_epochs: int = field(
        default=0,
        metadata=flag_help("the first N epochs of each iteration train the contrastive term "
                           "alone, the rest the whole loss (paper: 0)"),
    )  # fmt: skip
    entropy_weight: float = field(
        default=0.001, metadata=flag_help("beta (paper: 0.001); 0 = no entropy term")
    )
    feedback_budget: float = field(
        default=1.0,
        metadata=flag_help("share of the samples the feedback scores; a classifier learned from "
                           "them relabels the rest (the learned relabeler; it reads the output "
                           "alone). 1 = every sample scored"),
    )  # fmt: skip
    sub_output_prob: float = field(
        default=0.5,
        metadata=flag_help(
            "share of multi-word samples trained as prefix-in-context sub-outputs; 0 = off"
        ),
    )

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.contrastive_weight >= 0, "contrastive_weight must be >= 0"),
            (self.entropy_weight >= 0, "entropy_weight must be >= 0"),
            (0 <= self.contrastive_smoothing < 1, "contrastive_smoothing must be in [0, 1)"),
            (0 <= self.sub_output_prob <= 1, "sub_output_prob must be in [0, 1]"),
            (self.num_buckets >= 2, "num_buckets must be >= 2"),
            (0 < self.feedback_budget <= 1, "feedback_budget must be in (0, 1]"),
            (
                self.feedback_budget == 1 or self.relabel in SCRIPTED,
                f"feedback_budget < 1 learns a scripted relabeler: set --relabel to one of {', '.join(SCRIPTED)}",
            ),
            (self.contrastive_score in ("mean", "sum"), "contrastive_score must be mean or sum"),
            (
                0 <= self.contrast_first_epochs <= self.epochs_per_iteration,
                "contrast_first_epochs must be in [0, epochs_per_iteration]",
            ),
            (
                self.contrast_first_epochs == 0 or self.contrastive_weight > 0,
                "contrast_first_epochs needs contrastive_weight > 0 (there is no term to train)",
            ),
            (
                self.contrastive_form in ("pairwise", "in_batch"),
                "contrastive_form must be pairwise or in_batch",
            ),
            (
                self.relabel != "constraints" or self.sub_output_prob == 0,
                "--relabel constraints needs --sub_output_prob 0: a part of an output does not "
                "meet the constraints the whole output met",
            ),
        ]


class HIRTrainer(SupervisedTrainer):
    method = "hir"
    config_class = HIRConfig

    def __init__(self, model, task, config: HIRConfig | None = None, *, tokenizer=None,
                 reward=None, relabeler=None) -> None:  # fmt: skip
        super().__init__(model, task, config, tokenizer=tokenizer, reward=reward)
        if self.reward is not None and relabeler is None:
            self.check_reward_settings(self.config)
        self.relabeler = relabeler or make_relabeler(self.config, self.task)

    @classmethod
    def check_reward_settings(cls, config: HIRConfig) -> None:
        if config.relabel == "binary":
            raise HIRError(
                "HIR with a reward (model) needs graded relabeling: its scores have no "
                "correct/wrong threshold; pass --relabel percentile (or quantile)"
            )

    @property
    def target_instruction(self) -> str:
        return self.relabeler.target_instruction

    @classmethod
    def evaluation_instruction(cls, config: HIRConfig, task: Task) -> str:
        """The relabeler's target: the correct-answer instruction, or with quantile relabeling
        the top bucket's ("Give an answer that scores in the top 25%.")."""
        return make_relabeler(config, task).target_instruction

    def feedback_share(self) -> float:
        return self.config.feedback_budget

    def training_items(self, iteration: int) -> list[TrainItem]:
        return self.relabel(self.buffer.samples)

    def relabel(self, samples: Sequence[Sample]) -> list[TrainItem]:
        """Every buffered sample, with the instruction it satisfies in hindsight."""
        if isinstance(self.relabeler, LearnedRelabel):
            self.relabeler.fit([s.output for s in samples], [s.score for s in samples])
        else:
            self.relabeler.fit([s.score for s in samples])
        items = []
        for s in samples:
            example = self.examples_by_id[s.query_id]
            instruction = self.relabeler(s.instruction, example.query, s.output, s.score)
            items.append(TrainItem(example, instruction, s.output, answer=s.answer,
                                   opposite=self.opposite(s.instruction, instruction)))  # fmt: skip
        return items

    def opposite_of(self, item: TrainItem) -> str:
        """The item's opposite as relabeling set it, or, for an item made elsewhere, the
        relabeler's opposite of its instruction."""
        return self.relabeler.opposite(item.instruction) if item.opposite is None else item.opposite

    def opposite(self, sampled_under: str, relabeled: str) -> str:
        """What the pairwise contrastive term tells `relabeled` apart from: the relabeler's
        opposite (the paper's tasks: the other instruction); where each example has its own
        instruction, the one the sample was drawn under, or, for a sample that met it, that
        instruction's wrong-answer form (`Task.wrong_for`)."""
        if not self.task.has_own_instructions:
            return self.relabeler.opposite(relabeled)
        return sampled_under if relabeled != sampled_under else self.task.wrong_for(sampled_under)

    def weighted(self, items: Sequence[TrainItem]) -> list[TrainItem]:
        """The supervised weights, times instruction-balanced ones (`balance_instructions`)."""
        items = super().weighted(items)
        if not self.config.balance_instructions:
            return items
        weights = balanced_weights([i.instruction for i in items])
        return [dataclasses.replace(i, weight=i.weight * w) for i, w in zip(items, weights)]

    def update(self, items: Sequence[TrainItem], iteration: int) -> dict:
        """One iteration of HIR's training (docs/method.md section 3): the relabeled items with
        their CE weights, the frozen layers run once for all of them, then the epochs of `loss`
        (CE + contrastive - entropy); with `contrast_first_epochs`, the first epochs of the
        contrastive term alone (`contrastive_loss`)."""
        agreement = getattr(self.relabeler, "agreement", None)  # the learned relabeler's
        extra = {} if agreement is None else {"relabel_agreement": agreement}
        if not items:
            return {"train_steps": 0, "train_items": 0, **extra}
        items = self.weighted(items)
        self.policy.precompute_frozen_layers(*self.training_pairs(items))
        first, epochs = self.config.contrast_first_epochs, self.config.epochs_per_iteration
        if first:
            contrastive = self.train_epochs(items, self.contrastive_loss, first, iteration)
            rest = epochs - first
            metrics = self.train_epochs(items, self.loss, rest, iteration) if rest else {}
            metrics.update({f"contrast_first/{k}": v for k, v in contrastive.items()})
            metrics["train_steps"] = contrastive["train_steps"] + metrics.get("train_steps", 0)
        else:
            metrics = self.train_epochs(items, self.loss, epochs, iteration)
        target = self.target_instruction
        metrics["train_items"] = len(items)
        metrics["relabeled_target_share"] = sum(
            i.instruction == self.task.instruction_for(i.example, target) for i in items
        ) / len(items)
        return {**metrics, **extra}

    # -- the loss ------------------------------------------------------------------------------

    def training_pairs(self, items: Sequence[TrainItem]) -> tuple[list[str], list[str]]:
        prompts, outputs = super().training_pairs(items)
        if self.config.contrastive_weight and self.config.contrastive_form == "pairwise":
            opposite = [self.task.prompt(i.example.query, self.opposite_of(i)) for i in items]
            return prompts + opposite, outputs * 2
        return prompts, outputs

    def contrastive_loss(self, batch: list[TrainItem]) -> tuple[torch.Tensor, dict[str, float]]:
        """contrastive_weight * the contrastive term alone (the contrast-first epochs)."""
        return self.loss(batch, contrastive_only=True)

    def loss(
        self, batch: list[TrainItem], contrastive_only: bool = False
    ) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        contexts, outputs = zip(*(self._with_sub_output(item) for item in batch))
        contexts, outputs = list(contexts), list(outputs)
        prompts = [self.task.prompt(i.example.query, i.instruction) for i in batch]
        if config.contrastive_weight and config.contrastive_form == "pairwise":
            opposite = [self.task.prompt(i.example.query, self.opposite_of(i)) for i in batch]
            # Both instructions in one forward pass.
            both = self.policy.statistics_for(
                prompts + opposite, outputs * 2, self.model, contexts * 2
            )
            n = len(batch)
            scores = sequence_scores(both, config.contrastive_score)
            contrastive = pairwise_contrastive_loss(
                scores[:n], scores[n:], config.contrastive_smoothing
            )
            statistics = both.rows(slice(0, n))
        elif config.contrastive_weight:
            statistics, contrastive = self._in_batch(prompts, contexts, outputs)
        else:
            statistics = self.policy.statistics_for(prompts, outputs, self.model, contexts)
            contrastive = torch.zeros((), device=statistics.mask.device)
        if contrastive_only:
            loss = config.contrastive_weight * contrastive
            return loss, {"loss": loss.item(), "loss_contrastive": contrastive.item()}
        weights = item_weights(batch, statistics.mask.device)
        sft = label_smoothed_nll(statistics, config.label_smoothing, weights)
        entropy = mean_entropy(statistics)
        loss = sft + config.contrastive_weight * contrastive - config.entropy_weight * entropy
        terms = {"loss": loss.item(), "loss_sft": sft.item(),
                 "loss_contrastive": contrastive.item(), "entropy": entropy.item()}  # fmt: skip
        return loss, terms

    def _in_batch(
        self, prompts: list[str], contexts: list[str], outputs: list[str]
    ) -> tuple[TokenStatistics, torch.Tensor]:
        """The paper's in-batch form over groups of IN_BATCH_GROUP:
        P[i, k] = log P(o_i | q_k, p_k). With sub-output, o_i is a suffix whose prefix stays
        with it (prompt_k + prefix_i), so that only the (query, instruction) varies along k.
        Returns the statistics of each output under its own prompt, and the loss."""
        losses, diagonals = [], []
        for begin in range(0, len(prompts), IN_BATCH_GROUP):
            group = range(begin, min(begin + IN_BATCH_GROUP, len(prompts)))
            m = len(group)
            statistics = self.policy.statistics_for(
                [prompts[k] for i in group for k in group],
                [outputs[i] for i in group for _ in group],
                self.model,
                [contexts[i] for i in group for _ in group],
            )
            scores = sequence_scores(statistics, self.config.contrastive_score)
            losses.append(in_batch_contrastive_loss(scores.view(m, m)))
            diagonals.append(statistics.rows([i * m + i for i in range(m)]))
        return TokenStatistics.cat(diagonals), torch.stack(losses).mean()

    def _with_sub_output(self, item: TrainItem) -> tuple[str, str]:
        """(extra context, output to predict). With probability sub_output_prob a multi-word
        output is cut at a random word: the prefix joins the context, the rest is predicted
        under the instruction the *whole* output was relabeled with.

        This differs from both sources: the paper relabels by what the remaining part achieves,
        and the public code trains a random window [s, e) relabeled by whether the prefix
        o[:e] is correct. Judging a part needs a feedback function defined on parts, which a
        final-answer verifier is not; the whole output's label is the one we know holds."""
        words = item.output.split(" ")
        if len(words) > 1 and self.rng.random() < self.config.sub_output_prob:
            cut = self.rng.randrange(1, len(words))
            head, rest = " ".join(words[:cut]), " ".join(words[cut:])
            if self.policy.chat:
                # The assistant's turn opens right before the head; the rest is predicted with
                # the space that joined it to the head.
                return head, " " + rest
            return " " + head, rest
        return "", item.output


def make_relabeler(config: HIRConfig, task: Task):
    correct = config.correct_instruction or task.correct_instruction
    wrong = config.wrong_instruction or task.wrong_instruction
    if config.relabel == "constraints":
        return ConstraintRelabel(task, config.seed)
    if config.relabel == "binary" and task.has_own_instructions:
        return OwnInstructionRelabel(wrong, config.success_threshold)
    if task.has_own_instructions:
        raise HIRError(
            f"--relabel {config.relabel} needs one instruction for the whole task, and the examples "
            f"of {task.name!r} have their own: use --relabel constraints or binary"
        )
    if config.relabel in SCRIPTED:
        if config.relabel == "binary":
            scripted = BinaryRelabel(correct, wrong, config.success_threshold)
        else:
            wording = "top" if config.relabel == "quantile" else "percentile"
            request = correct if config.graded_keeps_instruction else ""
            scripted = QuantileRelabel(config.num_buckets, wording, request)
        return scripted if config.feedback_budget == 1 else LearnedRelabel(scripted, config.seed)
    function = load_callable(config.relabel, "relabel")
    return CallableRelabel(function, target_instruction=correct, fallback_opposite=wrong)
