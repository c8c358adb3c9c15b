"""GRPO's and RLOO's maths (hir.losses.grpo) against hand computations, term by term."""

import math

import pytest
import torch

from hir.losses.grpo import (
    clipped_sequence_loss,
    clipped_token_loss,
    group_advantages,
    k3_kl,
    leave_one_out_advantages,
    rewards_with_kl_penalty,
)

# Two prompts, two completions each: one group with a spread, one where both are right.
REWARDS = torch.tensor([1.0, 0.0, 1.0, 1.0])


def test_group_advantages_by_hand():
    # Group 1: mean 0.5, unbiased std sqrt((0.25 + 0.25) / 1) = 0.7071; group 2: all equal.
    std = math.sqrt(0.5)
    expected = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4), 0.0, 0.0]
    assert group_advantages(REWARDS, 2, "group").tolist() == pytest.approx(expected, rel=1e-6)
    # The batch's std: mean 0.75, squares 0.0625 * 3 + 0.5625 = 0.75, over n - 1 = 3.
    batch_std = math.sqrt(0.75 / 3)
    expected = [0.5 / (batch_std + 1e-4), -0.5 / (batch_std + 1e-4), 0.0, 0.0]
    assert group_advantages(REWARDS, 2, "batch").tolist() == pytest.approx(expected, rel=1e-6)
    assert group_advantages(REWARDS, 2, "none").tolist() == [0.5, -0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(REWARDS, 2, "prompt")


def test_leave_one_out_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])  # one group of four
    # Each reward minus the mean of the three others: 1 - 1/3, 0 - 2/3, 0 - 2/3, 1 - 1/3.
    assert leave_one_out_advantages(rewards, 4).tolist() == pytest.approx(
        [2 / 3, -2 / 3, -2 / 3, 2 / 3]
    )
    normalized = leave_one_out_advantages(rewards, 4, normalize=True)
    std = math.sqrt(4 * (2 / 3) ** 2 / 3)
    assert normalized.tolist() == pytest.approx(
        [x / (std + 1e-4) for x in (2 / 3, -2 / 3, -2 / 3, 2 / 3)]
    )


def test_rloo_folds_the_first_order_kl_into_the_reward():
    old = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    ref = torch.tensor([[-1.5, -1.0], [-0.5, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    # Row 0: (0.5) + (-1.0) = -0.5; row 1: 0 (the masked token does not count).
    penalized = rewards_with_kl_penalty(torch.tensor([1.0, 2.0]), old, ref, mask, beta=0.1)
    assert penalized.tolist() == pytest.approx([1.0 + 0.05, 2.0])


def test_k3_kl_by_hand():
    assert k3_kl(torch.tensor([-1.0]), torch.tensor([-1.5])).item() == pytest.approx(
        math.exp(-0.5) + 0.5 - 1
    )
    assert k3_kl(torch.tensor([-1.0]), torch.tensor([-1.0])).item() == 0.0


# Two completions of 3 tokens, the second of 2 (its last token is padding).
LOGP = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -1.2, -3.0]])
OLD = torch.tensor([[-1.1, -0.5, -1.0], [-0.2, -1.0, -1.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADVANTAGES = torch.tensor([1.0, -2.0])


def per_token_by_hand(epsilon: float = 0.2) -> list[list[float]]:
    """-min(r A, clip(r) A) for each token, written out."""
    rows = []
    for logp, old, advantage in zip(LOGP.tolist(), OLD.tolist(), ADVANTAGES.tolist()):
        row = []
        for a, b in zip(logp, old):
            r = math.exp(a - b)
            clipped = min(max(r, 1 - epsilon), 1 + epsilon)
            row.append(-min(r * advantage, clipped * advantage))
        rows.append(row)
    return rows


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_clipped_token_loss_by_hand(loss_type):
    terms = per_token_by_hand()
    kept = [terms[0], terms[1][:2]]
    expected = {
        "grpo": (sum(kept[0]) / 3 + sum(kept[1]) / 2) / 2,
        "bnpo": (sum(kept[0]) + sum(kept[1])) / 5,
        "dr_grpo": (sum(kept[0]) + sum(kept[1])) / (2 * 4),
        "dapo": (sum(kept[0]) + sum(kept[1])) / 10,  # the whole generation batch's 10 tokens
    }[loss_type]
    loss = clipped_token_loss(LOGP, OLD, ADVANTAGES, MASK, loss_type=loss_type, max_completion_length=4,
                              num_tokens=10)  # fmt: skip
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_the_kl_term_and_asymmetric_clipping_by_hand():
    ref = torch.tensor([[-1.2, -0.4, -2.5], [-0.1, -1.0, -1.0]])
    loss = clipped_token_loss(LOGP, OLD, ADVANTAGES, MASK, loss_type="bnpo", epsilon_low=0.2,
                              epsilon_high=0.28, beta=0.04, ref_logprobs=ref)  # fmt: skip
    total = 0.0
    for i, row in enumerate(LOGP.tolist()):
        for t, logp in enumerate(row):
            if not MASK[i, t]:
                continue
            r = math.exp(logp - OLD[i, t].item())
            advantage = ADVANTAGES[i].item()
            clipped = min(max(r, 0.8), 1.28)
            delta = ref[i, t].item() - logp
            kl = math.exp(delta) - delta - 1
            total += -min(r * advantage, clipped * advantage) + 0.04 * kl * r  # (bias-corrected)
    assert loss.item() == pytest.approx(total / 5, rel=1e-6)
    uncorrected = clipped_token_loss(LOGP, OLD, ADVANTAGES, MASK, loss_type="bnpo", beta=0.04,
                                     epsilon_high=0.28, ref_logprobs=ref, bias_corrected_kl=False)  # fmt: skip
    assert uncorrected.item() != pytest.approx(loss.item(), rel=1e-3)
    with pytest.raises(ValueError, match="reference"):
        clipped_token_loss(LOGP, OLD, ADVANTAGES, MASK, beta=0.04)


def test_the_clipped_side_passes_no_gradient():
    """A token whose ratio is clipped on the side its advantage pushes contributes no gradient."""
    logp = torch.tensor([[0.5, 0.0]], requires_grad=True)  # ratios e^0.5 = 1.65 (clipped), 1
    loss = clipped_token_loss(
        logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), loss_type="bnpo"
    )
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([0.0, -0.5])  # d(-r/2)/dlogp = -r/2 at r = 1


def test_clipped_sequence_loss_by_hand():
    old_sums = torch.tensor([-2.6, -1.2])
    loss = clipped_sequence_loss(LOGP, old_sums, ADVANTAGES, MASK)
    terms = []
    for logp, mask, old, advantage in zip(
        LOGP.tolist(), MASK.tolist(), old_sums.tolist(), ADVANTAGES.tolist()
    ):
        r = math.exp(sum(a for a, m in zip(logp, mask) if m) - old)
        terms.append(-min(r * advantage, min(max(r, 0.8), 1.2) * advantage))
    assert loss.item() == pytest.approx(sum(terms) / 2, rel=1e-6)
