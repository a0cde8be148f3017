"""Stage configuration: dataclasses are the API of each stage.

Precedence for every field: dataclass default < `--config FILE` (TOML/JSON/YAML)
< options given explicitly on the command line. Every run saves its resolved
config next to its outputs (`config.json`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.core.files import write_json

T = TypeVar("T")

CONFIG_FILENAME = "stackllama_config.json"


def load_config_file(path: str | Path | None, section: str | None = None) -> dict[str, Any]:
    """Read a TOML, JSON or YAML file; a `[section]` table (e.g. `[sft]`) is used when present."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise StackLlamaError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # parse errors of three libraries
        raise StackLlamaError(f"cannot parse config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise StackLlamaError(f"config file {path} must hold a table of options")
    if section and isinstance(data.get(section), dict):
        data = data[section]
    return {k.replace("-", "_"): v for k, v in data.items()}


def build_config(cls: type[T], explicit: dict[str, Any], file_values: dict[str, Any] | None = None) -> T:
    """Instantiate `cls` from file values overridden by explicitly given CLI values.

    Unknown keys are an error (a typo in a config file must not be silently ignored), except in a stage
    with a `trainer_args` field (sft, train-rm): there the file's other keys are collected into it, and
    the stage checks them against TrainingArguments (stages/trainer_args.py).
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    names = set(fields)
    file_values = dict(file_values or {})
    others = sorted(set(file_values) - names)
    if others and "trainer_args" in names:
        file_values["trainer_args"] = {**(file_values.get("trainer_args") or {}),
                                       **{k: file_values.pop(k) for k in others}}
    merged: dict[str, Any] = {}
    for source, values in (("config file", file_values), ("options", explicit)):
        unknown = sorted(set(values) - names)
        if unknown:
            raise StackLlamaError(f"unknown {source} key(s): {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
        merged.update(values)
    for name, value in (file_values or {}).items():
        expected = str(fields[name].type)
        if not value_fits(value, expected):
            raise UsageError(f"config file key {name!r} must be {expected.replace(' | None', ' or empty')}, "
                             f"not {type(value).__name__} {value!r}")
    try:
        return cls(**merged)
    except (TypeError, ValueError) as exc:
        raise StackLlamaError(str(exc)) from None


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def value_fits(value: Any, annotation: str) -> bool:
    """Whether a config-file value fits a field's annotation ("int", "float", "str | None", ...); annotations
    of other shapes (lists) are left to the stage's own validation."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None:
        return "None" in kinds
    for kind in kinds:
        if kind in _TYPES:
            if isinstance(value, bool) and kind != "bool":
                continue  # TOML's true is no number
            if isinstance(value, _TYPES[kind]):
                return True
        elif kind != "None":
            return True
    return False


def explicit_params(ctx: Any, values: dict[str, Any]) -> dict[str, Any]:
    """Keep only the parameters the user actually set (command line or env var), via click's ctx."""
    out = {}
    for name, value in values.items():
        # Compared by name: typer >= 0.26 vendors its own click, with its own enum.
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT"):
            out[name] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return {k: convert(v) for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: Any, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the resolved config (and version/environment facts) as JSON into `directory`."""
    from stackllama_cli import __version__

    record = {"stackllama_version": __version__, "stage": type(cfg).__name__, "config": to_dict(cfg)}
    if extra:
        record.update(extra)
    return write_json(Path(directory) / CONFIG_FILENAME, record)


def require(condition: bool, message: str) -> None:
    """Validation helper for `__post_init__`: raise a one-line user error."""
    if not condition:
        raise StackLlamaError(message)


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check_precision(precision: str) -> None:
    """Checked when options are read, not after a model has loaded."""
    if precision.lower() not in PRECISIONS:
        raise UsageError(f"--precision must be {', '.join(PRECISIONS)}, not {precision!r}")


def load_options(precision: str, load_in_8bit: bool, load_in_4bit: bool, trust_remote_code: bool) -> dict:
    """The model-loading options of a command without a stage config (generate, eval-rm), checked."""
    check_precision(precision)
    check_exclusive(load_in_8bit, load_in_4bit)
    return dict(precision=precision, load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit,
                trust_remote_code=trust_remote_code)


def check_exclusive(load_in_8bit: bool = False, load_in_4bit: bool = False, resume: bool = False,
                    overwrite: bool = False) -> None:
    """Option pairs that contradict each other, in every command that has them (exit 2, like click)."""
    if load_in_8bit and load_in_4bit:
        raise UsageError("choose one of --load-in-8bit and --load-in-4bit")
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other")


def config_from_cli(cls: type[T], ctx: Any, values: dict[str, Any], config_file: str | Path | None,
                    section: str) -> T:
    """The usual command body: dataclass defaults < config file < options given on the command line.

    `values` are the command's parameters, named like the dataclass fields.
    """
    return build_config(cls, explicit_params(ctx, values), load_config_file(config_file, section))
