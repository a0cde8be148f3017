"""HTML post bodies -> Markdown (markdownify), code blocks kept as fenced blocks.

Speed matters for real dumps (millions of posts): bodies without markup skip the
HTML parser entirely, and the rest are parsed with lxml, which is several times
faster than BeautifulSoup's default `html.parser` backend.
"""

from __future__ import annotations

import html
import re

from markdownify import MarkdownConverter

_TAG = re.compile(r"<[a-zA-Z/!]")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _Converter(MarkdownConverter):
    """markdownify with StackExchange-friendly defaults."""

    def __init__(self):
        super().__init__(heading_style="ATX", bullets="-", code_language="", escape_underscores=False,
                         escape_asterisks=False, escape_misc=False, strip=["script", "style"])


_CONVERTER = None
_PARSER = None


def _parser() -> str:
    global _PARSER
    if _PARSER is None:
        try:
            import lxml  # noqa: F401

            _PARSER = "lxml"
        except ImportError:
            _PARSER = "html.parser"
    return _PARSER


def html_to_markdown(body: str | None) -> str:
    """Convert one post body; empty or missing bodies give ''."""
    if not body or not body.strip():
        return ""
    if not _TAG.search(body):  # plain text (maybe with entities): no parser needed
        return html.unescape(body).strip()
    global _CONVERTER
    if _CONVERTER is None:
        _CONVERTER = _Converter()
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(body, _parser())
    text = _CONVERTER.convert_soup(soup)
    return _BLANK_RUNS.sub("\n\n", text).strip()
