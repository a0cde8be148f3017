"""The `stackllama` command line: wiring only.

Each subcommand lives in `stackllama_cli/cli/commands/<name>.py`, builds its stage
config, relaunches under accelerate when asked for several processes, imports
its stage lazily and runs it. Nothing here imports torch, so `--help` is instant.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Annotated, Optional

import typer

from stackllama_cli import __version__
from stackllama_cli.cli.commands import (
    compare,
    demo,
    dpo,
    env,
    eval_rm,
    generate,
    merge,
    ppo,
    prepare_data,
    rloo,
    sft,
    train_rm,
)
from stackllama_cli.core.cards import forget_command, record_command
from stackllama_cli.core.errors import DEBUG_ENV, StackLlamaError, debug_enabled, one_line

app = typer.Typer(
    name="stackllama",
    help="From a StackExchange dump to a LLaMA-family model tuned with RLHF: "
    "[bold]prepare-data[/] -> [bold]sft[/] -> [bold]train-rm[/] -> [bold]ppo[/] (or [bold]dpo[/], [bold]rloo[/]) "
    "-> [bold]compare[/].",
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stackllama {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show library log messages.")] = False,
    log_format: Annotated[Optional[str], typer.Option(
        "--log-format", metavar="auto|rich|plain|json", show_default=False,
        help="How progress and messages read on stderr: rich (live bars), plain (one line per update: logs, "
        "nohup, CI), json (one JSON object per line, for log collectors); auto (default): rich on a terminal, "
        "plain otherwise. Env: STACKLLAMA_LOG_FORMAT.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors, warnings and the final summary on "
                                        "stderr. Env: STACKLLAMA_QUIET=1.")] = False,
) -> None:
    from stackllama_cli.core.console import LOG_FORMAT_ENV, QUIET_ENV, configure, setup_logging

    if debug:
        os.environ[DEBUG_ENV] = "1"  # inherited by relaunched worker processes
    if verbose:
        os.environ["STACKLLAMA_VERBOSE"] = "1"
    configure(log_format, quiet or None)  # a bad --log-format: a usage error before anything runs
    if log_format is not None:  # inherited like --debug: relaunched ranks and demo's stages report the same way
        os.environ[LOG_FORMAT_ENV] = log_format
    if quiet:
        os.environ[QUIET_ENV] = "1"
    setup_logging(verbose or os.environ.get("STACKLLAMA_VERBOSE") == "1")


def reflow(epilog: str) -> str:
    """Join the source's hard-wrapped lines into paragraphs (Rich keeps every newline of an epilog, so
    lines wrapped at 120 columns in the code read as ragged ones in an 80-column terminal). Blank lines
    separate paragraphs; a line indented by spaces (an example) stays a line of its own."""
    return re.sub(r"(?<=\S)\n(?=[^\s])", " ", epilog)


# Each module in cli/commands/ defines `COMMAND` (keyword arguments of `app.command`: name, help, epilog)
# and `command` (the function). Registered explicitly, in help order.
COMMAND_MODULES = (prepare_data, sft, train_rm, eval_rm, ppo, dpo, rloo, merge, generate, compare, demo, env)
COMMANDS = [module.__name__.rsplit(".", 1)[1] for module in COMMAND_MODULES]
for _module in COMMAND_MODULES:
    app.command(**{**_module.COMMAND, "epilog": reflow(_module.COMMAND.get("epilog", ""))})(_module.command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors, meaningful exit codes (1 error, 2 usage, 130 interrupted)."""
    record_command(argv)  # for the model and dataset cards (core/cards.py)
    try:
        try:
            app(args=argv, prog_name="stackllama")
        except SystemExit as done:  # click ends every command with sys.exit; Ctrl-C inside one as exit 130
            if done.code in (0, None):
                from stackllama_cli.dist.ranks import finish_distributed

                finish_distributed()
            elif done.code == 130 and not _relayed_exit():
                raise KeyboardInterrupt from None
            if isinstance(done.__context__, BrokenPipeError):  # click's exit 1 for a closed stdout
                _exit_closed_stdout()
            raise
    except BrokenPipeError:
        _exit_closed_stdout()
    except StackLlamaError as exc:
        _abort_run()
        if debug_enabled():
            raise
        _print_error(one_line(str(exc)))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        note = _abort_run()
        _print_error("interrupted" + (f": {note}" if note else ""))
        sys.exit(130)
    except Exception as exc:  # a bug or an unexpected library failure: still one line by default
        _abort_run()
        if debug_enabled():
            raise
        _print_error(f"{type(exc).__name__}: {one_line(str(exc))} (rerun with --debug for the traceback)")
        sys.exit(1)
    finally:
        forget_command()


def _abort_run() -> str | None:
    """A failed or interrupted run's output follows core/rundir.py's rules; returns what was kept."""
    rundir = sys.modules.get("stackllama_cli.core.rundir")  # imported only by commands that open a run
    if rundir is None:
        return None
    rundir.abort_run()
    return rundir.interrupted_note()


def _relayed_exit() -> bool:
    """The exit code is the relaunched ranks' (they have reported it): nothing more to say here."""
    relaunch = sys.modules.get("stackllama_cli.dist.relaunch")
    return bool(relaunch and relaunch.RELAYED["exit"])


def _exit_closed_stdout() -> None:
    """Stdout's reader went away (`stackllama prepare-data ... -o - | head -1`): stop quietly with the status
    a Unix tool stopped by SIGPIPE gets, 128 + 13; stdout goes to /dev/null so Python's final flush of the
    rows still buffered cannot fail again and print."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
    sys.exit(141)


def _print_error(message: str) -> None:
    from stackllama_cli.core.console import error
    from stackllama_cli.dist.launcher_output import record_rank_error
    from stackllama_cli.dist.ranks import is_main_process

    record_rank_error(message)  # ranks > 0 under our launcher: the parent shows it once
    if is_main_process():
        error(message)


if __name__ == "__main__":
    main()
