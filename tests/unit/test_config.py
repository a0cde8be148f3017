"""Config precedence: dataclass defaults < --config file < options given on the command line."""

import pytest

from stackllama_cli.core.config import build_config, load_config_file
from stackllama_cli.core.errors import StackLlamaError
from stackllama_cli.stages.sft import SftConfig


def test_file_section_then_cli_override(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[sft]\nmax-steps = 7\nlearning_rate = 3e-4\n\n[ppo]\nsteps = 1\n')
    values = load_config_file(path, "sft")
    assert values == {"max_steps": 7, "learning_rate": 3e-4}
    cfg = build_config(SftConfig, {"learning_rate": 1e-5}, values)
    assert cfg.max_steps == 7 and cfg.learning_rate == 1e-5 and cfg.seq_length == SftConfig.seq_length


def test_unknown_keys_and_bad_values_are_errors(tmp_path):
    with pytest.raises(StackLlamaError, match="unknown config file key"):
        build_config(SftConfig, {}, {"max_stepz": 3})
    with pytest.raises(StackLlamaError, match="--packing"):
        build_config(SftConfig, {"packing": "zigzag"})
    bad = tmp_path / "bad.toml"
    bad.write_text("max_steps = ")
    with pytest.raises(StackLlamaError, match="cannot parse"):
        load_config_file(bad)
    with pytest.raises(StackLlamaError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_cli_reads_config_file(tmp_path, run_cli):
    path = tmp_path / "p.toml"
    path.write_text('[prepare-data]\nmax_pairs = 1\n')
    result = run_cli("prepare-data", "--output", tmp_path / "out", "--config", path, "--json")
    assert result.exit_code == 0, result
    import json

    assert json.loads(result.stdout)["pairs"] == 28  # one pair per question with pairs
