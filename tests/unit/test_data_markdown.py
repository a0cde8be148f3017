"""HTML -> Markdown: code blocks stay code blocks, lists and links survive, entities decode, and the
fast path gives exactly the Markdown of plain markdownify."""

import random
import warnings
import xml.etree.ElementTree as ET

import pytest

from stackllama_cli.data.markdown import fast_path_ok, html_to_markdown, reference_markdown


def test_code_block_is_fenced_and_verbatim():
    md = html_to_markdown("<p>Run:</p><pre><code>for x in y:\n    print(x &lt; 2)\n</code></pre>")
    assert md == "Run:\n\n```\nfor x in y:\n    print(x < 2)\n```"


def test_inline_code_lists_links_and_emphasis():
    md = html_to_markdown('<p>Use <code>ls -la</code> or <a href="https://x.org">this</a>.</p>'
                          "<ul><li>one</li><li><strong>two</strong></li></ul>")
    assert md == "Use `ls -la` or [this](https://x.org).\n\n- one\n- **two**"


def test_blockquote_headings_and_numbered_lists():
    md = html_to_markdown("<h2>Setup</h2><blockquote><p>Quoted</p></blockquote><ol><li>a</li><li>b</li></ol>")
    assert md == "## Setup\n\n> Quoted\n\n1. a\n2. b"


def test_plain_text_and_empty_bodies():
    assert html_to_markdown("Fish &amp; chips") == "Fish & chips"
    assert html_to_markdown("") == "" and html_to_markdown(None) == "" and html_to_markdown("  ") == ""
    # whitespace is normalised like markdownify does, also without any tag
    assert html_to_markdown("one  two\r\n\r\nthree") == "one two\nthree"


def test_underscores_are_not_escaped():
    assert html_to_markdown("<p>my_var_name</p>") == "my_var_name"


def test_fast_path_covers_stackexchange_html_and_refuses_what_parsers_repair_differently():
    assert fast_path_ok('<p>Hi <a href="https://x.org">x</a></p>\n\n<ul>\n<li>a</li>\n</ul>\n<pre><code>x</code></pre>')
    for body in ("<p>unclosed", "<p>a<p>b</p></p>", "<p><div>x</div></p>", "<a href='a'><a href='b'>x</a></a>",
                 "<ul>text<li>x</li></ul>", "<li><li>x</li></li>", "<h1><h2>x</h2></h1>", "<b><i>x</b></i>",
                 "<textarea>x</textarea>", "<!-- c --><p>x</p>", "1 < 2", "AT&T", "<p>x</p>\x00", "\ufeff<p>x</p>"):
        assert not fast_path_ok(body), body


