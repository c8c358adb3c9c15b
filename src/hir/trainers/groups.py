"""What GRPO, RLOO, NFT and NSR share, and PPO does not: groups of completions per query, no
value model, the sampling policy's (and, with a KL term, the start's) log-probabilities of each
completion. `GroupTrainer` is their neutral base; each method is a sibling on it (`grpo.py`,
`rloo.py`, `nft.py`), as in TRL, where `RLOOTrainer` is not a `GRPOTrainer`. GRPO and NSR
train with the same clipped token loss on advantages each defines: their base,
`ClippedTokenTrainer`, is here too."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from hir.errors import HIRError
from hir.losses import token_logprobs
from hir.losses.grpo import LOSS_TYPES, clipped_token_loss, k3_kl
from hir.models import EncodedBatch, Policy, wrap_policy
from hir.models.adapters import is_adapted, reference_context
from hir.models.speed.sharding import full_weights
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.runs.crash_points import crash_point
from hir.trainers.epochs import process_share
from hir.trainers.loop import OnlineTrainer
from hir.trainers.optimization import optimizer_step
from hir.trainers.ppo import disable_dropout
from hir.trainers.run_config import SamplingConfig


@dataclass
class GroupConfig(SamplingConfig):
    """What GRPO's and RLOO's configs share (each sets its own defaults, as TRL's)."""

    buffer_retention: str = field(
        default="latest:1", metadata=flag_help("what buffer.jsonl keeps; the method trains on the newest samples only")
    )  # fmt: skip
    beta: float = field(default=0.0, metadata=flag_help("weight of the KL to the starting policy (0: no reference)"))  # fmt: skip
    num_iterations: int = field(default=1, metadata=flag_help("passes over each iteration's completions (TRL's mu)"))  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.num_samples >= 2, "num_samples must be >= 2: a group of one has no spread"),
            (self.beta >= 0, "beta must be >= 0"),
            (self.num_iterations >= 1, "num_iterations must be >= 1"),
        ]  # fmt: skip


@dataclass
class ClippingFields:
    """Mixed into the configs of the methods that clip the ratio to the sampling policy (GRPO,
    RLOO, NSR; NFT bounds its implicit negative policy instead)."""

    epsilon: float = field(default=0.2, metadata=flag_help("clipping below: ratio >= 1 - epsilon"))
    epsilon_high: float | None = field(default=None, metadata=flag_help("clipping above (default: epsilon; DAPO: 0.28)"))  # fmt: skip

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [  # type: ignore[misc]
            (0 < self.epsilon < 1, "epsilon must be in (0, 1)"),
            (self.epsilon_high is None or self.epsilon_high > 0, "epsilon_high must be > 0"),
        ]  # fmt: skip


@dataclass
class TokenLossFields(ClippingFields):
    """Mixed into the configs of the methods on `ClippedTokenTrainer` (GRPO, NSR)."""

    loss_type: str = field(default="dapo", metadata=flag_help(f"how token losses are averaged: {', '.join(LOSS_TYPES)} (TRL's default dapo)"))  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.loss_type in LOSS_TYPES, f"loss_type must be one of {', '.join(LOSS_TYPES)}"),
        ]  # fmt: skip


