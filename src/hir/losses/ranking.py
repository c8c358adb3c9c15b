"""The reward model's ranking loss (InstructGPT stage 2; docs/method.md section 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ranking_loss(rewards: torch.Tensor) -> torch.Tensor:
    """InstructGPT's reward-model loss for K outputs of one prompt ranked best first
    (`rewards` [K], or [N, K] for N prompts): -1/C(K,2) sum_{i<j} log sigmoid(r_i - r_j)."""
    rewards = rewards.unsqueeze(0) if rewards.dim() == 1 else rewards
    k = rewards.shape[-1]
    i, j = torch.triu_indices(k, k, offset=1)
    return -F.logsigmoid(rewards[:, i] - rewards[:, j]).mean()
