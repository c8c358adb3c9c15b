"""GRPO and RLOO as TRL 1.16 defines them (`GRPOTrainer`, `RLOOTrainer`; docs/method.md
section 3, "GRPO and RLOO"), as pure functions of tensors. Rows are completions, grouped by
prompt: `G` completions for each of `P` prompts are `P * G` rows, each prompt's `G` together.

    advantages = group_advantages(rewards, group_size=8, scale_rewards="group")
    loss = clipped_token_loss(logprobs, old_logprobs, advantages, mask, loss_type="dapo",
                              epsilon_low=0.2, epsilon_high=0.2)
"""

from __future__ import annotations

import torch

# Added to the rewards' std before dividing by it (TRL's 1e-4).
STD_EPSILON = 1e-4
SCALE_REWARDS = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def unbiased_std(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """The standard deviation with Bessel's correction (n - 1), as TRL's `nanstd`."""
    return values.std(dim=dim, unbiased=True) if dim is not None else values.std(unbiased=True)


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_rewards: str = "group"
) -> torch.Tensor:
    """GRPO's advantage of each completion: its reward minus its group's mean, divided by the
    group's std ("group"), the whole batch's ("batch"), or nothing ("none", Dr. GRPO), the std
    plus `STD_EPSILON`. A group whose rewards are all equal has advantage 0 throughout."""
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    grouped = rewards.view(-1, group_size)
    advantages = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if scale_rewards == "group":
        std = unbiased_std(grouped, dim=1).repeat_interleave(group_size)
    elif scale_rewards == "batch":
        std = unbiased_std(rewards).expand_as(rewards)
    else:
        return advantages
    return advantages / (std + STD_EPSILON)


def leave_one_out_advantages(
    rewards: torch.Tensor, group_size: int, normalize: bool = False
) -> torch.Tensor:
    """RLOO's advantage: each completion's reward minus the mean of the other completions of its
    prompt; with `normalize`, then standardized over the batch (TRL's `normalize_advantages`)."""
    grouped = rewards.view(-1, group_size)
    baselines = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    advantages = (grouped - baselines).reshape(-1)
    if normalize:
        advantages = (advantages - advantages.mean()) / (unbiased_std(advantages) + STD_EPSILON)
    return advantages


def rewards_with_kl_penalty(
    rewards: torch.Tensor,
    old_logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """RLOO's KL folded into the reward: each completion's reward minus beta times its summed
    first-order log ratio to the reference, sum_t (log pi_old - log pi_ref) (Ahmadian et al.
    2024), which can be negative per token."""
    return rewards - beta * ((old_logprobs - ref_logprobs) * mask).sum(-1)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """GRPO's per-token KL to the reference, Schulman's k3 estimator
    exp(ref - logp) - (ref - logp) - 1 (always >= 0)."""
    delta = ref_logprobs - logprobs
    return torch.exp(delta) - delta - 1


def clipped_token_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    loss_type: str = "dapo",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    ref_logprobs: torch.Tensor | None = None,
    bias_corrected_kl: bool = True,
    max_completion_length: int | None = None,
    num_tokens: float | None = None,
) -> torch.Tensor:
    """GRPO's loss over a [B, T] batch of completion tokens (`mask`: 1 on real tokens):
    -min(r A, clip(r, 1 - epsilon_low, 1 + epsilon_high) A) per token, r = exp(logp - logp_old)
    (token-level importance sampling), plus beta k3_kl to the reference (times r with
    `bias_corrected_kl`, TRL's default: the unbiased reverse-KL gradient off-policy, DeepSeek-V3.2),
    then averaged as `loss_type` says:

    - "grpo": each sequence's token mean, then the mean over sequences;
    - "bnpo": the mean over the batch's tokens;
    - "dr_grpo": the sum over tokens / (B * max_completion_length);
    - "dapo" (TRL's default): the sum over tokens / `num_tokens`, the completion tokens of the
      whole generation batch (TRL's `num_items_in_batch`), so that the micro-batches of one
      generation batch add up to its token mean (default: this batch's tokens).

    The gradient-accumulation factor TRL divides by for the first three is the optimizer step's
    concern, not the loss's (`hir.trainers.optimization.optimizer_step`)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta != 0 needs the reference's log-probabilities")
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + beta * (kl * ratio if bias_corrected_kl else kl)
    masked = per_token * mask
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type dr_grpo needs max_completion_length")
        return masked.sum() / (per_token.size(0) * max_completion_length)
    tokens = mask.sum() if num_tokens is None else torch.as_tensor(num_tokens, dtype=mask.dtype)
    return masked.sum() / tokens.clamp(min=1.0)


def clipped_sequence_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> torch.Tensor:
    """RLOO's loss: the clipped objective on each completion's sequence-level ratio
    r = exp(sum_t logp - logp_old), averaged over completions. `logprobs`: [B, T] per token;
    `old_logprobs`: [B], each completion's summed log-probability under the sampling policy."""
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp((logprobs * mask).sum(-1) - old_logprobs)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    return (-torch.min(ratio * advantages, clipped * advantages)).mean()
