"""Passages from READMEs and HTML pages: prose, list items, table rows, lines and code kept apart,
sponsor sections left out, a definition term joined to its text."""

from __future__ import annotations

from pipeline.adapters.base import CODE, ITEM, PROSE
from pipeline.adapters.readme import markdown_passages, rst_passages
from pipeline.adapters.webpage import page_passages
from pipeline.extract import extract_html

MARKDOWN = """\
# Tool

Tool is a small library that parses things quickly.

## Sponsors

Acme Cloud pays for our CI and offers managed hosting for everyone.

### Gold sponsors

BigCorp supports this project.

## Features

- Fast parsing of large files
- Strict timeouts everywhere.
- **Typed**

    Every public function carries type hints.

| Parser | Time |
| --- | --- |
| tool | 2.4 s |

```python
import tool
tool.parse("x")
```

## License

MIT.

## Acknowledgements

A huge amount of credit is due to the people who wrote the parser we copied.
"""

RST = """\
Tool
====

:Version: 1.0
:Keywords: parsing, speed

Donations
=========

Open Collective
---------------

Please give money to keep Tool alive, every little bit helps us.

What is it?
===========

Tool parses things quickly and reliably on every platform.

- **Simple**

    Tool is easy to use and needs no configuration files.

- Python 3.9: Tool 2.0 or earlier.

    +---------+--------+
    | Django  | ok     |
    +---------+--------+

Usage::

    tool --fast input.txt
"""


def _kinds(passages):
    return [(p.chunk_kind, p.section, p.text) for p in passages]


def test_markdown_kinds_terms_and_no_sponsors():
    got = _kinds(markdown_passages(MARKDOWN))
    assert (PROSE, "Tool", "Tool is a small library that parses things quickly.") in got
    assert (ITEM, "Features", "Fast parsing of large files") in got
    assert (ITEM, "Features", "Strict timeouts everywhere.") in got
    assert (PROSE, "Features", "Typed: Every public function carries type hints.") in got
    assert (ITEM, "Features", "tool — 2.4 s") in got
    assert any(kind == CODE and "tool.parse" in text for kind, _, text in got)
    assert (PROSE, "License", "MIT.") in got
    text = " ".join(t for *_, t in got)
    assert "Acme" not in text and "BigCorp" not in text  # the sponsors part, subsections too
    assert "credit" not in text  # thanks are not what the project is


def test_rst_kinds_terms_and_no_donations():
    got = _kinds(rst_passages(RST))
    assert (ITEM, "Tool", "Version: 1.0") in got
    assert (
        PROSE,
        "What is it?",
        "Tool parses things quickly and reliably on every platform.",
    ) in got
    assert (
        PROSE,
        "What is it?",
        "Simple: Tool is easy to use and needs no configuration files.",
    ) in got
    assert (ITEM, "What is it?", "Python 3.9: Tool 2.0 or earlier.") in got
    assert (ITEM, "What is it?", "Django — ok") in got
    assert any(kind == CODE and "tool --fast" in text for kind, _, text in got)
    assert "money" not in " ".join(t for *_, t in got)  # Donations > Open Collective left out


def test_a_paragraph_after_an_item_that_is_not_a_term_stays_prose():
    text = "- PyPy3.9+ (v7.3.12+)\n\nThis is the last version which supports Python 3.9.\n"
    got = _kinds(markdown_passages(text))
    assert got == [
        (ITEM, None, "PyPy3.9+ (v7.3.12+)"),
        (PROSE, None, "This is the last version which supports Python 3.9."),
    ]


def test_html_list_items_lines_cells_captions_and_code():
    html = """<html><body><article><h1>Update</h1>
    <p>This long introduction explains what the update brings to every player in the game.</p>
    <p>+ Added Slime Block<br>+ Added Iron Trapdoor<br>* Villagers now farm crops.</p>
    <ul><li>First item of a list</li><li>Second item of a list</li></ul>
    <figure><img src="x.png"><figcaption>A caption (Photo: Someone)</figcaption></figure>
    <pre>SELECT 1;
SELECT 2;</pre>
    <table><tr><td>cell a</td><td>cell b</td></tr></table>
    <p>The closing paragraph of the article, with enough words to be content.</p>
    </article></body></html>"""
    got = [(p.chunk_kind, p.text) for p in page_passages(extract_html(html))]
    assert got == [
        (
            PROSE,
            "This long introduction explains what the update brings to every player in the game.",
        ),
        (ITEM, "Added Slime Block"),  # a typed bullet on a <br> line is dropped
        (ITEM, "Added Iron Trapdoor"),
        (PROSE, "Villagers now farm crops."),  # a line that ends like a sentence reads on
        (ITEM, "First item of a list"),
        (ITEM, "Second item of a list"),
        (ITEM, "A caption (Photo: Someone)"),
        (CODE, "SELECT 1; SELECT 2;"),
        (ITEM, "cell a"),
        (ITEM, "cell b"),
        (PROSE, "The closing paragraph of the article, with enough words to be content."),
    ]
