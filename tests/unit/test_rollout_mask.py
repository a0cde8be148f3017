"""Response masks: tokens after the first EOS carry nothing (the negative-KL fix)."""

import torch

from stackllama_cli.stages.ppo.math import gae, kl_estimate, per_token_rewards, policy_loss
from stackllama_cli.stages.ppo.rollout import response_mask

EOS = 0


def test_mask_covers_up_to_and_including_first_eos():
    ids = torch.tensor([[5, 6, EOS, EOS, EOS], [5, 6, 7, 8, 9], [EOS, 3, EOS, 4, 4]])
    mask, finished = response_mask(ids, EOS)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert finished.tolist() == [True, False, True]


def test_finished_early_sequence_contributes_nothing_after_eos():
    """Huge (negative) KL on padding after EOS must not change rewards, advantages or the loss."""
    ids = torch.tensor([[5, EOS, EOS, EOS]])
    mask, _ = response_mask(ids, EOS)
    logp = torch.tensor([[-1.0, -0.5, -30.0, -30.0]])  # padding the policy would never sample
    ref = torch.tensor([[-1.2, -0.4, -0.1, -0.1]])
    kl = kl_estimate(logp, ref)
    rewards = per_token_rewards(torch.tensor([2.0]), kl, mask, beta=0.1)
    assert rewards[0, 2:].abs().sum() == 0 and rewards[0, 1] == -0.1 * (-0.1) + 2.0
    values = torch.tensor([[0.1, 0.2, 50.0, -50.0]])
    adv, ret = gae(rewards, values, mask)
    assert adv[0, 2:].abs().sum() == 0 and ret[0, 2:].abs().sum() == 0
    changed = logp.clone()
    changed[0, 2:] = 5.0  # anything at all after EOS
    loss_a, _ = policy_loss(logp, logp, adv, mask, 0.2)
    loss_b, _ = policy_loss(changed, logp, adv, mask, 0.2)
    assert torch.equal(loss_a, loss_b)
