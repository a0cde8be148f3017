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
_PLAIN = (0, False, None)  # a tag without conversion or whitespace rules of its own
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
        convert_fns = {
            "a": c.convert_a, "b": c.convert_b, "strong": c.convert_strong, "em": c.convert_em, "i": c.convert_i,
            "del": c.convert_del, "s": c.convert_s, "sub": c.convert_sub, "sup": c.convert_sup,
            "code": c.convert_code, "kbd": c.convert_kbd, "p": c.convert_p, "div": c.convert_div, "dl": c.convert_dl,
            "blockquote": c.convert_blockquote, "br": c.convert_br, "hr": c.convert_hr, "dd": c.convert_dd,
            "dt": c.convert_dt, "table": c.convert_table, "pre": c.convert_pre,
            "li": _convert_li, "ul": _convert_list, "ol": _convert_list, "tr": _convert_tr, "td": _convert_cell,
            "th": _convert_cell, "img": _convert_img,
            **{h: (lambda n: lambda el, text, tags: c.convert_hN(n, el, text, tags))(int(h[1])) for h in _HEADINGS},
        }  # span, strike, thead, tbody: markdownify has no conversion for them, their text passes through
        # tag -> (flags its children get, whether whitespace inside it is removed, its conversion or None)
        self.kinds = {name: (_CHILD_FLAGS.get(name, 0), name in _INSIDE, convert_fns.get(name))
                      for name in set(convert_fns) | set(_CHILD_FLAGS) | _INSIDE}

    def convert(self, body) -> str:
        return self.children(body, 0, False).strip("\n")  # convert__document_ with strip_document="strip"

    def children(self, el, mask: int, inside: bool) -> str:
        """process_tag's loop: each child element converted (its children first, then its convert_*
        function) and each child string (whitespace rules of _can_ignore and process_text), joined.

        A string's neighbours are known once the element after it is: `pending` is the string (el.text,
        then each child's tail) waiting for it, `previous` the tag before it (None: none)."""
        strings = []
        in_pre = mask & PRE
        tags = _TAGSETS[mask]  # what the children's conversions see as parent_tags
        kinds = self.kinds
        previous = None
        pending = el.text
        for kid in el:
            name = kid.tag  # (lxml makes a new str on each .tag: read it once)
            if pending:
                s = _text(pending, previous, name, inside, in_pre)
                if s:
                    strings.append(s)
            flags, kid_inside, convert = kinds.get(name, _PLAIN)
            s = self.children(kid, mask | flags, kid_inside)
            if convert is not None:
                s = convert(kid, s, tags)
            if s:
                strings.append(s)
            previous, pending = name, kid.tail
        if pending:
            s = _text(pending, previous, None, inside, in_pre)
            if s:
                strings.append(s)
        if in_pre or len(strings) < 2:
            return "".join(strings)
        return _join_collapsing(strings)


def _join_collapsing(strings: list[str]) -> str:
    """Join, with the newlines where two strings meet collapsed to at most two (process_tag's regex
    over each child's leading and trailing newlines)."""
    out = []
    trail = 0  # the newlines ending the string before, not yet in `out`
    for s in strings:
        if s[0] != "\n":  # no leading newlines: nothing to collapse
            if trail:
                out.append("\n" * trail)
            if s[-1] != "\n":
                out.append(s)
                trail = 0
            else:
                content = s.rstrip("\n")
                out.append(content)
                trail = len(s) - len(content)
            continue
        content = s.strip("\n")
        if not content:  # all newlines: markdownify's regex puts them all in the leading group
            lead, new_trail = len(s), 0
        else:
            lead = s.index(content[0])  # (the leading newlines' count)
            new_trail = len(s) - lead - len(content)
        if trail:  # min(2, max(trail, lead))
            lead = 2 if trail >= 2 or lead >= 2 else 1
        out.append("\n" * lead)
        out.append(content)
        trail = new_trail
    if trail:
        out.append("\n" * trail)
    return "".join(out)


def _text(text: str, previous: str | None, following: str | None, inside: bool, in_pre: int) -> str:
    """One string with the tags of its neighbouring elements (None: none): markdownify's _can_ignore,
    then process_text."""
    before = previous in _OUTSIDE
    after = following in _OUTSIDE
    if (before or after or (inside and (previous is None or following is None))) and not text.strip():
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
