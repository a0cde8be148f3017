"""HTML post bodies -> Markdown (markdownify), code blocks kept as fenced blocks.

Conversion dominates prepare-data's run time, so it has a fast path that produces the
*same* Markdown as plain markdownify (html.parser backend, our options), only sooner:
for the well-formed HTML subset StackExchange emits, the body is parsed with lxml (C)
and converted by walking lxml's elements (`_markdown_lxml.py`), with no BeautifulSoup
tree at all: ~7x plain markdownify on the beer dump's bodies (bench/prepare_data.py).
Bodies outside that subset (unbalanced or misnested tags, tags not verified, repeated
attributes, processing instructions, BOMs, NULs...) take plain markdownify, because
libxml2 and html.parser build different trees for them.

`reference_markdown` is the plain route; tests check both give identical text on the
real dumps and on edge cases.
"""

from __future__ import annotations

import re
from html.entities import name2codepoint

from bs4 import BeautifulSoup
from markdownify import MarkdownConverter

from stackllama_cli.data._markdown_lxml import LxmlWalker

_BLANK_RUNS = re.compile(r"\n{3,}")
# a tag: (closing '/', name, attributes with a self-closing '/' at their end); a greedy [^>]* reads ~2x faster than a
# lazy one with the '/' as a group of its own
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)\b([^>]*)>")
# a tag's attributes: name, or name=value quoted or not (a repeated name: html.parser keeps the last, libxml2 the first)
# (separators are ASCII spaces only: html.parser also splits at Unicode spaces, libxml2 keeps them in the
# value; names and unquoted values hold no whitespace of either kind)
_NAME, _VALUE = r"""[^\s"'/=<>`]+""", r"""(?:[ \t\n]*=[ \t\n]*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
_ATTRS = re.compile(rf"(?:[ \t\n]+{_NAME}{_VALUE})*[ \t\n]*")
_ONE_ATTR = re.compile(rf"(?:[ \t\n]+{_NAME}{_VALUE})?[ \t\n]*")  # none or one
_ATTR_NAME = re.compile(rf"[ \t\n]({_NAME}){_VALUE}")
# an '&' that is not a numeric reference or an HTML 4 named one (libxml2 knows those; HTML5-only
# names and references without ';' are decoded differently by the two parsers)
_ENTITY = re.compile(r"&(?!#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|(?:%s);)" % "|".join(sorted(name2codepoint)))
_NUMERIC_REF = re.compile(r"&#(?:[xX]([0-9a-fA-F]{1,6})|([0-9]{1,7}));")

# The subset the fast parse accepts: StackExchange's sanitised HTML, tags properly nested
# and closed, blocks only where HTML allows them. There libxml2 and html.parser build the
# same tree; elsewhere libxml2 applies HTML's implied end tags (an open <p> or <a> closes
# before a block, a new <li> closes the open one...) and html.parser nests as written.
_INLINE = frozenset({"a", "strong", "em", "b", "i", "code", "kbd", "sub", "sup", "strike", "del", "s", "span",
                     "br", "img"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_LEAF_BLOCKS = _HEADINGS | {"p", "pre", "dt"}  # blocks holding inline content only
_FLOW = frozenset({"blockquote", "div", "li", "dd", "td", "th"})  # blocks holding blocks or inline content
_PARENTS = {"li": {"ul", "ol"}, "dt": {"dl"}, "dd": {"dl"}, "tr": {"table", "thead", "tbody"},
            "thead": {"table"}, "tbody": {"table"}, "td": {"tr"}, "th": {"tr"}}  # required direct parent
_STRUCTURE = frozenset({"ul", "ol", "dl", "table", "thead", "tbody", "tr"})  # hold _PARENTS' children only
_VOID = frozenset({"br", "hr", "img"})
_KNOWN = _INLINE | _LEAF_BLOCKS | _FLOW | _STRUCTURE | {"hr"}
_NO_BLOCKS = _KNOWN - _FLOW - _STRUCTURE  # elements that must not hold blocks (inline, headings, <p>, <pre>, <dt>)
# text right inside a list or table (after its start tag or a child's end tag): libxml2 moves it
_TEXT_IN_STRUCTURE = re.compile(r"(?:<(?:ul|ol|dl|table|thead|tbody|tr)\b[^>]*>|</(?:li|dt|dd|tr|td|th|thead|tbody)\s*>)"
                                r"\s*[^<\s]", re.IGNORECASE)


# markdownify with StackExchange-friendly options: ATX headings, '-' bullets, no escaping of
# '_' / '*' (identifiers and maths read badly escaped), scripts and styles dropped.
OPTIONS = dict(heading_style="ATX", bullets="-", code_language="", escape_underscores=False,
               escape_asterisks=False, escape_misc=False, strip=["script", "style"])


_REFERENCE = MarkdownConverter(**OPTIONS)
_WALKER = LxmlWalker(_REFERENCE)
_LXML_PARSER = None


def _finish(text: str) -> str:
    return (_BLANK_RUNS.sub("\n\n", text) if "\n\n\n" in text else text).strip()


def reference_markdown(body: str | None) -> str:
    """Plain markdownify (html.parser backend) with our options: what `html_to_markdown` must equal."""
    if not body or not body.strip():
        return ""
    return _finish(_REFERENCE.convert_soup(BeautifulSoup(body, "html.parser")))


def html_to_markdown(body: str | None) -> str:
    """Convert one post body; empty or missing bodies give ''."""
    if not body or not body.strip():
        return ""
    if fast_path_ok(body):
        root = _lxml_body(body)
        if root is not None:
            return _finish(_WALKER.convert(root))
    return reference_markdown(body)


def fast_path_ok(body: str) -> bool:
    """True when `body` is in the well-formed subset where lxml and html.parser build the same tree."""
    # comments/doctypes/PIs, NUL, BOM, CR, form feed: the parsers differ on them (plain `in` tests: 4x one regex)
    if "<!" in body or "<?" in body or "\x00" in body or "\ufeff" in body or "\r" in body or "\x0c" in body:
        return False
    if "&" in body and (_ENTITY.search(body) or ("&#" in body and not _references_ok(body))):
        return False
    if _TEXT_IN_STRUCTURE.search(body):
        return False
    tags = _TAG.findall(body)
    # a stray '<' or '>' outside tags is text to html.parser but may not be to libxml2
    if not body.count("<") == body.count(">") == len(tags):
        return False
    stack: list[str] = []
    inline_depth = 0  # open _NO_BLOCKS elements
    for closing, name, attrs in tags:
        name = name.lower()
        if name not in _KNOWN:
            return False
        if attrs and attrs[-1] == "/":  # self-closing
            if name not in _VOID:
                return False
            attrs = attrs[:-1]
        if attrs and not _attributes_ok(attrs, closing):
            return False
        if closing:
            if name in _VOID or not stack or stack.pop() != name:
                return False
            inline_depth -= name in _NO_BLOCKS
            continue
        parent = stack[-1] if stack else None
        if name in _PARENTS:
            if parent not in _PARENTS[name] and not (parent is None and name == "li"):
                return False
        elif parent in _STRUCTURE:
            return False
        if (inline_depth and name not in _INLINE) or (name == "a" and "a" in stack):
            return False  # a block inside inline content, a heading, <p> or <pre>; <a> inside <a>
        if name not in _VOID:
            stack.append(name)
            inline_depth += name in _NO_BLOCKS
    return not stack


def _references_ok(body: str) -> bool:
    """No numeric reference to a control character (html.parser drops them in attribute values, and bs4
    folds a string of &#12; or &#13; as whitespace), a surrogate, a noncharacter or beyond Unicode."""
    for m in _NUMERIC_REF.finditer(body):
        cp = int(m.group(1), 16) if m.group(1) else int(m.group(2))
        if cp < 32 or 127 <= cp < 160 or 0xD800 <= cp < 0xE000 or 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE \
                or cp > 0x10FFFF:
            return False
    return True


def _attributes_ok(attrs: str, closing: str) -> bool:
    """No attribute on an end tag, attributes we can read (else the parsers may split them differently), no name twice."""
    if closing:
        return False
    if _ONE_ATTR.fullmatch(attrs):  # the usual case: nothing to repeat
        return True
    if not _ATTRS.fullmatch(attrs):
        return False
    names = [name.lower() for name in _ATTR_NAME.findall(attrs)]
    return len(names) == len(set(names))


def _lxml_body(body: str):
    """The <body> element lxml parses `body` into; None where libxml2 moved something outside it."""
    global _LXML_PARSER
    from lxml import etree

    if _LXML_PARSER is None:
        # huge_tree: without it libxml2 drops a text node over 10 MB, which html.parser keeps
        _LXML_PARSER = etree.HTMLParser(remove_comments=True, remove_pis=True, huge_tree=True)
    try:
        root = etree.fromstring(body, _LXML_PARSER)
    except (etree.ParserError, ValueError):
        return None
    if root is None or len(root) != 1 or root[0].tag != "body" or root.text or root[0].tail:
        return None  # libxml2 put something in <head> or outside <body>: let html.parser decide
    return root[0]
