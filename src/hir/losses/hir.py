"""HIR's loss terms (docs/method.md section 2), as pure functions of tensors.

The token-level terms read `TokenStatistics` (`hir.losses.statistics`): per output token,
log p(label), the entropy and the mean over the vocabulary of log p, computed from logits
(`token_statistics`) or fused with the output layer (`output_layer_statistics`). Only output
tokens contribute, so no gradient reaches prompt or padding positions.

    L = L_sft + alpha * L_contrastive - beta * entropy
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hir.losses.statistics import TokenStatistics


def _mean_over_tokens(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values.sum() / mask.sum().clamp(min=1)


def sequence_scores(statistics: TokenStatistics) -> torch.Tensor:
    """Mean log-probability of each sequence's output tokens [B] (the public code's score)."""
    return statistics.logprob.sum(-1) / statistics.mask.sum(-1).clamp(min=1)


def label_smoothed_nll(statistics: TokenStatistics, epsilon: float = 0.0) -> torch.Tensor:
    """Token cross-entropy with label smoothing, averaged over output tokens:
    (1 - eps) * NLL + eps * mean over the vocabulary of -log p (as transformers' LabelSmoother)."""
    nll = -_mean_over_tokens(statistics.logprob, statistics.mask)
    if epsilon == 0.0:
        return nll
    uniform = -_mean_over_tokens(statistics.mean_logprob, statistics.mask)
    return (1.0 - epsilon) * nll + epsilon * uniform


def pairwise_contrastive_loss(
    positive_scores: torch.Tensor, negative_scores: torch.Tensor, epsilon: float = 0.0
) -> torch.Tensor:
    """The public code's form: an output must score higher under its relabeled instruction (s+)
    than under the opposite one (s-). With p = sigmoid(s+ - s-):
    (1 - eps) * -log p + eps * -log(1 - p), averaged over the batch."""
    margin = positive_scores - negative_scores
    return ((1.0 - epsilon) * F.softplus(-margin) + epsilon * F.softplus(margin)).mean()


def in_batch_contrastive_loss(score_matrix: torch.Tensor) -> torch.Tensor:
    """The paper's equation: with P[i, k] = log P(o_i | q_k, p_k) over a batch,
    L = -mean_i log( exp(P[i, i]) / sum_k exp(P[i, k]) ): each output must be likelier under its
    own (query, instruction) than under the others in the batch."""
    targets = torch.arange(score_matrix.shape[0], device=score_matrix.device)
    return F.cross_entropy(score_matrix.float(), targets)


def mean_entropy(statistics: TokenStatistics) -> torch.Tensor:
    """Mean entropy (nats) of the model's next-token distributions at output positions.
    The HIR loss adds -beta * this, rewarding spread to keep exploration alive."""
    return _mean_over_tokens(statistics.entropy, statistics.mask)
