"""Streaming reader for StackExchange dump `Posts.xml` files (plain, in a site folder, or in a `.7z`).

Rows are parsed one at a time with lxml's iterparse and cleared after use, so memory
per post is constant whatever the dump's size.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from stackllama_cli.core.errors import StackLlamaError

POSTS = "Posts.xml"
QUESTION, ANSWER = "1", "2"


@dataclass(frozen=True)
class DumpSource:
    """One site's Posts.xml on disk (extracted to a temp dir for archives)."""

    site: str
    xml: Path
    origin: Path  # what the user gave


def site_name(path: Path) -> str:
    """beer.stackexchange.com-Posts.xml / beer.stackexchange.com/ / beer.stackexchange.com.7z /
    stackoverflow.com-Posts.7z -> the site."""
    name = path.name
    if path.is_dir():
        return name
    if name.lower() == POSTS.lower():  # site/Posts.xml: the folder names the site
        return path.resolve().parent.name or "stackexchange"
    if name.endswith(".7z"):
        name = name[:-3]
        return name[:-len("-Posts")] if name.endswith("-Posts") and name != "-Posts" else name
    for suffix in ("-Posts.xml", "_Posts.xml", ".xml"):
        if name.endswith(suffix) and name != suffix.lstrip("-_"):
            return name[: -len(suffix)]
    return path.resolve().parent.name or "stackexchange"


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Inputs as given, except that a folder without a Posts.xml stands for the sites in it: its .7z
    archives (but a site's other tables, like stackoverflow.com-Users.7z), its site folders holding a
    Posts.xml and its *-Posts.xml files, in name order."""
    out = []
    for path in map(Path, inputs):
        if not path.is_dir() or (path / POSTS).is_file():
            out.append(path)
            continue
        found = sorted(p for p in path.iterdir() if _is_site_input(p))
        if not found:
            raise StackLlamaError(f"{path} is a folder without {POSTS}, site archives (.7z) or site folders; "
                                  "give a site folder of the dump or a folder of them")
        out.extend(found)
    return out


def _is_site_input(path: Path) -> bool:
    if path.is_dir():
        return (path / POSTS).is_file()
    name = path.name
    if name.endswith(".7z"):  # site.7z, or site-Table.7z for the biggest sites: only site-Posts.7z
        table = name[:-3].rpartition("-")[2]
        return table == "Posts" or not table.isalpha()
    return name.endswith(("-Posts.xml", "_Posts.xml"))


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[DumpSource]:
    """One input as a Posts.xml on disk; an archive's Posts.xml is extracted to a temp dir, removed after."""
    path = Path(path)
    if not path.exists():
        raise StackLlamaError(f"input {path} does not exist")
    if path.is_dir():
        xml = path / POSTS
        if not xml.is_file():
            raise StackLlamaError(f"{path} is a folder without {POSTS}; give a site folder of the dump")
        yield DumpSource(site_name(path), xml, path)
    elif path.suffix == ".7z":
        with tempfile.TemporaryDirectory(prefix="stackllama-7z-") as tmp:
            yield DumpSource(site_name(path), extract_posts(path, Path(tmp)), path)
    else:
        yield DumpSource(site_name(path), path, path)


def extract_posts(archive: Path, tmp: Path) -> Path:
    """Extract only Posts.xml from a dump archive into `tmp`; names in the archive never become paths."""
    import py7zr

    try:
        with py7zr.SevenZipFile(archive, "r") as z:
            members = [n for n in z.getnames() if PurePosixPath(n).name == POSTS]
            if not members:
                raise StackLlamaError(f"archive {archive} holds no {POSTS}")
            if len(members) > 1:
                raise StackLlamaError(f"archive {archive} holds several {POSTS} files ({', '.join(members)}); "
                                      "extract the one you want")
            member = members[0]
            unsafe = PurePosixPath(member).is_absolute() or ".." in PurePosixPath(member).parts
            if unsafe:
                raise StackLlamaError(f"archive {archive} has an unsafe member name {member!r}")
            z.extract(path=tmp / "x", targets=[member])
    except StackLlamaError:
        raise
    except Exception as exc:  # py7zr raises several types for broken/unsupported archives
        raise StackLlamaError(f"cannot read archive {archive}: {' '.join(str(exc).split()) or type(exc).__name__}"
                              ) from None
    extracted = tmp / "x" / member
    if not extracted.is_file():
        raise StackLlamaError(f"could not extract {member} from {archive}")
    target = tmp / POSTS
    shutil.move(extracted, target)
    return target


class _CountingReader:
    """File wrapper that reports bytes read, for a progress bar over a streaming parse."""

    def __init__(self, fh, on_read: Callable[[int], None] | None):
        self.fh, self.on_read = fh, on_read

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        if self.on_read:
            self.on_read(len(data))
        return data


def iter_rows(xml: Path, on_read: Callable[[int], None] | None = None) -> Iterator:
    """Yield each `<row>` element (read attributes with `.get`), streaming.

    A row is valid only until the next one is requested: it is cleared and unlinked from
    the root then, which keeps memory constant whatever the dump's size. Raises clear
    errors for files that are not a Posts.xml and for broken or truncated XML.
    """
    from lxml import etree

    with open(xml, "rb") as fh:
        # only <row> end events: no Python call for the other elements and attributes
        parser = etree.iterparse(_CountingReader(fh, on_read), events=("end",), tag="row", huge_tree=True,
                                 resolve_entities=False, no_network=True)
        root = None
        try:
            for _, row in parser:
                if root is None:
                    root = row.getparent()
                    if root is None or root.tag != "posts":
                        raise StackLlamaError(f"{xml} is not a StackExchange Posts.xml (root element "
                                              f"<{'row' if root is None else root.tag}>, expected <posts>)")
                yield row
                row.clear()
                while row.getprevious() is not None:  # drop finished rows (not ones parsed ahead)
                    del root[0]
            root = parser.root
        except etree.XMLSyntaxError as exc:
            msg = re.sub(r"\s+", " ", str(exc))
            raise StackLlamaError(f"{xml} is not well-formed XML ({msg}); the file may be truncated or corrupt"
                                  ) from None
        if root is None:
            raise StackLlamaError(f"{xml} is empty")
        if root.tag != "posts":
            raise StackLlamaError(f"{xml} is not a StackExchange Posts.xml (root element <{root.tag}>, "
                                  "expected <posts>)")


def parse_int(value: str | None) -> int | None:
    """The dump's integers (`Id`, `Score`, ...): ASCII digits with an optional '-'; anything else
    (missing, '', 'abc', '1.5', ' 7', other scripts' digits, which Python's int() would take) is None."""
    if not value:
        return None
    digits = value[1:] if value[0] == "-" else value
    return int(value) if digits.isascii() and digits.isdigit() else None
