"""HIR's loss terms (docs/method.md section 2), as pure functions of tensors.

Shapes: `logits` [B, T, V]; `labels` [B, T] holding output token ids and IGNORE_INDEX (-100) at
every position that is not an output token (prompt, padding). Only output tokens contribute, so
no gradient reaches the logits of prompt or padding positions.

Each term normalizes the logits itself (one log-softmax over B x T x vocabulary). A caller that
needs several terms of the same logits normalizes once (`log_probs`) and passes
`normalized=True`: on a 49k-token vocabulary that pass and the copy it keeps for the backward
pass are a large share of a training step's time and memory.

    L = L_sft + alpha * L_contrastive - beta * entropy
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the vocabulary, in float32: what `normalized=True` expects."""
    return torch.log_softmax(logits.float(), dim=-1)


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, normalized: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(label) at each position [B, T] (0 where masked) and the output-token mask [B, T]."""
    mask = labels != IGNORE_INDEX
    logp = logits if normalized else log_probs(logits)
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def sequence_scores(
    logits: torch.Tensor, labels: torch.Tensor, normalized: bool = False
) -> torch.Tensor:
    """Mean log-probability of each sequence's output tokens [B] (the public code's score)."""
    logp, mask = token_logprobs(logits, labels, normalized)
    return logp.sum(-1) / mask.sum(-1).clamp(min=1)


def label_smoothed_nll(
    logits: torch.Tensor, labels: torch.Tensor, epsilon: float = 0.0, normalized: bool = False
) -> torch.Tensor:
    """Token cross-entropy with label smoothing, averaged over output tokens:
    (1 - eps) * NLL + eps * mean over the vocabulary of -log p (as transformers' LabelSmoother)."""
    logp_all = logits if normalized else log_probs(logits)
    mask = labels != IGNORE_INDEX
    count = mask.sum().clamp(min=1)
    nll = -logp_all.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    nll = (nll * mask).sum() / count
    if epsilon == 0.0:
        return nll
    uniform = -logp_all.mean(-1)
    uniform = (uniform * mask).sum() / count
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


def mean_entropy(
    logits: torch.Tensor, labels: torch.Tensor, normalized: bool = False
) -> torch.Tensor:
    """Mean entropy (nats) of the model's next-token distributions at output positions.
    The HIR loss adds -beta * this, rewarding spread to keep exploration alive."""
    logp = logits if normalized else log_probs(logits)
    entropy = -(logp.exp() * logp).sum(-1)
    mask = labels != IGNORE_INDEX
    return (entropy * mask).sum() / mask.sum().clamp(min=1)
