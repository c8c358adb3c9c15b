"""Each loss term against a value computed by hand on small tensors."""

import math

import pytest
import torch

from hir.losses import (
    IGNORE_INDEX,
    answer_balanced_weights,
    balanced_weights,
    in_batch_contrastive_loss,
    label_smoothed_nll,
    mean_entropy,
    pairwise_contrastive_loss,
    sequence_scores,
    token_statistics,
)

# One sequence, three positions, vocabulary of 3. Position 0 is prompt (masked).
LOGITS = torch.tensor([[[0.0, 0.0, 0.0], [math.log(2.0), 0.0, 0.0], [0.0, math.log(3.0), 0.0]]])
LABELS = torch.tensor([[IGNORE_INDEX, 0, 2]])
STATISTICS = token_statistics(LOGITS, LABELS)
# Position 1: p = (1/2, 1/4, 1/4); label 0 -> p = 1/2.  Position 2: p = (1/5, 3/5, 1/5); label 2 -> 1/5.


def test_label_smoothed_nll_by_hand():
    nll = (-math.log(1 / 2) - math.log(1 / 5)) / 2
    assert label_smoothed_nll(STATISTICS).item() == pytest.approx(nll)
    uniform_1 = -(math.log(1 / 2) + 2 * math.log(1 / 4)) / 3
    uniform_2 = -(2 * math.log(1 / 5) + math.log(3 / 5)) / 3
    expected = 0.8 * nll + 0.2 * (uniform_1 + uniform_2) / 2
    assert label_smoothed_nll(STATISTICS, epsilon=0.2).item() == pytest.approx(expected)


def test_label_smoothing_matches_transformers_label_smoother():
    from transformers.trainer_pt_utils import LabelSmoother

    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    labels[0, :2] = IGNORE_INDEX
    reference = LabelSmoother(epsilon=0.2)({"logits": logits}, labels, shift_labels=False)
    assert label_smoothed_nll(token_statistics(logits, labels), 0.2).item() == pytest.approx(
        reference.item(), rel=1e-5
    )


def test_sequence_scores_are_mean_output_token_logprobs():
    assert sequence_scores(STATISTICS).item() == pytest.approx(
        (math.log(1 / 2) + math.log(1 / 5)) / 2
    )


def test_sum_scores_are_output_token_logprob_sums():
    assert sequence_scores(STATISTICS, "sum").item() == pytest.approx(
        math.log(1 / 2) + math.log(1 / 5)
    )


def test_weighted_nll_by_hand():
    # Two sequences: the first as STATISTICS (labels p = 1/2, 1/5), the second one output token
    # at p = 1/4 (position 1, label 1). Weights 2 and 0.5 scale each row's tokens; the sum is
    # divided by the plain token count, 3.
    logits = torch.cat([LOGITS, LOGITS])
    labels = torch.tensor([[IGNORE_INDEX, 0, 2], [IGNORE_INDEX, 1, IGNORE_INDEX]])
    statistics = token_statistics(logits, labels)
    weights = torch.tensor([2.0, 0.5])
    expected = (2.0 * (-math.log(1 / 2) - math.log(1 / 5)) + 0.5 * -math.log(1 / 4)) / 3
    assert label_smoothed_nll(statistics, 0.0, weights).item() == pytest.approx(expected)
    uniform_1 = -(math.log(1 / 2) + 2 * math.log(1 / 4)) / 3
    uniform_2 = -(2 * math.log(1 / 5) + math.log(3 / 5)) / 3
    uniform = (2.0 * (uniform_1 + uniform_2) + 0.5 * uniform_1) / 3
    smoothed = label_smoothed_nll(statistics, 0.2, weights).item()
    assert smoothed == pytest.approx(0.8 * expected + 0.2 * uniform)
    # Weights of one change nothing.
    assert label_smoothed_nll(statistics, 0.2, torch.ones(2)).item() == pytest.approx(
        label_smoothed_nll(statistics, 0.2).item()
    )


