"""What the loss terms read of the model's next-token distributions, per output token.

Every training loss here (HIR's three terms, FARL's and SFT's cross-entropy) reads three numbers
per output token of the distribution p = softmax(logits): log p(label), the entropy, and the
mean over the vocabulary of log p (label smoothing's term). `token_statistics` computes them
from logits with ordinary autograd operations: the reference.

`output_layer_statistics` computes the same from the last hidden states and the output layer,
without autograd's copies of B x T x vocabulary tensors: the output layer runs on output
positions only, the normalization, entropy and gradient run in small row chunks that stay in the
CPU's cache, and the gradient with respect to the logits is written by hand. On a 49k-token
vocabulary those elementwise passes over the logits took as long as the output layer itself.

Shapes: `labels` [B, T] holds output token ids and IGNORE_INDEX (-100) at every other position
(prompt, padding); statistics are 0 there and no gradient reaches those positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

# Rows of logits normalized at a time (x vocabulary x 4 bytes: 6 MiB at 49k tokens).
ELEMENTWISE_ROWS = 32
# Rows of the output layer's backward matmuls at a time, which bounds the gradient buffer.
MATMUL_ROWS = 512


@dataclass
class TokenStatistics:
    """Per output token [B, T]: log p(label), entropy (nats), mean over the vocabulary of log p;
    and the output-token mask. 0 where the mask is False."""

    logprob: torch.Tensor
    entropy: torch.Tensor
    mean_logprob: torch.Tensor
    mask: torch.Tensor

    def rows(self, index) -> TokenStatistics:
        return TokenStatistics(self.logprob[index], self.entropy[index],
                               self.mean_logprob[index], self.mask[index])  # fmt: skip

    @staticmethod
    def cat(parts: list[TokenStatistics]) -> TokenStatistics:
        """Rows of `parts` in order, padded (masked) at the end to the widest."""
        width = max(p.mask.shape[1] for p in parts)

        def padded(name: str) -> torch.Tensor:
            return torch.cat([F.pad(getattr(p, name), (0, width - p.mask.shape[1])) for p in parts])

        return TokenStatistics(padded("logprob"), padded("entropy"), padded("mean_logprob"),
                               padded("mask"))  # fmt: skip


def token_statistics(logits: torch.Tensor, labels: torch.Tensor) -> TokenStatistics:
    """The statistics of `logits` [B, T, V] (normalized in float32) at `labels`' output tokens."""
    logp, picked, mask = _normalized(logits, labels)
    entropy = -(logp.exp() * logp).sum(-1)
    return TokenStatistics(picked, entropy * mask, logp.mean(-1) * mask, mask)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(label) at each position [B, T] (0 where masked) and the output-token mask [B, T],
    from logits [B, T, V] (PPO's per-token ratios)."""
    _, picked, mask = _normalized(logits, labels)
    return picked, mask


def _normalized(logits: torch.Tensor, labels: torch.Tensor):
    """log p over the vocabulary (float32), log p(label) (0 where masked), and the mask."""
    mask = labels != IGNORE_INDEX
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logp, picked * mask, mask


def output_layer_statistics(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor
) -> TokenStatistics:
    """`token_statistics(F.linear(hidden, weight, bias), labels)` for hidden states [B, T, H],
    with the output layer run at output positions only and its logits never copied."""
    mask = labels != IGNORE_INDEX
    picked, entropy, mean_logprob = _OutputLayerStatistics.apply(
        hidden[mask], weight, bias, labels[mask]
    )

    def placed(values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros(mask.shape).masked_scatter(mask, values)

    return TokenStatistics(placed(picked), placed(entropy), placed(mean_logprob), mask)


class _OutputLayerStatistics(torch.autograd.Function):
    """hidden [N, H], weight [V, H], bias [V] or None, labels [N] -> log p(label), entropy and
    mean log p, each [N]. Keeps the logits [N, V] (in the model's dtype) for the backward pass,
    and nothing else of that size."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels):
        logits = F.linear(hidden, weight, bias)
        rows = len(labels)
        lse, entropy, mean, picked = (torch.empty(rows, device=hidden.device) for _ in range(4))
        for begin in range(0, rows, ELEMENTWISE_ROWS):
            end = min(begin + ELEMENTWISE_ROWS, rows)
            z = logits[begin:end].float()
            top = z.amax(-1, keepdim=True)
            p = (z - top).exp_()
            total = p.sum(-1, keepdim=True)
            p.div_(total)
            lse[begin:end] = (top + total.log()).squeeze(-1)
            entropy[begin:end] = lse[begin:end] - torch.linalg.vecdot(p, z)
            mean[begin:end] = z.mean(-1) - lse[begin:end]
            picked[begin:end] = z.gather(1, labels[begin:end, None]).squeeze(1) - lse[begin:end]
        ctx.save_for_backward(hidden, weight, bias, labels, logits, lse, entropy)
        return picked, entropy, mean

    @staticmethod
    def backward(ctx, grad_picked, grad_entropy, grad_mean):
        hidden, weight, bias, labels, logits, lse, entropy = ctx.saved_tensors
        rows, vocabulary = logits.shape
        zeros = torch.zeros(rows, device=logits.device)
        g_picked = zeros if grad_picked is None else grad_picked.float()
        g_entropy = zeros if grad_entropy is None else grad_entropy.float()
        g_mean = zeros if grad_mean is None else grad_mean.float()
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros_like(bias) if bias is not None and ctx.needs_input_grad[2] else None
        for begin in range(0, rows, MATMUL_ROWS):
            end = min(begin + MATMUL_ROWS, rows)
            grad_logits = torch.empty(end - begin, vocabulary, device=logits.device,
                                      dtype=logits.dtype)  # fmt: skip
            for first in range(begin, end, ELEMENTWISE_ROWS):
                last = min(first + ELEMENTWISE_ROWS, end)
                grad_logits[first - begin : last - begin] = _logits_gradient(
                    logits[first:last].float(), labels[first:last], lse[first:last],
                    entropy[first:last], g_picked[first:last], g_entropy[first:last],
                    g_mean[first:last],
                )  # fmt: skip
            # Under autocast the forward ran the layer in a lower precision (the logits' dtype):
            # so does the backward, as autograd would, each gradient then in its input's dtype.
            low = logits.dtype
            if grad_hidden is not None:
                grad_hidden[begin:end] = grad_logits @ weight.to(low)
            if grad_weight is not None and low == weight.dtype == hidden.dtype:
                grad_weight.addmm_(grad_logits.T, hidden[begin:end])  # in place: no [V, H] copy
            elif grad_weight is not None:
                grad_weight += (grad_logits.T @ hidden[begin:end].to(low)).to(weight.dtype)
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0).to(bias.dtype)
        return grad_hidden, grad_weight, grad_bias, None


def _logits_gradient(z, labels, lse, entropy, g_picked, g_entropy, g_mean) -> torch.Tensor:
    """d/dz of sum_i g_picked_i log p_i(label_i) + g_entropy_i H_i + g_mean_i mean_j log p_ij,
    with p = softmax(z):
        d log p(y)/dz = onehot(y) - p,   d mean log p/dz = 1/V - p,   dH/dz = -p (log p + H)."""
    log_p = z - lse[:, None]
    p = log_p.exp()
    grad = log_p.add_(entropy[:, None]).mul_(g_entropy[:, None])
    grad.add_((g_picked + g_mean)[:, None]).mul_(p).neg_().add_(g_mean[:, None] / z.shape[1])
    grad[torch.arange(len(labels), device=z.device), labels] += g_picked
    return grad