EDGE_CASES = [
    "plain text", "a\n\nb", "text<p>para</p>tail", "<p>a</p>\n\n<p>b</p>", "<pre>\ncode\n</pre>",
    "<pre><code>\nx = 1\n</code></pre>", "<p>unclosed <b>bold", "<p>a<p>b", "<ul><li>one<li>two</ul>",
    "<li>orphan</li>", "x &lt; y &amp;&amp; z", "&nbsp;hi", "<!-- c --><p>x</p>",
    "<table><tr><td>a</td><td>b</td></tr></table>",
    "<table><thead><tr><th>h</th></tr></thead><tbody><tr><td>a|b</td></tr></tbody></table>",
    "<blockquote><p>q</p></blockquote>", "<p>a<br>b<br/>c</p>", "<img src='x.png' alt='A'>", "<h1>T</h1>text",
    "<p>a</p>   <p>b</p>", "<div>x</div>", "<span>a</span> <span>b</span>", "<p>Use <kbd>Ctrl</kbd>+<kbd>C</kbd></p>",
    "<ol start='3'><li>x</li><li>y</li></ol>", "<pre>a\n\n\nb</pre>", "<p>x</p></div>",
    "<html><body><p>x</p></body></html>", "<script>alert(1)</script><p>y</p>", "<p>1 < 2 and 3 > 2</p>", "a < b",
    "<a href='http://x'>http://x</a>", "<p>x</p><hr><p>y</p>", "<code>a  b</code>", "<p>\ttab\t sp</p>",
    "<p>a\r\nb</p>", "\ufeff<p>bom</p>", "<?xml version='1.0'?><p>x</p>", "<p>x</p>\x00",
    "<ul><li><p>a</p><ul><li>b</li></ul></li></ul>", "<dl><dt>a</dt><dd>b</dd></dl>",
    "<p>x<sup>2</sup> H<sub>2</sub>O <strike>s</strike> <del>d</del> <s>t</s></p>", "<title>t</title><p>x</p>",
    "<p>é ü 中文 🍺</p>", "<P>UPPER</P>", "<p class='x y'>c</p>", "<pre><code class='lang-py'>x</code></pre>",
    "<textarea>a <b>b</b></textarea>", "<p>a</p><style>p{}</style>", "<li><li>x</li></li>",
    "<h1><h2>x</h2></h1>", "<h1><em>x</em></h1>", "<td><td>x</td></td>", "<dl><dt><dd>x</dd></dt></dl>",
    "<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>", '<a href="u"><p>x</p></a>',
    "<blockquote><blockquote><p>x</p></blockquote></blockquote>", "<em><strong>x</strong></em>",
    "<code><code>x</code></code>", "<p><div>x</div></p>", "<p><ul><li>x</li></ul></p>", "<b><i>x</b></i>",
    "<a href='a'><a href='b'>x</a></a>", "  <p>lead</p>", "<p>x</p>  trailing", " <b>x</b> ",
    "<p>&copy; &eacute; &#169; &#xA9; &amp c</p>", "<blockquote>\n  <p>q\n  more</p>\n</blockquote>",
    "<h2>A <em>b</em></h2>\n\n<p>c</p>", '<p><a href="x" title="t > u">l</a></p>',
    "<p>a</p>\n<pre><code>  indented\n\n  more\n</code></pre>\n<p>b</p>", "<ol><li><p>x</p><pre><code>y</code></pre></li></ol>",
    '<p><img src="a.png" alt="a" /></p>', "<hr />", "<br/>", "<p>a <code>&lt;div&gt;</code> b</p>", "<td>x</td>",
    "<tr><td>x</td></tr>", "<li><p>x</p></li>", "<em></em>", "<p></p>", "<p> </p><p>x</p>", "<span> </span>",
    "<pre> lead space</pre>", "one  two\r\n\r\nthree", "<p>18 &deg;C &apos;x&apos; &hellip; &rarr; &check; &amp &AMP;</p>",
    # repeated attributes: html.parser keeps the last value, libxml2 the first
    '<a href="x" href="y">t</a>', "<img src=a src=b alt=c>", '<p><a href="x" HREF="y">t</a></p>',
    '<a href="x"title="y">t</a>', "<p >x</p >", '<a href="u" title="a &amp; b">l</a>', "<a href>t</a>", "<img alt>",
    # tables: header rows, colspans, nested tables, tbody after thead
    "<table><thead><tr><th>a</th><th colspan='2'>b</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody>"
    "</table>", "<table><tr><td colspan='3'>x</td></tr><tr><td>a</td></tr></table>",
    "<table><tbody><tr><td>a</td></tr></tbody><tbody><tr><td>b</td></tr></tbody></table>",
    "<table><thead><tr><td>a</td></tr><tr><td>b</td></tr></thead></table>", "<table><tr></tr></table>",
    "<table><tr><td><table><thead><tr><th>n</th></tr></thead></table></td></tr></table>",
    "<table><tr><th>a</th><td>b</td></tr><tr><th>c</th></tr></table>", "<td colspan='x'>a</td><th colspan='0'>b</th>",
    # lists: start numbers, nesting, text after a list
    "<ol start='7'><li>a</li><li>b</li></ol>", "<ol start='x'><li>a</li></ol>", "<ul><li>a<ol><li>b</li></ol></li></ul>",
    "<ul><li>a</li></ul>after", "<ul><li>a</li></ul><ol><li>b</li></ol><p>c</p>", "<li>a</li><li>b</li>",
    "<ul><li></li><li> </li></ul>", "<ol><li><ul><li>x</li></ul>tail</li></ol>",
    # '/' at the end of a tag: self-closing (void tags only) or part of an attribute value
    "<p/>x", '<a href="x/">t</a>', "<img src=a/>", "<p class='x'/>", "<br / >", "<img src='a' / >", "<br//>",
    "<p>a</p/>", "<a href=x/>t</a>", "<BR/>", "<img/src=a>",
    # whitespace bs4 folds and libxml2 keeps; references html.parser drops in attributes; Unicode spaces in tags
    "<span>a</span>\x0c<span>b</span>", "<b>a</b>&#13;<b>b</b>", "<b>a</b>&#12;<b>b</b>", '<a href="u&#1;v">t</a>',
    '<img alt="&#xFFFF;" src="s">', '<a href="u&#127;v">t</a>', "<a href=x\xa0y>t</a>", "<img src=s\xa0/>",
    "<a href=x\xa0>t</a>", '<a href="x"\x0btitle="y">t</a>', '<a href="u&#x85;v">t</a>', "<p>a&#1;b</p>",
]


