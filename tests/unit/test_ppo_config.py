"""PpoConfig: the defaults of the options strong PPO implementations add (all off), and their validation."""

import pytest

from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.stages.ppo.config import PpoConfig


def test_defaults_leave_the_classic_recipe_unchanged():
    cfg = PpoConfig()
    assert (cfg.missing_eos_penalty, cfg.reward_norm, cfg.kl_in_loss, cfg.value_init, cfg.critic_warmup) == \
        (0.0, "none", "none", "random", 0)
    assert cfg.kl_loss_coef == 0.01 and cfg.reward_norm_batches == 1 and cfg.temperature == 1.0


def test_normalize_reward_is_reward_norm_stats():
    assert PpoConfig(normalize_reward=True).reward_norm == "stats"
    assert PpoConfig(normalize_reward=True, reward_norm="stats").reward_norm == "stats"
    with pytest.raises(UsageError, match="choose one"):
        PpoConfig(normalize_reward=True, reward_norm="policy")


@pytest.mark.parametrize("field,value,message", [
    ("kl_in_loss", "k1", "--kl-in-loss must be none, k2 or k3"),
    ("kl_loss_coef", -1.0, "--kl-loss-coef"),
    ("reward_norm", "batch", "--reward-norm must be none, stats or policy"),
    ("reward_norm_batches", 0, "--reward-norm-batches"),
    ("missing_eos_penalty", -0.5, "--missing-eos-penalty"),
    ("value_init", "zeros", "--value-init must be random or reward-model"),
    ("critic_warmup", -1, "--critic-warmup must be non-negative"),
])
def test_bad_values_are_one_line_errors(field, value, message):
    with pytest.raises(StackLlamaError, match=message) as info:
        PpoConfig(**{field: value})
    assert info.value.exit_code == 1


def test_warmup_as_long_as_the_run_is_a_usage_error():
    with pytest.raises(UsageError, match="--critic-warmup \\(4\\) must be below --steps \\(4\\)"):
        PpoConfig(steps=4, critic_warmup=4)
