"""PPO math against values worked out by hand."""

import math

import pytest
import torch

from stackllama_cli.stages.ppo.math import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    gae,
    kl_estimate,
    last_token_index,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_rewards,
    policy_loss,
    value_loss,
)

T = torch.tensor


def test_masked_mean_var_whiten():
    x = T([[1.0, 2.0, 3.0, 100.0]])
    m = T([[1.0, 1.0, 1.0, 0.0]])
    assert masked_mean(x, m) == 2.0
    assert masked_var(x, m) == 1.0  # ((1-2)^2 + 0 + (3-2)^2) / (3 - 1)
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(2 / 3)
    w = masked_whiten(x, m)
    assert torch.allclose(w, T([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6)  # padding -> 0, 100 ignored


def test_kl_estimators():
    logp, ref = T([math.log(0.5), math.log(0.2)]), T([math.log(0.25), math.log(0.4)])
    k1 = kl_estimate(logp, ref, "k1")
    assert torch.allclose(k1, T([math.log(2), math.log(0.5)]))
    # k3 = (r - 1) - log r, r = p_ref / p: r = 0.5 -> 0.5 - 1 + log 2; r = 2 -> 1 - log 2
    assert torch.allclose(kl_estimate(logp, ref, "k3"), T([-0.5 + math.log(2), 1 - math.log(2)]))
    assert torch.allclose(kl_estimate(logp, ref, "abs"), T([math.log(2), math.log(2)]))
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k2")


def test_per_token_rewards_put_score_on_last_real_token():
    kl = T([[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.5, 0.5]])
    mask = T([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    rewards = per_token_rewards(T([1.0, -2.0]), kl, mask, beta=0.5)
    expected = T([[-0.05, -0.1 + 1.0, 0.0, 0.0], [-0.25, -0.25, -0.25, -0.25 - 2.0]])
    assert torch.allclose(rewards, expected)
    assert last_token_index(mask).tolist() == [1, 3]


def test_gae_three_tokens_by_hand():
    rewards, values, mask = T([[1.0, 0.0, 2.0]]), T([[0.5, 1.0, 1.5]]), T([[1.0, 1.0, 1.0]])
    gamma, lam = 0.9, 0.5
    # deltas: d2 = 2 - 1.5 = 0.5; d1 = 0 + 0.9*1.5 - 1 = 0.35; d0 = 1 + 0.9*1.0 - 0.5 = 1.4
    # A2 = 0.5; A1 = 0.35 + 0.45*0.5 = 0.575; A0 = 1.4 + 0.45*0.575 = 1.65875
    adv, ret = gae(rewards, values, mask, gamma, lam)
    assert torch.allclose(adv, T([[1.65875, 0.575, 0.5]]))
    assert torch.allclose(ret, T([[2.15875, 1.575, 2.0]]))


def test_gae_stops_at_the_mask():
    adv, ret = gae(T([[1.0, 5.0]]), T([[0.0, 7.0]]), T([[1.0, 0.0]]))
    assert adv.tolist() == [[1.0, 0.0]] and ret.tolist() == [[1.0, 0.0]]  # nothing leaks from padding


def test_policy_loss_clipping():
    old = T([[0.0, 0.0]])
    logp = T([[math.log(1.5), math.log(0.5)]])  # ratios 1.5 and 0.5
    adv, mask = T([[1.0, 1.0]]), T([[1.0, 1.0]])
    loss, stats = policy_loss(logp, old, adv, mask, cliprange=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-0.5, -0.8) = -0.5
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert stats["clipfrac"].item() == 0.5
    assert stats["approx_kl"].item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2)


def test_value_loss_clipping():
    loss, frac = value_loss(T([[2.0, 0.0]]), T([[0.0, 0.0]]), T([[3.0, 1.0]]), T([[1.0, 1.0]]), 0.5)
    # token 0: v=2 -> (2-3)^2 = 1; clipped v=0.5 -> (0.5-3)^2 = 6.25; max 6.25. token 1: 1 and 1 -> 1
    assert loss.item() == pytest.approx(0.5 * (6.25 + 1.0) / 2)
    assert frac.item() == 0.5


def test_logprobs_and_entropy():
    logits = torch.log(T([[[0.5, 0.25, 0.25]]]))
    assert logprobs_from_logits(logits, T([[1]])).item() == pytest.approx(math.log(0.25))
    assert entropy_from_logits(logits).item() == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))


def test_kl_controllers():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    ctl.update(current_kl=12.0, n_steps=100)  # error clipped to +0.2
    assert ctl.value == pytest.approx(0.2 * (1 + 0.2 * 100 / 10000))
    ctl.update(current_kl=4.5, n_steps=100)  # error = -0.25 -> clipped -0.2
    assert ctl.value == pytest.approx(0.2 * 1.002 * 0.998)
    ctl.update(current_kl=6.6, n_steps=1000)  # error 0.1
    assert ctl.value == pytest.approx(0.2 * 1.002 * 0.998 * 1.01)
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 1000)
    assert fixed.value == 0.3
    restored = AdaptiveKLController(1.0, 1.0, 1)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value
