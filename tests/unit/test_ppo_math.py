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
    kl_loss,
    last_token_index,
    logprobs_and_entropy,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    normalise_scores,
    per_token_rewards,
    policy_loss,
    score_stats,
    value_head_from_score_head,
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
    # k2 = (log p - log p_ref)^2 / 2
    assert torch.allclose(kl_estimate(logp, ref, "k2"), T([0.5 * math.log(2) ** 2, 0.5 * math.log(2) ** 2]))
    with pytest.raises(ValueError):
        kl_estimate(logp, ref, "k5")


def test_kl_loss_value_gradient_and_clamp():
    logp = T([[math.log(0.5), math.log(0.2)]], requires_grad=True)
    ref, mask = T([[math.log(0.25), math.log(0.4)]]), T([[1.0, 0.0]])
    loss = kl_loss(logp, ref, mask, "k3")  # only token 0: r = p_ref / p = 0.5 -> 0.5 - 1 + log 2
    assert loss.item() == pytest.approx(math.log(2) - 0.5)
    loss.backward()  # d/dlogp [exp(ref - logp) - 1 + logp - ref] = 1 - r = 0.5; the padding token gets 0
    assert torch.allclose(logp.grad, T([[0.5, 0.0]]))
    assert kl_loss(logp, ref, mask, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    far = kl_loss(T([[15.0]]), T([[0.0]]), T([[1.0]]), "k2")  # log ratio clamped to 10
    assert far.item() == pytest.approx(50.0)


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
    # at temperature 0.5: softmax(2 log p) is p^2 renormalised: (0.25, 0.0625, 0.0625) / 0.375 = (2/3, 1/6, 1/6)
    assert logprobs_from_logits(logits, T([[1]]), temperature=0.5).item() == pytest.approx(math.log(1 / 6))
    assert entropy_from_logits(logits, temperature=0.5).item() == pytest.approx(
        -(2 / 3 * math.log(2 / 3) + 2 * (1 / 6) * math.log(1 / 6)))


def full_log_softmax_logprobs(logits, tokens, temperature=1.0):
    """The formula logprobs_from_logits replaced: the whole [B, T, V] log-softmax, then a gather."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)
    return torch.gather(logp, 2, tokens.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_logprobs_equal_the_full_log_softmax(temperature, dtype):
    """Values and gradients as the full log-softmax gives them, across block boundaries (3 x 50 rows in blocks of
    64) and on a non-contiguous slice (the response positions of a longer sequence), in float32 and bf16."""
    torch.manual_seed(0)
    full = (torch.randn(3, 51, 1000) * 4).to(dtype).requires_grad_()
    logits = full[:, :-1]  # [3, 50, 1000], not contiguous
    tokens = torch.randint(0, 1000, (3, 50))
    new = logprobs_from_logits(logits, tokens, temperature)
    (grad_new,) = torch.autograd.grad((new * torch.arange(50.0)).sum(), full)
    old = full_log_softmax_logprobs(logits, tokens, temperature)
    (grad_old,) = torch.autograd.grad((old * torch.arange(50.0)).sum(), full)
    assert new.dtype == torch.float32 and new.shape == (3, 50)
    assert torch.allclose(new, old, atol=1e-5)
    assert torch.allclose(grad_new.float(), grad_old.float(), atol=1e-5)
    with torch.no_grad():
        logp, entropy = logprobs_and_entropy(logits, tokens, temperature)
        z = logits.float() / temperature
        old_entropy = torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)
    assert torch.allclose(logp, old, atol=1e-5)
    assert torch.allclose(entropy, old_entropy, atol=1e-5)


def test_reward_scale_and_value_head_from_score_head():
    stats = score_stats(T([1.0, 2.0, 3.0, 6.0]))  # mean 3, population variance (4 + 1 + 0 + 9) / 4
    assert stats == {"mean": 3.0, "std": pytest.approx(math.sqrt(3.5)), "samples": 4}
    assert normalise_scores(T([5.0]), {"mean": 3.0, "std": 2.0}, baseline=0.5).item() == 0.5  # (5 - 3) / 2 - 0.5
    assert normalise_scores(T([5.0]), None, baseline=0.5).item() == 4.5
    # score head w = (2, 4), no bias; scores standardised with mean 1, std 2, baseline 0.5
    weight, bias = value_head_from_score_head(T([[2.0, 4.0]]), None, {"mean": 1.0, "std": 2.0}, 0.5)
    assert weight.tolist() == [[1.0, 2.0]] and bias.tolist() == [-1.0]  # (0 - 1) / 2 - 0.5
    h = T([1.0, 1.0])  # raw score 6 -> (6 - 1) / 2 - 0.5 = 2, and the value head says the same
    assert (weight @ h + bias).item() == normalise_scores(T([6.0]), {"mean": 1.0, "std": 2.0}, 0.5).item() == 2.0


def test_shape_scores_penalties():
    from stackllama_cli.stages.ppo.config import PpoConfig
    from stackllama_cli.stages.ppo.reward import shape_scores

    cfg = PpoConfig(reward_baseline=1.0, reward_clip=2.0, degenerate_penalty=0.5, missing_eos_penalty=3.0)
    raw = T([4.0, 0.0, 1.5, 1.5])
    degenerate, finished = T([False, False, True, False]), T([True, True, True, False])
    # minus baseline: 3, -1, 0.5, 0.5; clipped: 2, -1, 0.5, 0.5; degenerate -0.5 on the third; no EOS -3 on the last
    assert shape_scores(raw, cfg, None, degenerate, finished).tolist() == [2.0, -1.0, 0.0, -2.5]
    scaled = shape_scores(raw, cfg, {"mean": 1.0, "std": 0.5}, degenerate, finished)
    # (raw - 1) / 0.5 - 1 = 5, -3, 0, 0; clipped 2, -2, 0, 0; then the same two penalties
    assert scaled.tolist() == [2.0, -2.0, -0.5, -3.0]


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