def test_balanced_weights_give_each_label_the_same_total():
    weights = balanced_weights(["wrong", "wrong", "right", "wrong"])
    assert weights == pytest.approx([2 / 3, 2 / 3, 2.0, 2 / 3])
    assert sum(weights) == pytest.approx(4)  # mean 1: the loss keeps its scale
    assert balanced_weights(["a", "a"]) == [1.0, 1.0]


def test_answer_balanced_weights_balance_answers_within_each_instruction():
    instructions = ["right", "right", "right", "wrong", "wrong"]
    answers = ["1", "1", "3", "2", "1"]
    # right: answers 1, 1, 3 -> 3 / (2 * 2), 3 / (2 * 2), 3 / (2 * 1); wrong: two answers, 1 each.
    weights = answer_balanced_weights(instructions, answers)
    assert weights == pytest.approx([0.75, 0.75, 1.5, 1.0, 1.0])
    assert sum(weights[:3]) == pytest.approx(3)  # each instruction keeps its share


def test_pairwise_contrastive_by_hand():
    s_pos, s_neg = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.5])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    plain = (-math.log(sig(2.0)) - math.log(sig(-0.5))) / 2
    assert pairwise_contrastive_loss(s_pos, s_neg).item() == pytest.approx(plain)
    smoothed = (
        0.8 * -math.log(sig(2.0))
        + 0.2 * -math.log(sig(-2.0))
        + 0.8 * -math.log(sig(-0.5))
        + 0.2 * -math.log(sig(0.5))
    ) / 2
    assert pairwise_contrastive_loss(s_pos, s_neg, epsilon=0.2).item() == pytest.approx(smoothed)


def test_pairwise_equals_the_public_codes_probability_ratio():
    # The public code: p+ = exp(s+), p- = exp(s-), -log(p+ / (p+ + p-)).
    s_pos, s_neg = torch.tensor([-0.7]), torch.tensor([-1.9])
    ratio = math.exp(-0.7) / (math.exp(-0.7) + math.exp(-1.9))
    assert pairwise_contrastive_loss(s_pos, s_neg).item() == pytest.approx(-math.log(ratio))


def test_in_batch_contrastive_by_hand():
    scores = torch.tensor([[-1.0, -2.0], [-3.0, -0.5]])
    row_0 = -math.log(math.exp(-1.0) / (math.exp(-1.0) + math.exp(-2.0)))
    row_1 = -math.log(math.exp(-0.5) / (math.exp(-3.0) + math.exp(-0.5)))
    assert in_batch_contrastive_loss(scores).item() == pytest.approx((row_0 + row_1) / 2)


def test_mean_entropy_by_hand():
    h1 = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    h2 = -(2 * 0.2 * math.log(0.2) + 0.6 * math.log(0.6))
    assert mean_entropy(STATISTICS).item() == pytest.approx((h1 + h2) / 2)


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda logits, labels: label_smoothed_nll(token_statistics(logits, labels), 0.2),
        lambda logits, labels: mean_entropy(token_statistics(logits, labels)),
        lambda logits, labels: pairwise_contrastive_loss(
            *sequence_scores(token_statistics(logits, labels)), 0.2
        ),
        lambda logits, labels: in_batch_contrastive_loss(
            torch.stack(
                [
                    sequence_scores(token_statistics(logits, labels)),
                    sequence_scores(token_statistics(2 * logits, labels)),
                ]
            )
        ),
    ],
)
def test_gradients_reach_only_output_positions(loss_fn):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, requires_grad=True)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1, 3], [IGNORE_INDEX, 2, 4, IGNORE_INDEX]])
    loss_fn(logits, labels).backward()
    masked = labels == IGNORE_INDEX
    assert torch.all(logits.grad[masked] == 0)
    assert torch.all(logits.grad[~masked].abs().sum(-1) > 0)