class GroupTrainer(OnlineTrainer):
    """A method that learns from each query's group of `num_samples` completions of this
    iteration. Its config declares `beta` (the KL's weight: 0 builds no reference)."""

    keeps_duplicate_samples = True  # every completion of a group counts in its statistics
    # Whether the method splits completions into right and wrong (NFT, NSR) by the feedback's
    # `success_threshold`; a reward (model)'s scores have no such split.
    needs_right_and_wrong = False

    def __init__(self, model, task, config: GroupConfig | None = None, *, tokenizer=None,
                 reward=None) -> None:  # fmt: skip
        super().__init__(model, task, config, tokenizer=tokenizer, reward=reward)
        if self.reward is not None:
            self.check_reward_settings(self.config)

    @classmethod
    def check_reward_settings(cls, config: GroupConfig) -> None:
        if cls.needs_right_and_wrong:
            raise HIRError(
                f"{cls.method} needs the task's correct/wrong feedback, and a reward (model)'s "
                "scores have no such threshold: train grpo or rloo against a reward"
            )

    def right(self, items: Sequence[Sample]) -> torch.Tensor:
        """1.0 for each completion whose score reaches `success_threshold`, 0.0 otherwise."""
        return torch.tensor([float(self.is_success(s.score)) for s in items])

    def before_prepare(self) -> None:
        # Dropout off, as in PPO: the ratio to the sampling policy must be 1 before the first step.
        disable_dropout(self.policy.model)
        self.reference = None
        if self.config.beta and not is_adapted(self.policy.model):
            reference_model = copy.deepcopy(self.policy.model).eval().requires_grad_(False)
            self.reference = wrap_policy(reference_model, self.policy.tokenizer)
            self.reference.frozen_cache = self.policy.share_frozen_layers(reference_model)

    def optimize(self, compute_loss: Callable[[], tuple[torch.Tensor, dict]]) -> dict[str, float]:
        """One optimizer step on `compute_loss()` -> (loss, terms): the terms, and the loss."""
        loss, terms = optimizer_step(self.accelerator, [self.model], [self.optimizer],
                                     [self.scheduler], compute_loss, self.config.max_grad_norm)  # fmt: skip
        crash_point("training")
        return {**terms, "loss": loss.item()}

    @staticmethod
    def reference_kl(logp: torch.Tensor, item: dict) -> torch.Tensor:
        """GRPO's k3 KL to the reference, averaged over the micro-batch's completion tokens."""
        return (k3_kl(logp, item["ref_logp"]) * item["mask"]).sum() / item["mask"].sum()

    def throughput(self, items: Sequence[Sample], started: float) -> float:
        """Completions trained per second since `started`, every pass counted."""
        return len(items) * self.config.num_iterations / max(time.perf_counter() - started, 1e-9)

    def training_items(self, iteration: int) -> list[Sample]:
        """This iteration's completions, each query's group together, in sampling order."""
        return [s for s in self.buffer.samples if s.iteration == iteration]

    def scored_batches(self, items: Sequence[Sample]) -> list[dict]:
        """`items` in micro-batches of `batch_size` completions, this process's share of each
        scored (`_score`; every process holds every completion, and each optimizer step is one
        micro-batch, its shares' gradients averaged by data parallelism). Each carries what
        makes that average the one process's loss on the whole micro-batch (`data_parallel`):
        its share of the micro-batch's completions and tokens, and the micro-batch's tokens."""
        size = self.config.batch_size
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        scored = []
        with full_weights(self.model):
            for begin in range(0, len(items), size):
                rows = list(range(begin, min(begin + size, len(items))))
                item = self._score(items, process_share(rows, rank, world))
                # The shares' rows together: a micro-batch smaller than the processes repeats.
                item["share_of_rows"] = len(item["rows"]) / max(len(rows), world)
                scored.append(item)
        local = torch.tensor([float(item["mask"].sum()) for item in scored])
        tokens = self.accelerator.reduce(local.to(self.accelerator.device), reduction="sum").cpu()
        for item, mine, total in zip(scored, local.tolist(), tokens.tolist(), strict=True):
            item["share_of_tokens"], item["tokens"] = mine / max(total, 1.0), total
        return scored

    def data_parallel(self, loss: torch.Tensor, item: dict, normalized_by: str) -> torch.Tensor:
        """`loss` on this process's share of `item`'s micro-batch, scaled so that the average
        over the processes (data parallelism's, of the gradients) is the loss one process
        computes on the whole micro-batch. `normalized_by`: what the loss divides by, "rows"
        (a mean over completions, or a sum over B x a constant), "tokens" (the share's
        tokens), or "constant" (the same number on every process). One process: 1 x loss."""
        world = self.accelerator.num_processes
        if normalized_by == "constant":
            return loss * world
        return loss * (world * item[f"share_of_{normalized_by}"])

    def train_passes(self, scored: list[dict], step: Callable[[dict], dict[str, float]]) -> dict:
        """`num_iterations` passes over the micro-batches in a seeded order, one optimizer step
        each (`step`); its terms averaged over the steps, and the step count."""
        totals: dict[str, float] = {}
        steps = 0
        self.model.train()
        for _ in range(self.config.num_iterations):
            for index in torch.randperm(len(scored), generator=self.generator).tolist():
                for key, value in step(scored[index]).items():
                    totals[key] = totals.get(key, 0.0) + value
                steps += 1
        return {**{key: value / steps for key, value in totals.items()}, "train_steps": steps}

    def _logprobs(self, policy: Policy, batch: EncodedBatch, model=None):
        """Token log-probabilities under the distribution the samples came from: the logits
        divided by the sampling temperature (as TRL's)."""
        logits, labels = policy.output_logits(batch, model)
        return token_logprobs(logits / self.config.temperature, labels)

    @torch.no_grad()
    def _score(self, items: Sequence[Sample], rows: list[int]) -> dict:
        """The micro-batch `rows` of `items`: its tensors, with the sampling policy's (and, with
        a KL term, the start's) token log-probabilities."""
        self.model.eval()
        chunk = [items[i] for i in rows]
        # Each completion under the instruction it was sampled under (the target, or its
        # example's own).
        prompts = [self.task.prompt(self.examples_by_id[s.query_id].query, s.instruction) for s in chunk]  # fmt: skip
        # The tokens as sampled (re-encoding the text could segment it otherwise).
        output_ids = [s.token_ids if s.token_ids is not None else self.policy.format.output_ids([s.output])[0]
                      for s in chunk]  # fmt: skip
        batch = self.policy.encode_ids(self.policy.format.prompt_ids(prompts), output_ids)
        batch = batch.to(self.accelerator.device)
        old_logp, mask = self._logprobs(self.policy, batch, self.model)
        ref_logp = None
        if self.config.beta:
            if self.reference is None:  # LoRA: the same network, its adapter off
                with reference_context(self.accelerator.unwrap_model(self.model)):
                    ref_logp, _ = self._logprobs(self.policy, batch, self.model)
            else:
                ref_logp, _ = self._logprobs(self.reference, batch)
        return {"batch": batch, "old_logp": old_logp, "ref_logp": ref_logp, "mask": mask.float(),
                "rows": rows}  # fmt: skip


