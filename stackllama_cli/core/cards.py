"""What model and dataset cards share: YAML front matter, Markdown tables and code blocks, the command
that made an output and the library versions it was made with.

The cards themselves: models/card.py (sft, train-rm, ppo, merge) and data/card.py (prepare-data).
A card is the README.md the Hugging Face Hub reads: YAML metadata between `---` lines, then Markdown.
"""

from __future__ import annotations

import re
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Sequence

CARD_FILENAME = "README.md"
LIBRARIES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
CC_BY_SA = "cc-by-sa-4.0"
CC_BY_SA_LINK = "https://creativecommons.org/licenses/by-sa/4.0/"
# Hosts of the StackExchange network (every site is one of these or a subdomain of one)
STACKEXCHANGE_HOSTS = ("stackexchange.com", "stackoverflow.com", "superuser.com", "serverfault.com",
                       "askubuntu.com", "mathoverflow.net", "stackapps.com")

_command: list[str] | None = None


def record_command(argv: Sequence[str] | None) -> None:
    """Remember the command being run (cli/app.py:main calls this with what it parses)."""
    global _command
    _command = ["stackllama", *(sys.argv[1:] if argv is None else argv)]


def forget_command() -> None:
    """After a command: a later call of a stage from Python in this process is not that command."""
    global _command
    _command = None


def command_line() -> str | None:
    """The command that is running, shell-quoted; None when a stage is called from Python."""
    return shlex.join(_command) if _command else None


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    from stackllama_cli import __version__

    versions = {"stackllama": __version__}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def render_card(front: dict[str, Any], body: str) -> str:
    """README.md text: `front` as YAML front matter, then the Markdown `body`."""
    import yaml

    front = {k: v for k, v in front.items() if v is not None}
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body.strip() + "\n"


def parse_card(text: str) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a card; ({}, text) when it has no front matter or the YAML is broken."""
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, flags=re.S)
    if not match:
        return {}, text
    try:
        front = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return {}, text
    return (front if isinstance(front, dict) else {}), text[match.end():]


def read_card(directory: str | Path) -> tuple[dict[str, Any], str] | None:
    """The card in `directory`, parsed; None when there is none."""
    path = Path(directory) / CARD_FILENAME
    if not path.is_file():
        return None
    try:
        return parse_card(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; `|` and newlines inside cells are escaped."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def code_block(text: str, language: str = "") -> str:
    """A fenced block whose fence is longer than any backtick run inside `text`."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def number(value: Any, digits: int = 4) -> str:
    """A metric for a table: floats to `digits` significant digits, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def is_stackexchange(site: str) -> bool:
    return any(site == host or site.endswith("." + host) for host in STACKEXCHANGE_HOSTS)


def command_section(what: str) -> str:
    command = command_line()
    if command is None:
        return (f"{what} was made by a call from Python, not from the command line; stackllama_config.json "
                "beside it holds the resolved configuration.")
    return f"{what} was made by:\n\n" + code_block(command, "bash")


def versions_line() -> str:
    return ", ".join(f"{name} {version}" for name, version in library_versions().items())
