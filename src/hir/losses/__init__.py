"""The maths, as pure functions of tensors: HIR's loss terms (`hir`), PPO's (`ppo`) and the
reward model's ranking loss (`ranking`). Each is tested against a hand computation."""

from hir.losses.hir import (
    IGNORE_INDEX,
    in_batch_contrastive_loss,
    label_smoothed_nll,
    log_probs,
    mean_entropy,
    pairwise_contrastive_loss,
    sequence_scores,
    token_logprobs,
)
from hir.losses.ppo import (
    gae_advantages,
    kl_estimate,
    kl_penalized_rewards,
    masked_mean,
    ppo_policy_loss,
    ppo_value_loss,
    whiten,
)
from hir.losses.ranking import ranking_loss

__all__ = [
    "IGNORE_INDEX", "gae_advantages", "in_batch_contrastive_loss", "kl_estimate",
    "kl_penalized_rewards", "label_smoothed_nll", "log_probs", "masked_mean", "mean_entropy",
    "pairwise_contrastive_loss", "ppo_policy_loss", "ppo_value_loss", "ranking_loss",
    "sequence_scores", "token_logprobs", "whiten",
]  # fmt: skip
