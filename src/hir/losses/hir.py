"""HIR's loss terms (docs/method.md section 2), as pure functions of tensors.

The token-level terms read `TokenStatistics` (`hir.losses.statistics`): per output token,
log p(label), the entropy and the mean over the vocabulary of log p, computed from logits
(`token_statistics`) or fused with the output layer (`output_layer_statistics`). Only output
tokens contribute, so no gradient reaches prompt or padding positions.

    L = L_sft + alpha * L_contrastive - beta * entropy
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F

from hir.losses.statistics import TokenStatistics


def _mean_over_tokens(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return values.sum() / mask.sum().clamp(min=1)


def sequence_scores(statistics: TokenStatistics, reduction: str = "mean") -> torch.Tensor:
    """Each sequence's score [B]: the mean log-probability of its output tokens (the public
    code's), or with reduction="sum" their sum, log P(output | prompt), which a long output's
    many tokens all move."""
    total = statistics.logprob.sum(-1)
    if reduction == "sum":
        return total
    return total / statistics.mask.sum(-1).clamp(min=1)


def label_smoothed_nll(
    statistics: TokenStatistics, epsilon: float = 0.0, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Token cross-entropy with label smoothing, averaged over output tokens:
    (1 - eps) * NLL + eps * mean over the vocabulary of -log p (as transformers' LabelSmoother).
    `weights` [B] scale each sequence's tokens; the sum is still divided by the plain token
    count, so that weights averaging 1 over the buffer keep the loss's scale."""
    logprob, mean_logprob = statistics.logprob, statistics.mean_logprob
    if weights is not None:
        column = weights.to(logprob.dtype).unsqueeze(-1)
        logprob, mean_logprob = logprob * column, mean_logprob * column
    nll = -_mean_over_tokens(logprob, statistics.mask)
    if epsilon == 0.0:
        return nll
    uniform = -_mean_over_tokens(mean_logprob, statistics.mask)
    return (1.0 - epsilon) * nll + epsilon * uniform


def balanced_weights(labels: Sequence[Hashable]) -> list[float]:
    """Weights that give each label's items the same total, with mean 1:
    w = N / (G * N_label) for N items and G distinct labels. With 3 "wrong" items and 1
    "correct", the wrong ones get 2/3 each and the correct one 2."""
    counts = Counter(labels)
    return [len(labels) / (len(counts) * counts[label]) for label in labels]


def answer_balanced_weights(
    instructions: Sequence[Hashable], answers: Sequence[Hashable]
) -> list[float]:
    """Weights that, within each instruction's items, give each answer's items the same total,
    with mean 1 within each instruction (so each instruction keeps its share): an instruction's
    items with answers ["1", "1", "3"] get 3/4, 3/4 and 3/2."""
    weights = [1.0] * len(instructions)
    for instruction in set(instructions):
        mine = [k for k, i in enumerate(instructions) if i == instruction]
        for k, w in zip(mine, balanced_weights([answers[k] for k in mine])):
            weights[k] = w
    return weights


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
