"""YAML config files, the example recipes, TrainingArguments keys passed through, and --report-to's trackers."""

from pathlib import Path

import pytest

from stackllama_cli.core.config import build_config, load_config_file
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.data.prepare import PrepareConfig
from stackllama_cli.stages.ppo.config import PpoConfig
from stackllama_cli.stages.reward import RewardConfig
from stackllama_cli.stages.sft import SftConfig
from stackllama_cli.stages.trackers import (
    ACCELERATE_TRACKERS,
    TRANSFORMERS_TRACKERS,
    check_report_to,
    hparams,
    parse_report_to,
    transformers_report_to,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STAGE_CONFIGS = {"prepare-data": PrepareConfig, "sft": SftConfig, "train-rm": RewardConfig, "ppo": PpoConfig}


def test_yaml_file_with_a_section(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("sft:\n  max-steps: 7\n  learning_rate: 3.0e-4\n  report_to: tensorboard,wandb\nppo:\n  steps: 1\n")
    cfg = build_config(SftConfig, {"learning_rate": 1e-5}, load_config_file(path, "sft"))
    assert (cfg.max_steps, cfg.learning_rate, cfg.report_to) == (7, 1e-5, "tensorboard,wandb")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_example_parses_into_its_stage_config(path):
    cls = STAGE_CONFIGS[path.stem]
    cfg = build_config(cls, {}, load_config_file(path, path.stem))
    assert isinstance(cfg, cls)
    if path.parent.name == "stackllama-7b" and path.stem in ("sft", "train-rm", "ppo"):
        assert cfg.report_to == "wandb" and cfg.run_name.startswith("llama-7b")
    if path.parent.name == "stackllama-7b" and path.stem == "sft":
        assert (cfg.learning_rate, cfg.seq_length, cfg.load_in_8bit) == (1e-5, 1024, True)
        assert cfg.trainer_args == {"ddp_timeout": 7200}  # a TrainingArguments field, passed through


def test_example_folders_cover_every_stage():
    for folder in ("stackllama-7b", "cpu-demo"):
        assert sorted(p.stem for p in (EXAMPLES / folder).glob("*.yaml")) == sorted(STAGE_CONFIGS)


def test_trainer_args_pass_through_to_trl(tmp_path):
    from trl import SFTConfig

    from stackllama_cli.stages.common import training_args_kwargs

    cfg = build_config(SftConfig, {}, {"max_steps": 2, "adam_beta2": 0.95, "neftune_noise_alpha": 5,
                                       "completion_only_loss": False})
    assert cfg.trainer_args == {"adam_beta2": 0.95, "neftune_noise_alpha": 5, "completion_only_loss": False}
    args = SFTConfig(**training_args_kwargs(cfg, tmp_path, has_eval=False), max_length=64)
    assert (args.adam_beta2, args.neftune_noise_alpha, args.completion_only_loss) == (0.95, 5, False)
    rm = build_config(RewardConfig, {}, {"optim": "adafactor"})
    assert rm.trainer_args == {"optim": "adafactor"}


def test_managed_settings_cover_what_stackllama_sets(tmp_path):
    from stackllama_cli.stages.common import training_args_kwargs
    from stackllama_cli.stages.trainer_args import MANAGED

    own = {f for f in SftConfig.__dataclass_fields__}
    set_by_us = set(training_args_kwargs(SftConfig(), tmp_path, has_eval=True))
    assert set_by_us <= own | set(MANAGED), sorted(set_by_us - own - set(MANAGED))


def test_other_keys_are_refused_with_the_valid_ones():
    with pytest.raises(StackLlamaError, match=r"unknown config file key\(s\): max_stepz \(valid: attn_implementation, base, batch_size, "
                                              r".*; or any field of trl\.SFTConfig\)"):
        build_config(SftConfig, {}, {"max_stepz": 3})
    with pytest.raises(StackLlamaError, match=r"unknown config file key\(s\): lr \(valid: .*adaptive_kl"):
        build_config(PpoConfig, {}, {"lr": 3})  # ppo passes nothing through
    with pytest.raises(StackLlamaError, match="'per_device_train_batch_size' is set by stackllama itself; use "
                                              "batch_size"):
        build_config(SftConfig, {}, {"per_device_train_batch_size": 8})
    with pytest.raises(StackLlamaError, match="'max_length' is set by stackllama itself; use seq_length"):
        build_config(SftConfig, {}, {"max_length": 8})
    with pytest.raises(StackLlamaError, match="'adam_beta2' takes a float, not 'high'"):
        build_config(SftConfig, {}, {"adam_beta2": "high"})
    with pytest.raises(StackLlamaError, match="'learning_rate' is a stackllama option"):
        SftConfig(trainer_args={"learning_rate": 1e-3})


def test_report_to_values():
    assert parse_report_to("none") == [] and parse_report_to("") == [] and parse_report_to("all") == "all"
    assert parse_report_to(" TensorBoard, wandb,tensorboard ") == ["tensorboard", "wandb"]
    check_report_to("tensorboard,mlflow,neptune")
    check_report_to("aim", accelerate=True)
    for value, accelerate, message in (("tensorbored", False, "unknown tracker.*tensorbored.*choose from azure_ml"),
                                       ("neptune", True, "ppo logs through accelerate"),
                                       ("all,wandb", False, "stand alone")):
        with pytest.raises(StackLlamaError, match=message):
            check_report_to(value, accelerate)
    assert hparams({"a": None, "b": [1, 2], "c": 1.5, "d": True}) == {"b": "[1, 2]", "c": 1.5, "d": True}


def test_tracker_names_follow_transformers_and_accelerate():
    from accelerate.utils import LoggerType
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert set(TRANSFORMERS_TRACKERS) == set(INTEGRATION_TO_CALLBACK)
    assert set(ACCELERATE_TRACKERS) == {str(t) for t in LoggerType} - {"all"}


def test_installed_trackers_are_checked_when_the_stage_starts():
    pytest.importorskip("tensorboard")
    assert transformers_report_to("tensorboard") == ["tensorboard"] and "tensorboard" in transformers_report_to("all")
    assert transformers_report_to("none") == []
    missing = next((n for n in ("neptune", "wandb", "dagshub", "flyte") if n not in transformers_report_to("all")))
    with pytest.raises(StackLlamaError, match=f"--report-to {missing}: not installed"):
        transformers_report_to(missing)


def test_cli_report_to_error_is_one_line(run_cli, tmp_path):
    result = run_cli("sft", "--data", tmp_path, "--output", tmp_path / "o", "--report-to", "tensorbored")
    assert result.exit_code == 1 and "unknown tracker(s) tensorbored" in result.stderr
    assert "Traceback" not in result.stderr
