"""GRPO as TRL 1.16 defines it (docs/method.md section 3, "GRPO and RLOO"), on the same online
loop as HIR, for both model kinds. No value model; with `beta` > 0, a reference.

Each iteration samples `num_samples` completions per query (a group; identical ones all kept,
as TRL's), scores them with the feedback (or a reward model), and trains on them only:

    A_i = (r_i - mean_group(r)) / (std + 1e-4)                  scale_rewards group | batch | none
    loss = clipped token loss (loss_type dapo | grpo | bnpo | dr_grpo) + beta k3 KL to the start

`num_iterations` passes over each iteration's completions (TRL's mu), each micro-batch of
`batch_size` completions one optimizer step, against the log-probabilities the sampling policy
gave (computed before the first step). With LoRA the reference is the policy with its adapter
off, as PPO's. The maths: `hir.losses.grpo`, checked against TRL's own trainer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hir.losses.grpo import LOSS_TYPES, SCALE_REWARDS, clipped_token_loss, group_advantages, k3_kl
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.runs.crash_points import crash_point
from hir.trainers.groups import ClippingFields, GroupConfig, GroupTrainer
from hir.trainers.optimization import optimizer_step


@dataclass
class GRPOConfig(ClippingFields, GroupConfig):
    """GRPO with TRL 1.16's definitions and defaults: groups of `num_samples` completions per
    query (TRL's num_generations, 8), advantages scaled by the group's std, the "dapo" token
    average, no KL (beta 0), clipping 0.2 on both sides, one pass per batch."""

    num_samples: int = field(default=8, metadata=flag_help("completions per query: a group (TRL's num_generations, 8)"))  # fmt: skip
    beta: float = field(default=0.0, metadata=flag_help("k3 KL to the starting policy (TRL: 0, no reference)"))  # fmt: skip
    loss_type: str = field(default="dapo", metadata=flag_help(f"how token losses are averaged: {', '.join(LOSS_TYPES)} (TRL's default dapo)"))  # fmt: skip
    scale_rewards: str = field(default="group", metadata=flag_help(f"advantages divided by the std of: {', '.join(SCALE_REWARDS)}"))  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.loss_type in LOSS_TYPES, f"loss_type must be one of {', '.join(LOSS_TYPES)}"),
            (self.scale_rewards in SCALE_REWARDS, f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}"),
        ]  # fmt: skip


class GRPOTrainer(GroupTrainer):
    method = "grpo"
    config_class = GRPOConfig

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
        tokens_per_step = sum(float(s["mask"].sum()) for s in scored) / len(scored)
        metrics = self.train_passes(scored, lambda item: self._step(item, tokens_per_step))
        grouped = rewards.view(-1, group)
        metrics.update({
            "reward": float(rewards.mean()),
            "reward_std": float(grouped.std(dim=1).mean()),
            "groups_without_spread": float((grouped.std(dim=1) == 0).float().mean()),
            "train_examples_per_second": len(items) * config.num_iterations / max(time.perf_counter() - started, 1e-9),
        })  # fmt: skip
        return metrics

    def advantages(self, items: Sequence[Sample], rewards: torch.Tensor) -> torch.Tensor:
        """Each completion's advantage: its reward against its group's (`group_advantages`)."""
        return group_advantages(rewards, self.config.num_samples, self.config.scale_rewards)

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
            terms = {}
            if item["ref_logp"] is not None:
                kl = (k3_kl(logp, item["ref_logp"]) * item["mask"]).sum() / item["mask"].sum()
                terms["kl"] = kl.item()
            return loss, terms

        loss, terms = optimizer_step(self.accelerator, [self.model], [self.optimizer],
                                     [self.scheduler], compute_loss, config.max_grad_norm)  # fmt: skip
        crash_point("training")
        terms["loss"] = loss.item()
        return terms
