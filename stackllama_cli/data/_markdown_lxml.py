"""markdownify's conversion (markdownify 1.2, the options in markdown.py) as a walk over lxml elements.

markdown.py sends here only bodies in the well-formed subset where lxml builds the tree that html.parser
would have built (`markdown.fast_path_ok`: the tags of `markdown._KNOWN`, properly nested). On that tree
this is markdownify's `process_tag` / `process_text` without building BeautifulSoup objects, which cost
about as much as the conversion itself:

- an element's children are bs4's: `el.text`, then each child element followed by its `tail`, so a
  string's neighbours are elements (or nothing) and the whitespace rules read them directly;
- the ancestors markdownify passes down as `parent_tags` reduce to four flags (inside <pre>, no
  formatting, inline context, inside <li>): the only members the conversions look for;
- the conversion functions that do not look at the tree (p, div, blockquote, headings, code, pre, a,
  bold/italic/strike, br, hr, dd, dt, table) are markdownify's own, called with the lxml element; the
  ones that do (li, ul/ol, tr, td/th, img) are written out below from markdownify 1.2's.

tests/unit/test_data_markdown.py checks that the result equals plain markdownify on every body of the
real dumps, on edge cases and on random HTML; pyproject.toml pins markdownify below 1.3.
"""

from __future__ import annotations

from markdownify import MarkdownConverter, re_line_with_content, re_newline_whitespace, re_whitespace

PRE, NOFORMAT, INLINE, LI = 1, 2, 4, 8  # the parent_tags members markdownify's conversions test
_TAGSETS = [frozenset(name for bit, name in ((PRE, "pre"), (NOFORMAT, "_noformat"), (INLINE, "_inline"), (LI, "li"))
                      if mask & bit) for mask in range(16)]  # what a conversion sees as parent_tags
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# should_remove_whitespace_inside / _outside (markdownify): block elements, and <pre> outside only
_INSIDE = frozenset(("p", "blockquote", "article", "div", "section", "ol", "ul", "li", "dl", "dt", "dd", "table",
                     "thead", "tbody", "tfoot", "tr", "td", "th") + _HEADINGS)
_OUTSIDE = _INSIDE | {"pre"}
_CHILD_FLAGS = {"pre": PRE | NOFORMAT, "code": NOFORMAT, "kbd": NOFORMAT, "samp": NOFORMAT, "td": INLINE,
                "th": INLINE, "li": LI, **dict.fromkeys(_HEADINGS, INLINE)}
# the options the code below assumes (markdown.OPTIONS sets them; a change there must fail loudly)
ASSUMED = dict(bullets="-", wrap=False, escape_misc=False, escape_asterisks=False, escape_underscores=False,
               table_infer_header=False, keep_inline_images_in=[], strip_document="strip",
               code_language_callback=None)


class LxmlWalker:
    """`convert(body)`: the Markdown markdownify gives for the lxml `<body>` element `body` (before
    markdown.py's final blank-line squeeze)."""

    def __init__(self, converter: MarkdownConverter):
        wrong = {k: converter.options[k] for k, v in ASSUMED.items() if converter.options[k] != v}
        if wrong:
            raise ValueError(f"the lxml walk assumes other markdownify options: {wrong}")
        c = converter
        self.convert_fns = {
            "a": c.convert_a, "b": c.convert_b, "strong": c.convert_strong, "em": c.convert_em, "i": c.convert_i,
            "del": c.convert_del, "s": c.convert_s, "sub": c.convert_sub, "sup": c.convert_sup,
            "code": c.convert_code, "kbd": c.convert_kbd, "p": c.convert_p, "div": c.convert_div, "dl": c.convert_dl,
            "blockquote": c.convert_blockquote, "br": c.convert_br, "hr": c.convert_hr, "dd": c.convert_dd,
            "dt": c.convert_dt, "table": c.convert_table, "pre": c.convert_pre,
            "li": _convert_li, "ul": _convert_list, "ol": _convert_list, "tr": _convert_tr, "td": _convert_cell,
            "th": _convert_cell, "img": _convert_img,
            **{h: (lambda n: lambda el, text, tags: c.convert_hN(n, el, text, tags))(int(h[1])) for h in _HEADINGS},
        }  # span, strike, thead, tbody: markdownify has no conversion for them, their text passes through

    def convert(self, body) -> str:
        return self.children(body, 0, False).strip("\n")  # convert__document_ with strip_document="strip"

    def element(self, el, mask: int) -> str:
        name = el.tag
        text = self.children(el, mask | _CHILD_FLAGS.get(name, 0), name in _INSIDE)
        fn = self.convert_fns.get(name)
        return text if fn is None else fn(el, text, _TAGSETS[mask])

    def children(self, el, mask: int, inside: bool) -> str:
        """process_tag's loop: child strings (whitespace rules of _can_ignore and process_text), joined."""
        strings = []
        in_pre = mask & PRE
        kids = list(el)
        text = el.text
        if text:
            s = _text(text, None, kids[0] if kids else None, inside, in_pre)
            if s:
                strings.append(s)
        for i, kid in enumerate(kids):
            s = self.element(kid, mask)
            if s:
                strings.append(s)
            tail = kid.tail
            if tail:
                s = _text(tail, kid, kids[i + 1] if i + 1 < len(kids) else None, inside, in_pre)
                if s:
                    strings.append(s)
        if in_pre:
            return "".join(strings)
        out = [""]  # collapse newlines at child boundaries to at most two
        for s in strings:
            content = s.strip("\n")
            if not content:  # all newlines: markdownify's regex puts them all in the leading group
                lead, trail = s, ""
            else:
                n = len(s) - len(s.lstrip("\n"))
                lead, trail = s[:n], s[n + len(content):]
            if out[-1] and lead:
                lead = "\n" * min(2, max(len(out.pop()), len(lead)))
            out += (lead, content, trail)
        return "".join(out)


