"""bench/gpu_smoke.sh --dry-run: prints its commands without a GPU, and each of them parses with the real CLI."""

import os
import shlex
import subprocess

import click
import typer

from tests.conftest import REPO


def dry_run(tmp_path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "GPU", "STACKLLAMA")}
    proc = subprocess.run(["bash", str(REPO / "bench" / "gpu_smoke.sh"), "--dry-run", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was written
    return [line for line in proc.stdout.splitlines() if line.startswith("stackllama ")]


def test_dry_run_lists_the_pipeline_then_the_quantised_paths(tmp_path):
    commands = [shlex.split(line) for line in dry_run(tmp_path)]
    names = [c[1] for c in commands]
    assert names == ["env", "prepare-data", "sft", "train-rm", "eval-rm", "ppo", "merge", "generate",
                     "sft", "ppo", "generate", "sft", "ppo", "generate"]
    for bits, part in (("8", commands[8:11]), ("4", commands[11:14])):
        assert all(f"--load-in-{bits}bit" in c for c in part)
    assert all("--precision" in c and c[c.index("--precision") + 1] == "bf16" for c in commands
               if c[1] in ("sft", "train-rm", "eval-rm", "ppo", "generate"))
    assert all(c[c.index("--model") + 1] == "smollm2-135m" for c in commands if c[1] == "sft")
    assert "--input" not in commands[1]  # prepare-data with no input: the bundled sample


def test_every_command_parses_with_the_real_options(tmp_path):
    from stackllama_cli.cli import app

    group = typer.main.get_command(app)
    for line in dry_run(tmp_path):
        name, *args = shlex.split(line.split(" > ")[0])[1:]
        parent = click.Context(group, info_name="stackllama")
        try:
            group.get_command(parent, name).make_context(name, args, parent=parent)  # parses, runs nothing
        except click.UsageError as exc:
            raise AssertionError(f"{line}: {exc}") from exc
