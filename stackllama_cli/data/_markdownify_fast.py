"""markdownify's tree walk (`process_tag` / `process_text`, markdownify 1.2), with the same output, faster.

The upstream walk calls several small helpers per node (whitespace predicates, a regex to
split leading/trailing newlines, `six.text_type`, `process_element` dispatch); on
StackExchange bodies those calls are about a third of the conversion time. This is the
same algorithm with the predicates memoised per tag name and the dispatch inlined.
Every conversion function (`convert_p`, `convert_li`, ...) is still markdownify's own.
`tests/unit/test_data_markdown.py` checks the output equals plain markdownify, so an
upstream change that this copy misses fails the tests instead of changing the data.
"""

from __future__ import annotations

from bs4 import Comment, Doctype, NavigableString, Tag
from markdownify import MarkdownConverter, re_html_heading, re_newline_whitespace, re_whitespace

_BLOCK_NAMES = frozenset(("p", "blockquote", "article", "div", "section", "ol", "ul", "li", "dl", "dt", "dd",
                          "table", "thead", "tbody", "tfoot", "tr", "td", "th"))
# tag name -> (should_remove_whitespace_inside, should_remove_whitespace_outside); strings have name None
_FLAGS: dict = {None: (False, False)}


def _flags(name) -> tuple[bool, bool]:
    flags = _FLAGS.get(name)
    if flags is None:
        inside = re_html_heading.match(name) is not None or name in _BLOCK_NAMES
        flags = _FLAGS[name] = (inside, inside or name == "pre")
    return flags


def _outside(el) -> bool:
    """markdownify.should_remove_whitespace_outside (el is a node or None)."""
    return el is not None and bool(el) and _flags(el.name)[1]


class FastWalkConverter(MarkdownConverter):
    def __init__(self, **options):
        super().__init__(**options)
        o = self.options
        self._escapes = bool(o["escape_misc"] or o["escape_asterisks"] or o["escape_underscores"])

    def process_tag(self, node, parent_tags=None):
        if parent_tags is None:
            parent_tags = set()
        name = node.name
        remove_inside = _flags(name)[0]
        child_tags = set(parent_tags)
        child_tags.add(name)
        if re_html_heading.match(name) is not None or name in ("td", "th"):
            child_tags.add("_inline")
        if name in ("pre", "code", "kbd", "samp"):
            child_tags.add("_noformat")
        in_pre = "pre" in child_tags  # process_text's test, for the strings of this node
        escape = self._escapes and "_noformat" not in child_tags

        strings = []
        for el in node.contents:
            if isinstance(el, Tag):
                s = self.process_tag(el, child_tags)
            elif isinstance(el, (Comment, Doctype)):
                continue
            elif isinstance(el, NavigableString):
                text = str(el)
                previous, following = el.previous_sibling, el.next_sibling
                if not text.strip():  # markdownify's _can_ignore for whitespace-only strings
                    if remove_inside and (not previous or not following):
                        continue
                    if _outside(previous) or _outside(following):
                        continue
                if self.options["wrap"]:
                    s = self.process_text(el, child_tags)
                else:  # process_text, inlined
                    if not in_pre:
                        if "\n" in text or "\r" in text:
                            text = re_newline_whitespace.sub("\n", text)
                        if "\t" in text or "  " in text:
                            text = re_whitespace.sub(" ", text)
                    if escape:
                        text = self.escape(text, child_tags)
                    if _outside(previous) or (remove_inside and not previous):
                        text = text.lstrip(" \t\r\n")
                    if _outside(following) or (remove_inside and not following):
                        text = text.rstrip()
                    s = text
            elif el is None:
                continue
            else:
                raise ValueError("Unexpected element type: %s" % type(el))
            if s:
                strings.append(s)

        if name == "pre" or node.find_parent("pre"):
            text = "".join(strings)
        else:  # collapse newlines at child boundaries to at most two
            out = [""]
            for s in strings:
                lead, content, trail = _split_newlines(s)
                if out[-1] and lead:
                    lead = "\n" * min(2, max(len(out.pop()), len(lead)))
                out += (lead, content, trail)
            text = "".join(out)

        convert_fn = self.get_conv_fn_cached(name)
        if convert_fn is not None:
            text = convert_fn(node, text, parent_tags=parent_tags)
        return text


def _split_newlines(s: str) -> tuple[str, str, str]:
    """(leading newlines, content, trailing newlines): markdownify's re_extract_newlines."""
    content = s.strip("\n")
    if not content:
        return s, "", ""  # all newlines: the regex puts them all in the leading group
    lead = len(s) - len(s.lstrip("\n"))
    return s[:lead], content, s[lead + len(content):]