# What each GRPO loss type divides its token sum by (`clipped_token_loss`).
NORMALIZED_BY = {"grpo": "rows", "bnpo": "tokens", "dr_grpo": "rows", "dapo": "constant"}


class ClippedTokenTrainer(GroupTrainer):
    """A method that trains each completion's tokens with GRPO's clipped loss
    (`hir.losses.grpo.clipped_token_loss`) on an advantage per completion, which the method
    defines (`advantages`): GRPO against its group, NSR -1 for a wrong completion. Its config
    declares `loss_type` and the clipping (`TokenLossFields`)."""

    def advantages(self, items: Sequence[Sample], rewards: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, items: Sequence[Sample], iteration: int) -> dict:
        config = self.config
        if not items:
            return {"train_steps": 0}
        started = time.perf_counter()
        group = config.num_samples
        rewards = torch.tensor([s.score for s in items], dtype=torch.float)
        advantages = self.advantages(items, rewards)
        scored = self.scored_batches(items)
        for item in scored:
            item["advantages"] = advantages[item["rows"]].to(item["old_logp"].device)
        # "dapo": each step's token sum over the generation batch's tokens per optimizer step
        # (TRL's num_items_in_batch, rescaled to one step), so the steps add up to its mean.
        tokens_per_step = sum(s["tokens"] for s in scored) / len(scored)
        metrics = self.train_passes(scored, lambda item: self._step(item, tokens_per_step))
        grouped = rewards.view(-1, group)
        metrics.update({
            "reward": float(rewards.mean()),
            "reward_std": float(grouped.std(dim=1).mean()),
            "groups_without_spread": float((grouped.std(dim=1) == 0).float().mean()),
            "train_examples_per_second": self.throughput(items, started),
        })  # fmt: skip
        return metrics

    def _step(self, item: dict, tokens_per_step: float) -> dict[str, float]:
        config = self.config

        def compute_loss():
            logp, _ = self._logprobs(self.policy, item["batch"], self.model)
            loss = clipped_token_loss(
                logp, item["old_logp"], item["advantages"], item["mask"],
                loss_type=config.loss_type, epsilon_low=config.epsilon,
                epsilon_high=config.clip_high,
                beta=config.beta, ref_logprobs=item["ref_logp"],
                max_completion_length=config.max_new_tokens, num_tokens=tokens_per_step,
            )  # fmt: skip
            loss = self.data_parallel(loss, item, NORMALIZED_BY[config.loss_type])
            terms = {}
            if item["ref_logp"] is not None:
                terms["kl"] = self.reference_kl(logp, item).item()
            return loss, terms

        return self.optimize(compute_loss)
