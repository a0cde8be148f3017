"""Atomic file and directory output: a crash leaves the old result or the new one, never half."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from stackllama_cli.core.errors import StackLlamaError, UsageError
from stackllama_cli.dist.ranks import is_main_process

CHECKPOINTS_DIRNAME = "checkpoints"  # every training stage keeps its resumable state here


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries: give outputs the usual umask-based mode."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def refuse_cwd(path: str | Path) -> None:
    """An output that is the current directory (`-o .`) or above it would be replaced whole: a usage error."""
    resolved, cwd = Path(path).expanduser().resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UsageError(f"output {path} is the current directory or above it; name a directory for the output")


def text_lines(stream: Iterable[str], source: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a text input; bytes that are not UTF-8 are a one-line input error."""
    lineno = 0
    try:
        for lineno, line in enumerate(stream, 1):
            line.encode("utf-8")  # stdin decodes with surrogateescape under a UTF-8 locale: no error until here
            yield lineno, line
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise StackLlamaError(f"{source} is not UTF-8 text (line {max(lineno, 1)})") from None


def check_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Refuse to replace a non-empty directory unless `overwrite` is set."""
    path = Path(path)
    refuse_cwd(path)
    if path.exists() and not path.is_dir():
        raise StackLlamaError(f"output path {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise StackLlamaError(f"output directory {path} is not empty; pass --overwrite to replace it")
    return path


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = False, lock: bool = True) -> Iterator[Path]:
    """Yield a temp directory beside `final`; on success rename it into place.

    On any exception the temp directory is removed and `final` is untouched.
    The previous `final` (when `overwrite`) is removed only after the new one is complete.
    With `lock` (a command's output), a second writer of `final` is refused while this one runs
    (core/lock.py); without (a checkpoint inside a locked run, a shared cache), the last rename wins.
    """
    from stackllama_cli.core.lock import output_lock

    final = Path(final)
    refuse_cwd(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(final) if lock else contextlib.nullcontext():  # a running writer is named before all else
        check_output_dir(final, overwrite)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        public_mode(tmp, directory=True)
        try:
            yield tmp
            check_output_dir(final, overwrite)  # another writer without the lock (an older version) got there
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        replace_dir(tmp, final)


def replace_dir(src: Path, final: Path) -> None:
    """Move `src` to `final`, replacing an existing `final` with as small a window as possible."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(src, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def replace_file(write: Callable[[Path], None], path: str | Path) -> Path:
    """Atomic output for writers that take a file name (matplotlib, torch.save): `write(tmp)` writes a temp
    file beside `path` (same suffix, so format detection still works), which is then renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        public_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file via a temp file in the same directory and `os.replace`."""
    return replace_file(lambda tmp: tmp.write_text(text, encoding="utf-8"), path)


def write_json(path: str | Path, obj: Any) -> Path:
    from stackllama_cli.core.console import json_default

    return atomic_write_text(path, json.dumps(obj, indent=2, default=json_default, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackLlamaError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise StackLlamaError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def publish(save: Callable[[Path], None], output: str | Path, last: Iterable[str] = ("adapter_config.json",
                                                                                         "config.json")) -> None:
    """Save final artifacts atomically: `save(tmp)` writes into a temp dir, files are renamed into `output`.

    Files named in `last` (the ones loaders look for) are moved last, so a crash
    mid-publish never leaves a loadable but incomplete model.
    """
    if not is_main_process():
        return
    output = Path(output)
    tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=output))
    try:
        save(tmp)
        entries = sorted(tmp.iterdir(), key=lambda p: p.name in last)
        for entry in entries:
            target = output / entry.name
            if target.is_dir() and entry.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
