"""The command line itself: version, help without torch, examples on every command, one-line errors."""

import subprocess
import sys

import pytest

from stackllama_cli import __version__
from stackllama_cli.cli import COMMANDS
from tests.conftest import REPO, run_cli_subprocess

NAMES = [name.replace("_", "-") for name in COMMANDS]


def test_version():
    proc = run_cli_subprocess("--version")
    assert proc.returncode == 0 and proc.stdout == f"stackllama {__version__}\n"


def test_help_does_not_import_torch():
    code = ("import sys\nfrom stackllama_cli.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules, 'transformers' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == "False False"
    assert all(name in proc.stdout for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_help_with_examples(name, run_cli):
    result = run_cli(name, "--help")
    assert result.exit_code == 0 and "Examples" in result.stdout and f"stackllama {name}" in result.stdout


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    proc = run_cli_subprocess("prepare-data", tmp_path / "missing.xml", "--output", tmp_path / "out")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: input {tmp_path / 'missing.xml'} does not exist"]
    debug = run_cli_subprocess("--debug", "prepare-data", tmp_path / "missing.xml", "--output", tmp_path / "out")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert run_cli_subprocess("sft", "--no-such-option").returncode == 2  # usage errors: click's code 2


def test_epilogs_reflow_into_paragraphs_but_keep_example_lines():
    from stackllama_cli.cli import reflow

    text = "[bold]Examples[/]\n\n  [cyan]a --x[/]\n\n  [cyan]b[/]\n\nOne sentence wrapped\nin the source.\n\nOutput: x."
    assert reflow(text) == ("[bold]Examples[/]\n\n  [cyan]a --x[/]\n\n  [cyan]b[/]\n\n"
                            "One sentence wrapped in the source.\n\nOutput: x.")
