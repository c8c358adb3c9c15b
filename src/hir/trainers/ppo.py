"""PPO (RLHF as in InstructGPT; docs/method.md section 3), in the same online loop as HIR, for both
model kinds.

Each iteration is one rollout: the shared sampling (same queries, samples, temperature) scored by
the feedback function (or a reward model), then `ppo_epochs` passes of clipped PPO over it:

    reward_t = -kl_coef * (log p(o_t) - log p_ref(o_t)) + [t = last] * score
    advantages, returns = GAE(reward, values; gamma, lam), advantages whitened
    loss = clipped policy loss + value_coef * clipped value loss (+ ptx_coef * CE on ptx data)

The reference policy is a frozen copy of the starting policy; the value function is a model of
its own (a copy of the starting policy with a scalar head). PPO-ptx adds the log-likelihood of
"pretraining" pairs (for BIG-bench: the warm-up / SFT data) to limit the alignment tax. Dropout
is switched off in all three networks (as TRL does): the ratio p / p_old must be 1 before the
first step, or `clip_fraction` measures dropout noise.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import DistributedType
from torch import nn

from hir.errors import HIRError
from hir.losses import (
    gae_advantages,
    kl_estimate,
    kl_penalized_rewards,
    label_smoothed_nll,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    token_logprobs,
    whiten,
)
from hir.models import EncodedBatch, Policy, wrap_policy
from hir.models.adapters import is_adapted, reference_context
from hir.models.scalar_head import ScalarHeadModel
from hir.models.speed.sharding import (
    full_optimizer_state,
    full_state_dict,
    full_weights,
    load_optimizer_state,
    load_state,
    trained_names,
)
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.runs.crash_points import crash_point
from hir.runs.fileio import read_jsonl_objects
from hir.runs.folders import VALUE_STATE  # in a checkpoint folder
from hir.tasks.feedback import BatchReward
from hir.trainers.loop import OnlineTrainer
from hir.trainers.optimization import optimizer_step
from hir.trainers.run_config import SamplingConfig


@dataclass
class PPOConfig(SamplingConfig):
    """PPO with a per-token KL penalty to the starting policy, GAE and clipping (InstructGPT's
    defaults). On-policy: each iteration trains on its own rollout only."""

    buffer_retention: str = field(
        default="latest:1", metadata=flag_help("what buffer.jsonl keeps; PPO trains on the newest rollout only")
    )  # fmt: skip
    kl_coef: float = field(
        default=0.02,
        metadata=flag_help("per-token KL penalty to the reference (InstructGPT: 0.02)"),
    )
    gamma: float = field(default=1.0, metadata=flag_help("discount"))
    lam: float = field(default=0.95, metadata=flag_help("GAE lambda"))
    ppo_epochs: int = field(default=4, metadata=flag_help("passes over each rollout"))
    clip_range: float = field(default=0.2, metadata=flag_help("policy ratio clip"))
    value_clip_range: float = field(default=0.2, metadata=flag_help("value clip"))
    value_coef: float = field(default=0.1, metadata=flag_help("weight of the value loss"))
    ptx_coef: float = field(
        default=0.0,
        metadata=flag_help(
            "PPO-ptx: weight of the CE on ptx_data (InstructGPT: 27.8); needs ptx_data"
        ),
    )
    ptx_data: str | None = field(
        default=None,
        metadata=flag_help(
            'PPO-ptx "pretraining" pairs: a JSONL of {"prompt": ..., "output": ...}'
        ),
    )

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.kl_coef >= 0, "kl_coef must be >= 0"),
            (0 <= self.gamma <= 1, "gamma must be in [0, 1]"),
            (0 <= self.lam <= 1, "lam must be in [0, 1]"),
            (self.ppo_epochs >= 1, "ppo_epochs must be >= 1"),
            (self.clip_range > 0 and self.value_clip_range > 0, "clip ranges must be > 0"),
            (self.ptx_coef >= 0, "ptx_coef must be >= 0"),
        ]


class PPOTrainer(OnlineTrainer):
    method = "ppo"
    config_class = PPOConfig

    def __init__(
        self,
        model,
        task,
        config: PPOConfig | None = None,
        *,
        tokenizer=None,
        reward: BatchReward | None = None,
        ptx_pairs: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(model, task, config, tokenizer=tokenizer, reward=reward)
        config = self.config
        self.ptx_pairs = list(
            ptx_pairs or (load_ptx_pairs(config.ptx_data) if config.ptx_data else [])
        )
        if config.ptx_coef and not self.ptx_pairs:
            raise HIRError(
                "ptx_coef > 0 needs pretraining pairs: pass --ptx_data pairs.jsonl "
                '({"prompt": ..., "output": ...} per line), or ptx_pairs= in Python'
            )
        value_optimizer = torch.optim.AdamW(self.value_model.parameters(), lr=config.learning_rate)
        self.value_model, self.value_optimizer = self.accelerator.prepare(
            self.value_model, value_optimizer
        )

    def before_prepare(self) -> None:
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            raise HIRError(
                "PPO does not run under DeepSpeed: its policy and value model train on one loss, "
                "and accelerate steps one DeepSpeed engine per backward pass; shard PPO with "
                "FSDP2 (configs/accelerate/fsdp2.yaml)"
            )
        disable_dropout(self.policy.model)
        # The reference and the value model start as copies of the starting policy (a resume
        # restores the policy's and the value model's weights after this, in `restore`), made
        # before accelerate shards it. With a LoRA adapter the reference is the same network
        # with the adapter off: no second copy.
        # Their frozen lower layers are the policy's: they read the activations the policy keeps.
        self.reference = None
        if not is_adapted(self.policy.model):
            reference_model = copy.deepcopy(self.policy.model).eval().requires_grad_(False)
            self.reference = wrap_policy(reference_model, self.policy.tokenizer)
            self.reference.frozen_cache = self.policy.share_frozen_layers(reference_model)
        self.value_model = ScalarHeadModel(self.policy, zero_init=True, share_frozen_layers=True)
        self.value_model.to(self.accelerator.device)

    def extra_state(self) -> dict[str, dict]:
        value_model = self.accelerator.unwrap_model(self.value_model)
        # Only the weights it trains (its head, and its adapter or top layers when the body is
        # frozen): the frozen rest is the starting policy's, rebuilt from it on resume. With
        # LoRA on SmolLM2-135M: the adapter's 1.3 MB (and its optimizer moments), not the 540 MB body.
        trained = trained_names(value_model)
        weights = full_state_dict(value_model)
        return {VALUE_STATE: {
            "value_model": {name: tensor for name, tensor in weights.items() if name in trained},
            "value_optimizer": full_optimizer_state(value_model, self.value_optimizer.optimizer),
        }}  # fmt: skip

    def load_extra_state(self, folder: Path) -> None:
        state = torch.load(folder / VALUE_STATE, weights_only=True)
        value_model = self.accelerator.unwrap_model(self.value_model)
        missing, unexpected = load_state(value_model, state["value_model"])
        trained = trained_names(value_model)  # the frozen rest is the start's, already there
        missing = [name for name in missing if name in trained]
        if missing or unexpected:
            raise HIRError(f"{folder / VALUE_STATE} does not fit this run's value model "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")  # fmt: skip
        load_optimizer_state(value_model, self.value_optimizer.optimizer, state["value_optimizer"])

    # -- the hooks -----------------------------------------------------------------------------

    def training_items(self, iteration: int) -> list[Sample]:
        """This iteration's rollout (this process's share of it)."""
        samples = [s for s in self.buffer.samples if s.iteration == iteration]
        if self.accelerator.num_processes > 1:
            # Padding evens the shares, so every process takes the same number of steps.
            with self.accelerator.split_between_processes(samples, apply_padding=True) as mine:
                samples = list(mine)
        return samples

    def update(self, items: Sequence[Sample], iteration: int) -> dict:
        config = self.config
        started = time.perf_counter()
        # Each process scores its share of the rollout: with whole weights where sharded.
        with full_weights(self.model), full_weights(self.value_model):
            rollout = [self._score_rollout(items[b : b + config.batch_size])
                       for b in range(0, len(items), config.batch_size)]  # fmt: skip
        totals: dict[str, float] = {}
        steps = 0
        self.model.train()
        self.value_model.train()
        for _ in range(config.ppo_epochs):
            for index in torch.randperm(len(rollout), generator=self.generator).tolist():
                for key, value in self._ppo_step(rollout[index]).items():
                    totals[key] = totals.get(key, 0.0) + value
                steps += 1
        metrics = {key: value / max(steps, 1) for key, value in totals.items()}
        metrics["reward"] = (
            float(torch.cat([r["scores"] for r in rollout]).mean()) if rollout else 0.0
        )
        metrics["kl"] = sum(r["kl"] for r in rollout) / max(len(rollout), 1)
        metrics["train_steps"] = steps
        # Rollout scoring included: it is PPO's share of the training work.
        seconds = time.perf_counter() - started
        metrics["train_examples_per_second"] = len(items) * config.ppo_epochs / max(seconds, 1e-9)
        return metrics

    # -- PPO -----------------------------------------------------------------------------------

    def _logprobs(self, policy: Policy, batch: EncodedBatch, model=None):
        """Token log-probabilities under the distribution the samples came from: the logits
        divided by the sampling temperature."""
        logits, labels = policy.output_logits(batch, model)
        return token_logprobs(logits / self.config.temperature, labels)

    @torch.no_grad()
    def _score_rollout(self, chunk: Sequence[Sample]) -> dict:
        self.model.eval()
        self.value_model.eval()
        # Each rollout under the instruction it was sampled under (the target, or its example's own).
        prompts = [self.task.prompt(self.examples_by_id[s.query_id].query, s.instruction) for s in chunk]  # fmt: skip
        # The feedback's score, or the reward's where one drives training (scored at sampling).
        scores = torch.tensor([s.score for s in chunk], dtype=torch.float)
        # The tokens as sampled: re-encoding the text can segment it into tokens the policy
        # never chose, whose log-ratios to the reference then dominate the KL.
        output_ids = [s.token_ids if s.token_ids is not None else self.policy.format.output_ids([s.output])[0]
                      for s in chunk]  # fmt: skip
        batch = self.policy.encode_ids(self.policy.format.prompt_ids(prompts), output_ids)
        batch = batch.to(self.accelerator.device)
        logp, mask = self._logprobs(self.policy, batch, self.model)
        if self.reference is None:
            with reference_context(self.accelerator.unwrap_model(self.model)):
                ref_logp, _ = self._logprobs(self.policy, batch, self.model)
        else:
            ref_logp, _ = self._logprobs(self.reference, batch)
        mask = mask.float()
        values = self.value_model(batch)[0] * mask
        scores = scores.to(logp.device)
        rewards = kl_penalized_rewards(scores, logp, ref_logp, mask, self.config.kl_coef)
        advantages, returns = gae_advantages(
            rewards, values, mask, self.config.gamma, self.config.lam
        )
        # k1, the mean log-ratio (unbiased, and what the reward's penalty uses).
        kl = float(masked_mean(kl_estimate(logp, ref_logp, "k1"), mask))
        return {"batch": batch, "old_logp": logp, "old_values": values, "advantages": whiten(advantages, mask),
                "returns": returns, "mask": mask, "scores": scores.cpu(), "kl": kl}  # fmt: skip

    def _ppo_step(self, item: dict) -> dict[str, float]:
        config = self.config

        def compute_loss():
            logp, _ = self._logprobs(self.policy, item["batch"], self.model)
            policy_loss, clip_fraction = ppo_policy_loss(
                logp, item["old_logp"], item["advantages"], item["mask"], config.clip_range
            )
            values = self.value_model(item["batch"])[0]
            value_loss = ppo_value_loss(values, item["old_values"], item["returns"], item["mask"],
                                        config.value_clip_range)  # fmt: skip
            loss = policy_loss + config.value_coef * value_loss
            terms = {"loss_policy": policy_loss.item(), "loss_value": value_loss.item(),
                     "clip_fraction": clip_fraction.item()}  # fmt: skip
            if config.ptx_coef:
                ptx_loss = self._ptx_loss()
                loss = loss + config.ptx_coef * ptx_loss
                terms["loss_ptx"] = ptx_loss.item()
            return loss, terms

        loss, terms = optimizer_step(
            self.accelerator, [self.model, self.value_model],
            [self.optimizer, self.value_optimizer], [self.scheduler], compute_loss,
            config.max_grad_norm,
        )  # fmt: skip
        crash_point("training")
        terms["loss"] = loss.item()
        return terms

    def _ptx_loss(self) -> torch.Tensor:
        count = min(self.config.batch_size, len(self.ptx_pairs))
        picks = torch.randint(len(self.ptx_pairs), (count,), generator=self.generator)
        prompts, outputs = zip(*(self.ptx_pairs[i] for i in picks.tolist()))
        return label_smoothed_nll(
            self.policy.statistics_for(list(prompts), list(outputs), self.model)
        )


def disable_dropout(model: nn.Module) -> None:
    """Dropout off everywhere, also in attention implementations that read a float rate."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def load_ptx_pairs(path: str) -> list[tuple[str, str]]:
    pairs = []
    for number, record in read_jsonl_objects(path, "ptx_data"):
        if not all(isinstance(record.get(k), str) for k in ("prompt", "output")):
            raise HIRError(f'{path} line {number}: give "prompt" and "output" as strings')
        pairs.append((record["prompt"], record["output"]))
    if not pairs:
        raise HIRError(f"ptx_data file {path!r} holds no pairs")
    return pairs
