"""HIR's closest relatives that learn from wrong samples without a reward model or a value
network (docs/method.md section 3, "NFT and NSR"), as pure functions of tensors. Rows are
completions, grouped by prompt as in `hir.losses.grpo`; `right` is 1 for a completion the
feedback calls correct and 0 otherwise.

- NFT, negative-aware fine-tuning (Chen et al. 2025, arXiv:2505.18116): maximum likelihood on
  the right completions, and on the wrong ones maximum likelihood of an *implicit* wrong-answer
  policy pi_neg = (pi_old - r_q pi_theta) / (1 - r_q), r_q the prompt's share of right samples.
- NSR, negative sample reinforcement (Zhu et al. 2025, arXiv:2506.01347): push the wrong
  completions down and leave the right ones (W-REINFORCE: up-weight them by a small lambda).

    loss = nft_token_loss(logprobs, old_logprobs, right, right_share, mask, max_completion_length=32)
    advantages = negative_sample_advantages(right, positive_weight=0.0)   # then GRPO's clipped loss
"""

from __future__ import annotations

import torch

# The reference's bounds on a prompt's right share, and on the log-ratio before exp (NVlabs/NFT).
RIGHT_SHARE_BOUNDS = (0.02, 0.98)
MAX_LOG_RATIO = 10.0


def right_shares(right: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each completion's prompt's share of right completions, r_q, per row."""
    return right.to(torch.float).view(-1, group_size).mean(dim=1).repeat_interleave(group_size)


def clamp_keeping_gradient(values: torch.Tensor, min_value: float) -> torch.Tensor:
    """`values` clamped below at `min_value` in the forward pass, with the unclamped gradient
    (a straight-through clamp, as the reference's `clamp_preserve_grad`)."""
    return values + (values.clamp(min=min_value) - values).detach()


def nft_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    right: torch.Tensor,
    right_share: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_completion_length: int,
    clamp_negative: float = 1.0,
) -> torch.Tensor:
    """NFT's loss over a [B, T] batch of completion tokens, with token-level ratios
    R = pi_theta / pi_old = exp(logp - logp_old) (the log-ratio capped at `MAX_LOG_RATIO`):

    - a right completion's token: -log R, maximum likelihood relative to the sampling policy;
    - a wrong one's: -log((1 - r_q R) / (1 - r_q)), maximum likelihood of the implicit
      wrong-answer policy, its argument clamped below at `clamp_negative` with the gradient kept
      (so the loss stays finite when r_q R >= 1, and the gradient's 1/argument factor is <= 1);
    - every token weighted by 1 - r_q (the reference's `normalize=1`), r_q clamped to
      `RIGHT_SHARE_BOUNDS`; a prompt whose completions are all right or all wrong
      (r_q in {0, 1}) weighs 0, as the reference's dynamic sampling drops it;

    summed over tokens and divided by B * `max_completion_length` (Dr. GRPO's constant, in place
    of the reference's 1000). On-policy (R = 1) its gradient equals GRPO's with unscaled group
    advantages (scale_rewards "none", loss_type "dr_grpo"): right (1 - r_q), wrong -r_q."""
    if clamp_negative <= 0:
        raise ValueError(f"clamp_negative must be > 0, got {clamp_negative}")
    mask = mask.to(logprobs.dtype)
    right = right.to(logprobs.dtype).unsqueeze(1)
    spread = ((right_share > 0) & (right_share < 1)).to(logprobs.dtype).unsqueeze(1)
    share = right_share.to(logprobs.dtype).clamp(*RIGHT_SHARE_BOUNDS).unsqueeze(1)
    ratio = torch.exp((logprobs - old_logprobs).clamp(max=MAX_LOG_RATIO))
    positive = -torch.log(ratio)
    implicit_negative = (1 - share * ratio) / (1 - share)
    negative = -torch.log(clamp_keeping_gradient(implicit_negative, clamp_negative))
    per_token = (right * positive + (1 - right) * negative) * (1 - share) * spread
    return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)


def negative_sample_advantages(right: torch.Tensor, positive_weight: float = 0.0) -> torch.Tensor:
    """NSR's advantage of each completion: -1 for a wrong one, `positive_weight` for a right one
    (0: NSR, pushing down the wrong samples only; 0.1: Zhu et al.'s W-REINFORCE). No baseline, no
    grouping: a prompt whose samples are all wrong still teaches."""
    right = right.to(torch.float)
    return positive_weight * right - (1 - right)