@pytest.mark.parametrize("body", EDGE_CASES)
def test_same_markdown_as_plain_markdownify_on_edge_cases(body):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about XML-looking input
        assert html_to_markdown(body) == reference_markdown(body)


def test_every_html4_entity_decodes_alike():
    from html.entities import name2codepoint

    for name in name2codepoint:
        body = f"<p>a &{name}; b</p>"
        assert fast_path_ok(body) and html_to_markdown(body) == reference_markdown(body), name


def random_html(rng: random.Random, depth: int = 0) -> str:
    tags = ["p", "pre", "code", "blockquote", "ul", "ol", "li", "a", "strong", "em", "h1", "h3", "br", "hr", "img",
            "sub", "kbd", "span", "div", "table", "tr", "td", "dl", "dt", "dd", "th", "thead", "tbody", "del"]
    texts = ["x", "two words", " ", "\n", "\n\n", "  ", "\t", "a_b*c", "&amp;", "&lt;tag&gt;", "é", "1. item",
             "- dash", "# hash", "`tick`", "&nbsp;", "line\n  next"]
    out = []
    for _ in range(rng.randint(0, 4)):
        if depth < 4 and rng.random() < 0.5:
            tag = rng.choice(tags)
            if tag in ("br", "hr"):
                out.append(f"<{tag}>")
            elif tag == "img":
                out.append('<img src="s.png" alt="alt">')
            else:
                attrs = {"a": ' href="http://e.org/x"', "ol": ' start="3"', "td": ' colspan="2"'}.get(tag, "")
                attrs = attrs if rng.random() < 0.7 else ""
                out.append(f"<{tag}{attrs}>{random_html(rng, depth + 1)}</{tag}>")
        else:
            out.append(rng.choice(texts))
    return "".join(out)


def test_same_markdown_as_plain_markdownify_on_random_html():
    rng = random.Random(0)
    bodies = [b for b in (random_html(rng) for _ in range(2000)) if b.strip()]
    assert sum(map(fast_path_ok, bodies)) > len(bodies) // 3  # the fast path is really exercised
    for body in bodies:
        assert html_to_markdown(body) == reference_markdown(body), body


COLSPANS, STARTS = ["", ' colspan="2"'], ["", ' start="3"']


def nested_html(rng: random.Random, depth: int = 0) -> str:
    """Random HTML nested the way HTML allows (lists hold items, tables rows and cells...): the fast path takes
    most of it, so the lxml walk's list, table and whitespace rules meet many shapes."""
    def ws():
        return rng.choice(["", "", "\n", " ", "\n\n"])

    def inline(d):
        out = []
        for _ in range(rng.randint(0, 3)):
            tag = rng.choice(["a", "strong", "em", "code", "kbd", "sub", "strike", "span", "br", "img", "text", "text"])
            if tag == "text" or d > 3:
                out.append(rng.choice(["x", "two words", " ", "\n", "  ", "\t", "&amp;", "`tick`", "\xa0", " lead",
                                       "trail ", "|pipe|", "1. item"]))
            elif tag in ("br", "img"):
                out.append(rng.choice(["<br>", "<img>", '<img src="s.png" alt="alt" title="t">']))
            else:
                attrs = rng.choice(['', ' href="http://e.org/x"', ' href=""']) if tag == "a" else ""
                out.append(f"<{tag}{attrs}>{inline(d + 2 if tag == 'a' else d + 1)}</{tag}>")
        return "".join(out)

    def row(d):
        cells = "".join(ws() + f"<{c}{rng.choice(COLSPANS)}>{inline(d)}</{c}>"
                        for c in rng.choices(["td", "th"], k=rng.randint(0, 3)))
        return ws() + f"<tr>{cells}</tr>"

    out = []
    for _ in range(rng.randint(0, 3)):
        tag = rng.choice(["p", "pre", "h2", "ul", "ol", "dl", "table", "blockquote", "div", "hr", "inline"])
        if tag == "inline" or depth > 3:
            out.append(inline(depth))
        elif tag in ("p", "pre", "h2"):
            out.append(f"<{tag}>{inline(depth)}</{tag}>")
        elif tag in ("ul", "ol"):
            items = "".join(ws() + f"<li>{nested_html(rng, depth + 1)}</li>" for _ in range(rng.randint(0, 3)))
            out.append(f"<{tag}{rng.choice(STARTS)}>{items}{ws()}</{tag}>")
        elif tag == "dl":
            items = [rng.choice([f"<dt>{inline(depth)}</dt>", f"<dd>{nested_html(rng, depth + 1)}</dd>"])
                     for _ in range(rng.randint(0, 3))]
            out.append("<dl>" + "".join(ws() + item for item in items) + "</dl>")
        elif tag == "table":
            head = f"<thead>{row(depth)}</thead>" if rng.random() < 0.5 else ""
            body = "".join(row(depth) for _ in range(rng.randint(0, 3)))
            out.append(f"<table>{head}{ws()}{rng.choice([body, f'<tbody>{body}</tbody>'])}</table>")
        elif tag == "hr":
            out.append("<hr>")
        else:
            out.append(f"<{tag}>{ws()}{nested_html(rng, depth + 1)}{ws()}</{tag}>")
        out.append(ws())
    return "".join(out)


