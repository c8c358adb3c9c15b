"""The structural bound of docs/method.md ("What the contrastive term can do on a buffer sampled
under the target instruction"), checked on exact discrete distributions."""

import math

import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import entropy

from hir.losses import pairwise_contrastive_loss


def test_the_margins_expectation_is_a_kl_and_bounds_the_signal_toward_the_labels():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        p_c = torch.softmax(torch.randn(50, generator=generator, dtype=torch.float64) * 2, 0)
        p_w = torch.softmax(torch.randn(50, generator=generator, dtype=torch.float64) * 2, 0)
        right = torch.rand(50, generator=generator) < 0.2
        margin = p_c.log() - p_w.log()
        kl = (p_c * margin).sum()
        # E over p_c of the margin is KL(p_c || p_w) (scipy's), hence >= 0.
        assert float(kl) == pytest.approx(entropy(p_c.numpy(), p_w.numpy()), abs=1e-12) and kl >= 0
        q = float(p_c[right].sum())
        mean_right = float((p_c * margin)[right].sum()) / q
        toward_labels = float((p_c * margin)[right].sum() - (p_c * margin)[~right].sum())
        assert toward_labels == pytest.approx(2 * q * mean_right - float(kl), abs=1e-12)
        assert toward_labels <= 2 * q * mean_right


def best_loss(q: float, epsilon: float = 0.2) -> tuple[float, float]:
    """The lowest pairwise contrastive loss over distributions whose right share under p_c is q:
    one margin for the right samples (x), the wrong ones' margin set by p_w's normalization,
    q e^-x + (1 - q) e^-m_wrong = 1. Returns (loss, x)."""

    def loss(x: float) -> float:
        m_wrong = math.log(1 - q) - math.log(1 - q * math.exp(-x))
        margins = torch.tensor([x, -m_wrong], dtype=torch.float64)  # toward each sample's label
        per_class = [float(pairwise_contrastive_loss(m.view(1), torch.zeros(1, dtype=torch.float64), epsilon))
                     for m in margins]  # fmt: skip
        return q * per_class[0] + (1 - q) * per_class[1]

    result = minimize_scalar(loss, bounds=(0.0, 20.0), method="bounded", options={"xatol": 1e-10})
    return result.fun, result.x


def test_the_best_contrastive_loss_is_ln2_minus_0431_q():
    loss, margin = best_loss(0.03)
    assert loss == pytest.approx(0.6804, abs=1e-4) and margin == pytest.approx(1.74, abs=0.01)
    assert best_loss(0.1)[0] == pytest.approx(0.6520, abs=1e-4)
    # The slope at q -> 0: each right sample's gain f(0) - f(x) plus the wrong ones' shift.
    slope = (math.log(2) - best_loss(1e-4)[0]) / 1e-4
    assert slope == pytest.approx(0.431, abs=1e-3)
    # The estimate that counts only the right samples reaching the floor H(0.2) = 0.500 is off.
    assert math.log(2) - 0.193 * 0.03 > loss + 0.006