def _text(text: str, previous, following, inside: bool, in_pre: int) -> str:
    """One string with its neighbouring elements (or None): markdownify's _can_ignore, then process_text."""
    before = previous is not None and previous.tag in _OUTSIDE
    after = following is not None and following.tag in _OUTSIDE
    if not text.strip() and ((inside and (previous is None or following is None)) or before or after):
        return ""
    if not in_pre:
        if "\n" in text or "\r" in text:
            text = re_newline_whitespace.sub("\n", text)
        if "\t" in text or "  " in text:
            text = re_whitespace.sub(" ", text)
    if before or (inside and previous is None):
        text = text.lstrip(" \t\r\n")
    if after or (inside and following is None):
        text = text.rstrip()
    return text


def _colspan(cell) -> int:
    value = cell.get("colspan")
    return max(1, min(1000, int(value))) if value is not None and value.isdigit() else 1


def _convert_img(el, text, tags) -> str:  # markdownify's convert_img, keep_inline_images_in=[]
    alt, src, title = el.get("alt") or "", el.get("src") or "", el.get("title") or ""
    if "_inline" in tags:
        return alt
    title_part = ' "%s"' % title.replace('"', r"\"") if title else ""
    return "![%s](%s%s)" % (alt, src, title_part)


def _convert_cell(el, text, tags) -> str:  # convert_td, convert_th
    return " " + text.strip().replace("\n", " ") + " |" * _colspan(el)


def _convert_li(el, text, tags) -> str:  # markdownify's convert_li with bullets="-"
    text = (text or "").strip()
    if not text:
        return "\n"
    parent = el.getparent()
    if parent is not None and parent.tag == "ol":
        start = parent.get("start")
        start = int(start) if start and start.isnumeric() else 1
        bullet = "%s. " % (start + sum(1 for _ in el.itersiblings("li", preceding=True)))
    else:
        bullet = "- "
    indent = " " * len(bullet)
    text = re_line_with_content.sub(lambda m: indent + m.group(1) if m.group(1) else "", text)
    return bullet + text[len(bullet):] + "\n"


def _convert_list(el, text, tags) -> str:  # markdownify's convert_list (ul, ol)
    tail = el.tail
    if tail and tail.strip():  # the next content sibling is text
        before_paragraph = True
    else:
        following = el.getnext()
        before_paragraph = following is not None and following.tag not in ("ul", "ol")
    if "li" in tags:
        return "\n" + text.rstrip()
    return "\n\n" + text + ("\n" if before_paragraph else "")


def _convert_tr(el, text, tags) -> str:  # markdownify's convert_tr with table_infer_header=False
    cells = list(el.iter("td", "th"))
    parent = el.getparent()
    first = el.getprevious() is None
    head = all(cell.tag == "th" for cell in cells) or (parent.tag == "thead" and _count(parent, "tr") == 1)
    head_missing = first and (parent.tag != "tbody" or _count(parent.getparent(), "thead") < 1)
    columns = sum(_colspan(cell) for cell in cells)
    if head and first:
        return "|" + text + "\n" + "| " + " | ".join(["---"] * columns) + " |\n"
    if head_missing or (first and (parent.tag == "table" or (parent.tag == "tbody" and parent.getprevious() is None))):
        overline = "| " + " | ".join([""] * columns) + " |\n" + "| " + " | ".join(["---"] * columns) + " |\n"
        return overline + "|" + text + "\n"
    return "|" + text + "\n"


def _count(el, tag: str) -> int:
    """len(el.find_all(tag)): descendants only."""
    return sum(1 for d in el.iterdescendants(tag))
