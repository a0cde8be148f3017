"""PPO epochs over mini-batches: gradient-accumulation windows, early stop, critic warm-up - on a toy
policy (an embedding and two heads), so every optimizer step can be counted."""

import contextlib
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from stackllama_cli.core.errors import UsageError
from stackllama_cli.stages.ppo.config import PpoConfig
from stackllama_cli.stages.ppo.experience import experience
from stackllama_cli.stages.ppo.update import optimise

V, H, P, T = 7, 6, 2, 4


class ToyPolicy(nn.Module):
    """forward(ids, attn, start) -> logits [B, T, V], values [B, T], like stages/ppo/policy.py."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.head, self.value_head = nn.Embedding(V, H), nn.Linear(H, V), nn.Linear(H, 1)

    def forward(self, ids, attn, start, with_values=True):
        hidden = self.emb(ids)[:, start - 1 : -1]
        return self.head(hidden), (self.value_head(hidden).squeeze(-1) if with_values else None)

    @contextlib.contextmanager
    def reference(self):
        yield self


class CountingAccelerator:
    """The few accelerate calls optimise() makes, one process; counts backward passes per optimizer step."""

    def __init__(self):
        self.backwards, self.windows = 0, []

    def reduce(self, x, op):
        return x

    def unwrap_model(self, model):
        return model

    def backward(self, loss):
        loss.backward()
        self.backwards += 1

    def clip_grad_norm_(self, params, max_norm):
        return nn.utils.clip_grad_norm_(list(params), max_norm)


def setup(batch: int, **overrides):
    cfg = PpoConfig(batch_size=batch, **overrides)
    module, acc = ToyPolicy(), CountingAccelerator()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    step_fn = optimizer.step

    def counted_step(*args, **kwargs):
        acc.windows.append(acc.backwards)
        acc.backwards = 0
        return step_fn(*args, **kwargs)

    optimizer.step = counted_step
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (batch, P + T), generator=g)
    mask = torch.ones(batch, T)
    rollout = SimpleNamespace(input_ids=ids, attention_mask=torch.ones_like(ids), query_ids=ids[:, :P],
                              response_ids=ids[:, P:], response_mask=mask)
    scores = torch.randn(batch, generator=g)
    exp = experience(module, module, rollout, scores, cfg.init_kl_coef, cfg)
    return cfg, module, acc, optimizer, rollout, exp


def test_batch_must_hold_whole_accumulation_windows():
    with pytest.raises(UsageError, match="multiple of --mini-batch-size x --grad-accum"):
        PpoConfig(batch_size=8, mini_batch_size=2, grad_accum=3)
    with pytest.raises(UsageError, match="multiple of --mini-batch-size x --grad-accum"):
        PpoConfig(batch_size=6, mini_batch_size=4)
    PpoConfig(batch_size=12, mini_batch_size=2, grad_accum=3)


def test_every_optimizer_step_takes_a_full_window():
    cfg, module, acc, optimizer, rollout, exp = setup(8, mini_batch_size=1, grad_accum=4, ppo_epochs=3,
                                                      early_stopping=False)
    out = optimise(acc, module, optimizer, rollout, exp, cfg, step=0)
    assert acc.windows == [4] * 6 and acc.backwards == 0  # 8 mini-batches x 3 epochs / 4
    assert out["optimizer_steps"] == 6 and out["ppo_epochs_done"] == 3


def test_early_stop_drops_the_pending_window():
    """The first mini-batch whose policy moved past 1.5 x --target-kl stops the epochs; gradients that
    mini-batches of its unfinished window accumulated are dropped, never applied."""
    cfg, module, acc, optimizer, rollout, exp = setup(4, mini_batch_size=1, grad_accum=2, ppo_epochs=4,
                                                      target_kl=1e-9)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    out = optimise(acc, module, optimizer, rollout, exp, cfg, step=0)
    # mini-batches 1-2 ran on the rollout policy itself (KL 0) and make one step; mini-batch 3 sees the
    # moved policy and stops everything
    assert acc.windows == [2] and out["optimizer_steps"] == 1 and out["early_stopped"] is True
    assert all(p.grad is None for p in module.parameters())
    assert not torch.equal(before["head.weight"], module.head.weight)


def test_critic_warmup_trains_only_the_value_head():
    cfg, module, acc, optimizer, rollout, exp = setup(4, mini_batch_size=2, ppo_epochs=2, critic_warmup=2)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    out = optimise(acc, module, optimizer, rollout, exp, cfg, step=1)
    after = module.state_dict()
    assert out["optimizer_steps"] == 4 and out["critic_warmup"] is True
    assert torch.equal(before["emb.weight"], after["emb.weight"]) and torch.equal(before["head.weight"],
                                                                                    after["head.weight"])
    assert not torch.equal(before["value_head.weight"], after["value_head.weight"])
    out = optimise(acc, module, optimizer, rollout, exp, cfg, step=2)  # warm-up over: the policy trains
    assert out["critic_warmup"] is False and not torch.equal(before["head.weight"], module.head.weight)


def test_kl_loss_term_pulls_towards_the_reference():
    """--kl-in-loss adds coef x mean k-estimator to the loss: with no advantage at all, it alone moves the policy,
    and towards the reference."""
    cfg, module, acc, optimizer, rollout, exp = setup(4, mini_batch_size=4, ppo_epochs=1, kl_in_loss="k2",
                                                      kl_loss_coef=1.0, vf_coef=0.0, early_stopping=False)
    exp["advantages"] = torch.zeros_like(exp["advantages"])
    exp["ref_logp"] = exp["logp"] - 0.5  # the reference puts less mass on the sampled tokens
    out = optimise(acc, module, optimizer, rollout, exp, cfg, step=0)
    assert out["kl_loss"] == pytest.approx(0.5 * 0.5**2)  # k2 = 0.5 (log p - log p_ref)^2 at the first forward
    with torch.no_grad():
        logits, _ = module(rollout.input_ids, rollout.attention_mask, P)
    new = torch.gather(torch.log_softmax(logits, -1), 2, rollout.response_ids.unsqueeze(-1)).squeeze(-1)
    assert (new < exp["logp"]).all()  # log-probs of the sampled tokens moved down, towards the reference
