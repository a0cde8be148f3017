"""The command line: the Typer app (cli/app.py), the shared options (cli/options.py) and one module per
subcommand (cli/commands/). Nothing here imports torch at module level, so `--help` is instant."""

from stackllama_cli.cli.app import COMMANDS, app, main, reflow

__all__ = ["COMMANDS", "app", "main", "reflow"]