def test_same_markdown_as_plain_markdownify_on_random_nested_html():
    rng = random.Random(0)
    bodies = [b for b in (nested_html(rng) for _ in range(1200)) if b.strip()]
    assert sum(map(fast_path_ok, bodies)) > len(bodies) * 0.9
    for body in bodies:
        assert html_to_markdown(body) == reference_markdown(body), body


def test_same_markdown_as_plain_markdownify_on_real_dumps(beer_posts, coffee_posts):
    fast = total = 0
    for path in (beer_posts, coffee_posts):
        for row in ET.parse(path).getroot():
            body = row.get("Body") or ""
            total += 1
            fast += fast_path_ok(body)
            assert html_to_markdown(body) == reference_markdown(body), (path.name, row.get("Id"))
    assert fast > 0.95 * total


def test_same_markdown_as_plain_markdownify_on_the_bundled_sample():
    from stackllama_cli.data.prepare import SAMPLE_DUMP

    bodies = [row.get("Body") or "" for row in ET.parse(SAMPLE_DUMP).getroot()]
    assert sum(map(fast_path_ok, bodies)) >= len(bodies) - 2  # (the empty body; everything else is clean HTML)
    for body in bodies:
        assert html_to_markdown(body) == reference_markdown(body), body


@pytest.mark.parametrize("body", [
    "<p>" + "lager " * 1_900_000 + "</p>",  # one text node of 11.4 MB: over libxml2's default limit
    "<p>a <b>" + "x" * 10_500_000 + "</b> tail</p>",
])
def test_a_text_run_over_ten_megabytes_converts_like_plain_markdownify(body):
    expected = reference_markdown(body)
    assert len(expected) > 10_000_000
    assert html_to_markdown(body) == expected


def markdownify_join(strings: list[str]) -> str:
    """markdownify 1.2's process_tag join of child strings, as it is written there."""
    from markdownify import re_extract_newlines

    updated = [""]
    for s in strings:
        leading, content, trailing = re_extract_newlines.match(s).groups()
        if updated[-1] and leading:
            leading = "\n" * min(2, max(len(updated.pop()), len(leading)))
        updated.extend([leading, content, trailing])
    return "".join(updated)


def test_joining_child_strings_collapses_newlines_like_markdownify():
    from stackllama_cli.data._markdown_lxml import _join_collapsing

    assert _join_collapsing(["a\n", "\n\n\nb", "\n", "\n\n", "c"]) == "a\n\nb\n\n\nc"
    rng = random.Random(0)
    pieces = ["\n", "\n\n", "\n\n\n", "a", "b\n", "\nc", "\n\nd\n\n\n", "x\n\n\ny", "\n\n\n\n", " ", " \n"]
    for _ in range(20000):
        strings = [rng.choice(pieces) for _ in range(rng.randint(1, 6))]
        assert _join_collapsing(strings) == markdownify_join(strings), strings
