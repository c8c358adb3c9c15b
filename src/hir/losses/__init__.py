"""The maths, as pure functions of tensors: what the losses read of the output tokens'
distributions (`statistics`), HIR's loss terms (`hir`), PPO's (`ppo`), GRPO's and RLOO's
(`grpo`, as TRL defines them) and the reward model's ranking loss (`ranking`). Each is tested
against a hand computation."""

from hir.losses.hir import (
    answer_balanced_weights,
    balanced_weights,
    in_batch_contrastive_loss,
    label_smoothed_nll,
    mean_entropy,
    pairwise_contrastive_loss,
    sequence_scores,
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
from hir.losses.statistics import (
    IGNORE_INDEX,
    TokenStatistics,
    output_layer_statistics,
    token_logprobs,
    token_statistics,
)

__all__ = [
    "IGNORE_INDEX", "answer_balanced_weights", "balanced_weights", "gae_advantages",
    "in_batch_contrastive_loss", "kl_estimate", "kl_penalized_rewards", "label_smoothed_nll",
    "masked_mean", "mean_entropy",
    "output_layer_statistics", "pairwise_contrastive_loss", "ppo_policy_loss", "ppo_value_loss",
    "ranking_loss", "sequence_scores", "token_logprobs", "token_statistics", "TokenStatistics",
    "whiten",
]  # fmt: skip
