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

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hir.losses.grpo import SCALE_REWARDS, group_advantages
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.trainers.groups import ClippedTokenTrainer, GroupConfig, TokenLossFields


@dataclass
class GRPOConfig(TokenLossFields, GroupConfig):
    """GRPO with TRL 1.16's definitions and defaults: groups of `num_samples` completions per
    query (TRL's num_generations, 8), advantages scaled by the group's std, the "dapo" token
    average, no KL (beta 0), clipping 0.2 on both sides, one pass per batch."""

    num_samples: int = field(default=8, metadata=flag_help("completions per query: a group (TRL's num_generations, 8)"))  # fmt: skip
    beta: float = field(default=0.0, metadata=flag_help("k3 KL to the starting policy (TRL: 0, no reference)"))  # fmt: skip
    scale_rewards: str = field(default="group", metadata=flag_help(f"advantages divided by the std of: {', '.join(SCALE_REWARDS)}"))  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.scale_rewards in SCALE_REWARDS, f"scale_rewards must be one of {', '.join(SCALE_REWARDS)}"),
        ]  # fmt: skip


class GRPOTrainer(ClippedTokenTrainer):
    method = "grpo"
    config_class = GRPOConfig

    def advantages(self, items: Sequence[Sample], rewards: torch.Tensor) -> torch.Tensor:
        """Each completion's advantage: its reward against its group's (`group_advantages`)."""
        return group_advantages(rewards, self.config.num_samples, self.config.scale_rewards)
