"""NSR, negative sample reinforcement (Zhu et al. 2025; docs/method.md section 3, "NFT and
NSR"): a sibling of GRPO on `ClippedTokenTrainer`, its clipped token loss with other advantages, -1 for each wrong completion
and `positive_weight` for each right one (0: NSR; Zhu et al.'s W-REINFORCE: 0.1). No baseline:
a query whose samples are all wrong still pushes them down. The advantages:
`hir.losses.negative.negative_sample_advantages`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hir.losses.negative import negative_sample_advantages
from hir.online.sampling import Sample
from hir.options import flag_help
from hir.trainers.groups import ClippedTokenTrainer, GroupConfig, TokenLossFields


@dataclass
class NSRConfig(TokenLossFields, GroupConfig):
    """NSR: `num_samples` completions per query (8, as GRPO's), the wrong ones pushed down with
    GRPO's clipped token loss, averaged as `loss_type` says (TRL's default "dapo")."""

    num_samples: int = field(default=8, metadata=flag_help("completions per query (8, as GRPO's)"))  # fmt: skip
    positive_weight: float = field(default=0.0, metadata=flag_help("advantage of a right completion (0: NSR; W-REINFORCE: 0.1); a wrong one's is -1"))  # fmt: skip

    def checks(self) -> list[tuple[bool, str]]:
        return super().checks() + [
            (self.positive_weight >= 0, "positive_weight must be >= 0"),
        ]  # fmt: skip


class NSRTrainer(ClippedTokenTrainer):
    method = "nsr"
    config_class = NSRConfig
    needs_right_and_wrong = True

    def advantages(self, items: Sequence[Sample], rewards: torch.Tensor) -> torch.Tensor:
        return negative_sample_advantages(self.right(items), self.config.positive_weight)
