"""HTML -> Markdown: code blocks stay code blocks, lists and links survive, entities decode."""

from stackllama_cli.data.markdown import html_to_markdown


def test_code_block_is_fenced_and_verbatim():
    md = html_to_markdown("<p>Run:</p><pre><code>for x in y:\n    print(x &lt; 2)\n</code></pre>")
    assert md == "Run:\n\n```\nfor x in y:\n    print(x < 2)\n```"


def test_inline_code_lists_links_and_emphasis():
    md = html_to_markdown('<p>Use <code>ls -la</code> or <a href="https://x.org">this</a>.</p>'
                          "<ul><li>one</li><li><strong>two</strong></li></ul>")
    assert md == "Use `ls -la` or [this](https://x.org).\n\n- one\n- **two**"


def test_plain_text_and_empty_bodies():
    assert html_to_markdown("Fish &amp; chips") == "Fish & chips"
    assert html_to_markdown("") == "" and html_to_markdown(None) == "" and html_to_markdown("  ") == ""


def test_underscores_are_not_escaped():
    assert html_to_markdown("<p>my_var_name</p>") == "my_var_name"
