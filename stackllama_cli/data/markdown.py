"""HTML post bodies -> Markdown (markdownify), code blocks kept as fenced blocks.

Conversion dominates prepare-data's run time, so it has a fast path that produces the
*same* Markdown as plain markdownify (html.parser backend, our options), only sooner:

- Parsing: BeautifulSoup's tree builders call back into Python for every tag and
  string. For the well-formed HTML subset StackExchange emits we instead parse with
  lxml (C) and link bs4 nodes ourselves: ~3x faster. Bodies outside that subset
  (unbalanced or misnested tags, tags we have not verified, processing instructions,
  BOMs, NULs...) take markdownify's own html.parser route, because libxml2 and
  html.parser repair broken HTML differently.
- markdownify asks every tag `node.find_parent('pre')`, which in bs4 builds a
  SoupStrainer each time (~20% of the conversion); `_Tag.find_parent` answers that
  plain by-name query with a parent walk, with the same result.

`reference_markdown` is the plain route; tests check both give identical text on the
real dumps and on edge cases.
"""

from __future__ import annotations

import re
from html.entities import name2codepoint

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.builder import HTMLParserTreeBuilder
from markdownify import MarkdownConverter

from stackllama_cli.data._markdownify_fast import FastWalkConverter

_BLANK_RUNS = re.compile(r"\n{3,}")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)\b[^>]*?(/?)>")
# an '&' that is not a numeric reference or an HTML 4 named one (libxml2 knows those; HTML5-only
# names and references without ';' are decoded differently by the two parsers)
_ENTITY = re.compile(r"&(?!#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|(?:%s);)" % "|".join(sorted(name2codepoint)))
# comments/doctypes/PIs, NUL, BOM, CR: the parsers differ on them (plain `in` tests: 10x a regex)
_UNSAFE = ("<!", "<?", "\x00", "\ufeff", "\r")

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
# text right inside a list or table (after its start tag or a child's end tag): libxml2 moves it
_TEXT_IN_STRUCTURE = re.compile(r"(?:<(?:ul|ol|dl|table|thead|tbody|tr)\b[^>]*>|</(?:li|dt|dd|tr|td|th|thead|tbody)\s*>)"
                                r"\s*[^<\s]", re.IGNORECASE)


# markdownify with StackExchange-friendly options: ATX headings, '-' bullets, no escaping of
# '_' / '*' (identifiers and maths read badly escaped), scripts and styles dropped.
OPTIONS = dict(heading_style="ATX", bullets="-", code_language="", escape_underscores=False,
               escape_asterisks=False, escape_misc=False, strip=["script", "style"])


class _Tag(Tag):
    """bs4 Tag whose `find_parent(name)` is a plain parent walk (same answer, no SoupStrainer)."""

    def find_parent(self, name=None, attrs={}, string=None, **kwargs):  # noqa: B006 (bs4's signature)
        if not isinstance(name, str) or attrs or string is not None or kwargs:
            return super().find_parent(name, attrs, string, **kwargs)
        node = self.parent
        while node is not None and node.name != name:
            node = node.parent
        return node


_CONVERTER = FastWalkConverter(**OPTIONS)
_REFERENCE = MarkdownConverter(**OPTIONS)
_BUILDER = HTMLParserTreeBuilder()  # attribute classes exactly as markdownify's default parse
_LXML_PARSER = None


def _finish(text: str) -> str:
    return _BLANK_RUNS.sub("\n\n", text).strip()


def reference_markdown(body: str | None) -> str:
    """Plain markdownify (html.parser backend) with our options: what `html_to_markdown` must equal."""
    if not body or not body.strip():
        return ""
    return _finish(_REFERENCE.convert_soup(BeautifulSoup(body, "html.parser")))


def html_to_markdown(body: str | None) -> str:
    """Convert one post body; empty or missing bodies give ''."""
    if not body or not body.strip():
        return ""
    soup = _fast_soup(body) if fast_path_ok(body) else None
    if soup is None:
        soup = BeautifulSoup(body, "html.parser", element_classes={Tag: _Tag})
    return _finish(_CONVERTER.convert_soup(soup))


def fast_path_ok(body: str) -> bool:
    """True when `body` is in the well-formed subset where lxml and html.parser build the same tree."""
    if any(marker in body for marker in _UNSAFE) or _ENTITY.search(body) or _TEXT_IN_STRUCTURE.search(body):
        return False
    tags = _TAG.findall(body)
    # a stray '<' or '>' outside tags is text to html.parser but may not be to libxml2
    if not body.count("<") == body.count(">") == len(tags):
        return False
    stack: list[str] = []
    inline_depth = 0  # open elements that must not hold blocks (inline, headings, <p>, <pre>, <dt>)
    for closing, name, self_closing in tags:
        name = name.lower()
        if name not in _KNOWN or (self_closing and name not in _VOID):
            return False
        if closing:
            if name in _VOID or not stack or stack.pop() != name:
                return False
            inline_depth -= name not in _FLOW and name not in _STRUCTURE
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
            inline_depth += name not in _FLOW and name not in _STRUCTURE
    return not stack


def _fast_soup(body: str) -> Tag | None:
    """Parse with lxml and build the bs4 tree html.parser would have built; None if lxml disagrees."""
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
    doc = _Tag(builder=_BUILDER, name="[document]")
    last = doc  # the previous node in document order (bs4's next_element chain)

    def attach(node, parent: Tag) -> None:  # what bs4's tree builder links, set directly
        nonlocal last
        contents = parent.contents
        previous = contents[-1] if contents else None
        node.parent, node.previous_sibling, node.next_sibling = parent, previous, None
        if previous is not None:
            previous.next_sibling = node
        node.previous_element, node.next_element = last, None
        last.next_element = node
        last = node
        contents.append(node)

    def walk(element, parent: Tag) -> None:
        attrs = element.attrib
        tag = _Tag(builder=_BUILDER, name=element.tag, attrs=dict(attrs)) if attrs else _new_tag(element.tag)
        attach(tag, parent)
        if element.text:
            attach(_new_string(element.text), tag)
        for child in element:
            walk(child, tag)
        if element.tail:
            attach(_new_string(element.tail), parent)

    body_el = root[0]
    if body_el.text:
        attach(_new_string(body_el.text), doc)
    for child in body_el:
        if not isinstance(child.tag, str):
            return None
        walk(child, doc)
    return doc


# bs4's constructors ask the builder the same per-name questions for every tag and link each
# new string into an empty tree; with the answers cached and the links set by `attach`,
# building the tree costs about half as much. The fields are bs4's own (copied from a
# Tag it constructed), so a bs4 release that adds one still gets it.
_PROTOTYPES: dict[str, dict] = {}


def _new_tag(name: str) -> Tag:
    """`_Tag(builder=_BUILDER, name=name)` for a tag without attributes, from a per-name prototype."""
    proto = _PROTOTYPES.get(name)
    if proto is None:
        proto = _PROTOTYPES[name] = dict(vars(_Tag(builder=_BUILDER, name=name)))
    tag = object.__new__(_Tag)
    tag.__dict__.update(proto)
    tag.attrs, tag.contents, tag._namespaces = proto["attrs"].__class__(), [], {}
    return tag


def _new_string(text: str) -> NavigableString:
    """`NavigableString(text)` without its `setup()`: `attach` sets every link right after."""
    node = str.__new__(NavigableString, text)
    node.hidden = False
    return node

