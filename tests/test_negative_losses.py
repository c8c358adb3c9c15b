"""NFT's and NSR's maths (hir.losses.negative) against hand computations, and NFT's one
identity with GRPO: on-policy, its gradient is GRPO's with unscaled group advantages."""

import math

import pytest
import torch

from hir.losses.grpo import clipped_token_loss, group_advantages
from hir.losses.negative import (
    clamp_keeping_gradient,
    negative_sample_advantages,
    nft_token_loss,
    right_shares,
)


def test_right_shares_are_each_groups_mean():
    right = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    assert right_shares(right, 4).tolist() == [0.25] * 4 + [0.75] * 4


def test_the_straight_through_clamp_keeps_the_gradient():
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    y = clamp_keeping_gradient(x, 1.0)
    (y * torch.tensor([3.0, 5.0])).sum().backward()
    assert y.tolist() == [1.0, 2.0] and x.grad.tolist() == [3.0, 5.0]


def test_nft_loss_by_hand():
    """Two queries of two completions; query 0 has one right and one wrong (r_q = 1/2), query 1
    two wrong (r_q = 0: it weighs nothing). Every completion has two tokens, the second padding
    on the last row."""
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -1.5], [-1.0, -1.0], [-2.0, 0.0]])
    old = torch.tensor([[-1.2, -2.0], [-0.7, -1.0], [-1.0, -1.0], [-1.0, 0.0]])
    right = torch.tensor([1.0, 0.0, 0.0, 0.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    loss = nft_token_loss(logp, old, right, right_shares(right, 2), mask, max_completion_length=3)
    r = 0.5
    # Right row: -log R per token, R = exp(logp - old): -(0.2) - 0 = -0.2.
    positive = -(0.2 + 0.0)
    # Wrong row: -log(max((1 - r R) / (1 - r), 1)) per token; R = e^0.2 makes the argument
    # (1 - e^0.2 / 2) / 0.5 < 1, clamped to 1 (log 0); R = e^-0.5 makes it > 1.
    negative = -math.log(max((1 - r * math.exp(0.2)) / (1 - r), 1.0)) - math.log(
        max((1 - r * math.exp(-0.5)) / (1 - r), 1.0)
    )
    expected = (positive + negative) * (1 - r) / (4 * 3)
    # float32 of about ten terms near 1: a few 2**-24 of their size.
    assert float(loss) == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_on_policy_nft_has_grpos_gradient_with_unscaled_advantages():
    """At R = 1 the right tokens' gradient is -(1 - r_q) grad log pi and the wrong ones'
    r_q grad log pi: GRPO's with A = r - mean_group(r) (scale_rewards "none", Dr. GRPO's sum)."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, 7, generator=generator, requires_grad=True)
    labels = torch.randint(0, 7, (8, 5), generator=generator)
    mask = (torch.rand(8, 5, generator=generator) > 0.2).float()
    mask[:, 0] = 1.0
    right = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])

    def gradient(loss_of):
        logits.grad = None
        logp = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        loss_of(logp, logp.detach()).backward()
        return logits.grad.clone()

    nft = gradient(lambda logp, old: nft_token_loss(logp, old, right, right_shares(right, 4), mask,
                                                    max_completion_length=5))  # fmt: skip
    advantages = group_advantages(right, 4, scale_rewards="none")
    grpo = gradient(lambda logp, old: clipped_token_loss(logp, old, advantages, mask,
                                                         loss_type="dr_grpo", max_completion_length=5))  # fmt: skip
    # Both are sums of the same float32 terms in other orders: a few 2**-24 of the largest.
    torch.testing.assert_close(nft, grpo, rtol=1e-5, atol=1e-7)
    assert nft.abs().max() > 0


def test_groups_without_spread_and_clamped_arguments_weigh_as_the_reference_says():
    logp = torch.tensor([[-1.0], [-1.0], [-0.1], [-0.1]], requires_grad=True)
    old = torch.tensor([[-1.0], [-1.0], [-2.0], [-2.0]])
    mask = torch.ones(4, 1)
    right = torch.tensor([1.0, 1.0, 1.0, 0.0])
    loss = nft_token_loss(logp, old, right, right_shares(right, 2), mask, max_completion_length=1)
    loss.backward()
    # Group 0 is all right: no loss, no gradient. Group 1's wrong row has r_q R = e^1.9 / 2 > 1:
    # its argument is negative, the loss there is -log 1 = 0, and its gradient is that of
    # -(1 - r_q R) / (1 - r_q) times (1 - r_q): r_q R d(log p).
    assert logp.grad[:2].abs().sum() == 0
    assert math.isfinite(float(loss.detach()))
    assert float(logp.grad[3, 0]) == pytest.approx(0.5 * math.exp(1.9) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="clamp_negative must be > 0"):
        nft_token_loss(logp, old, right, right_shares(right, 2), mask, max_completion_length=1,
                       clamp_negative=0.0)  # fmt: skip


def test_nsr_advantages_push_down_wrong_samples_only():
    right = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert negative_sample_advantages(right).tolist() == [0.0, -1.0, -1.0, 0.0]
    assert negative_sample_advantages(right, positive_weight=0.1).tolist() == pytest.approx([0.1, -1.0, -1.0, 0.1])  # fmt: skip
