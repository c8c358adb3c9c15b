"""PPO and reward-model maths against hand-computed values."""

import math

import pytest
import torch

from hir.losses import (
    gae_advantages,
    kl_estimate,
    kl_penalized_rewards,
    ppo_policy_loss,
    ppo_value_loss,
    ranking_loss,
)


def test_kl_estimators_by_hand():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_estimate(logp, ref, "k3").item() == pytest.approx((0.5 - 1) - math.log(0.5))
    assert kl_estimate(ref, ref, "k3").item() == 0.0


def test_k1_and_k3_are_unbiased_for_the_true_kl():
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.4, 0.4, 0.2])
    true_kl = float((p * (p / q).log()).sum())
    torch.manual_seed(0)
    draws = torch.multinomial(p, 200_000, replacement=True)
    logp, ref = p.log()[draws], q.log()[draws]
    for kind in ("k1", "k3"):
        assert kl_estimate(logp, ref, kind).mean().item() == pytest.approx(true_kl, abs=5e-3)


def test_kl_penalized_rewards_put_the_score_on_the_last_output_token():
    logp = torch.tensor([[0.0, -1.0, -1.0, 0.0]])
    ref = torch.tensor([[0.0, -2.0, -1.5, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    rewards = kl_penalized_rewards(torch.tensor([3.0]), logp, ref, mask, kl_coef=0.1)
    assert rewards[0].tolist() == pytest.approx([0.0, -0.1, -0.05 + 3.0, 0.0])


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 1.0, 2.0]])
    values = torch.tensor([[0.5, 0.2, 0.1]])
    mask = torch.ones(1, 3)
    gamma, lam = 0.9, 0.8
    d2 = 2.0 - 0.1
    d1 = 1.0 + gamma * 0.1 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.5
    a2, a1 = d2, d1 + gamma * lam * d2
    a0 = d0 + gamma * lam * a1
    advantages, returns = gae_advantages(rewards, values, mask, gamma, lam)
    assert advantages[0].tolist() == pytest.approx([a0, a1, a2])
    assert returns[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.1])


def test_gae_skips_padding_inside_a_row():
    padded, mask = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.0, 1.0]])
    values = torch.tensor([[0.3, 9.0, 0.4]])
    a, _ = gae_advantages(padded, values, mask, 1.0, 1.0)
    dense, _ = gae_advantages(
        torch.tensor([[1.0, 2.0]]), torch.tensor([[0.3, 0.4]]), torch.ones(1, 2), 1.0, 1.0
    )
    assert a[0, [0, 2]].tolist() == pytest.approx(dense[0].tolist()) and a[0, 1] == 0


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 2)
    logp = torch.tensor([[math.log(1.5), math.log(0.5)]])  # ratios 1.5 and 0.5
    advantages = torch.tensor([[1.0, 1.0]])
    loss, clip_fraction = ppo_policy_loss(logp, old, advantages, torch.ones(1, 2), clip=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-0.5, -0.8) = -0.5 (unclipped)
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert clip_fraction.item() == pytest.approx(0.5)
    negative, _ = ppo_policy_loss(logp, old, -advantages, torch.ones(1, 2), clip=0.2)
    # A = -1: token 0: max(1.5, 1.2) = 1.5; token 1: max(0.5, 0.8) = 0.8
    assert negative.item() == pytest.approx((1.5 + 0.8) / 2)


def test_clipped_value_loss_by_hand():
    values, old, returns = (
        torch.tensor([[1.0, 0.0]]),
        torch.tensor([[0.5, 0.1]]),
        torch.tensor([[2.0, 0.0]]),
    )
    loss = ppo_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: max((1-2)^2, (0.7-2)^2) = 1.69; token 1: max(0, (0-0)^2) = 0
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.0) / 2)


def test_ranking_loss_uses_all_pairs():
    rewards = torch.tensor([2.0, 1.0, -1.0])  # best first
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = -(math.log(sig(1.0)) + math.log(sig(3.0)) + math.log(sig(2.0))) / 3
    assert ranking_loss(rewards).item() == pytest.approx(expected)
    assert ranking_loss(torch.tensor([[2.0, 1.0, -1.0], [0.0, 0.0, 0.0]])).item() == pytest.approx(
        (expected + math.log(2)) / 2
    )
