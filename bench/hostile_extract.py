"""Hostile-shape extraction benchmark (not a test): CPU time and node visits of ``extract_html``
on pages of about the same size (~1.1 MB) but very different shapes.

(a) a recorded page (``data/recorded/pages/<page>``) padded with its own paragraphs to ~1.1 MB,
(b) 100,000 nested ``<div>``s around a few paragraphs (the same size),
(c) 100,000 flat ``<div>``s, each a word (too short to score, so all four passes run),
(d) 100,000 nested ``<span>``s read *without* the pre-parse nesting limit (the reading itself
    on a really 100,000-deep tree; spans parse in linear time, divs do not).

The target is (b) <= 3x (a). CPU time is ``time.process_time`` of one call on the HTML text,
best of ``--repeat``; node visits are ``ExtractedPage.node_visits`` (Python-level work).
Writes ``bench/results/hostile_extract.json``.

    python bench/hostile_extract.py [--repeat 3] [--page nytimes-1]
"""

from __future__ import annotations

import argparse
import html as html_lib
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from selectolax.lexbor import LexborHTMLParser  # noqa: E402

from pipeline.extract import decode_html, extract_html  # noqa: E402
from pipeline.extract_main import PASSES, read_main_text  # noqa: E402
from pipeline.extract_tree import Budget  # noqa: E402

PAGES = REPO / "data" / "recorded" / "pages"
OUT = REPO / "bench" / "results" / "hostile_extract.json"
TARGET_BYTES = 1_100_000
COUNT = 100_000
SENTENCE = "Sentence {n} of a long page, with a comma, and enough words to be scored as text."


def padded_page(name: str) -> str:
    """The recorded page with its own main-text paragraphs repeated inside its article: right
    after the paragraph holding the first extracted sentence, until the page is ~1.1 MB."""
    source = decode_html((PAGES / name / "source.html").read_bytes())
    blocks = [b.text for b in extract_html(source).blocks if not b.heading and len(b.text) > 80]
    padding = [f"<p>{html_lib.escape(text)}</p>" for text in blocks] or ["<p>x</p>"]
    needed = max(0, TARGET_BYTES - len(source.encode()))
    extra, size = [], 0
    while size < needed:
        piece = padding[len(extra) % len(padding)]
        extra.append(piece)
        size += len(piece.encode())
    anchor = source.find(blocks[0][:30]) if blocks else -1
    close = source.find("</p>", anchor) if anchor != -1 else -1
    at = close + len("</p>") if close != -1 else len(source)
    return source[:at] + "".join(extra) + source[at:]


def nested_divs() -> str:
    inner = "".join(f"<p>{SENTENCE.format(n=n)}</p>" for n in range(8))
    return f"<html><body>{'<div>' * COUNT}{inner}{'</div>' * COUNT}</body></html>"


def flat_divs() -> str:
    divs = "".join(f"<div>w{n}</div>" for n in range(COUNT))  # short: every pass is run
    return f"<html><body>{divs}</body></html>"


def nested_spans() -> str:
    inner = "".join(f"<p>{SENTENCE.format(n=n)}</p>" for n in range(8))
    return f"<html><body>{'<span>' * COUNT}{inner}{'</span>' * COUNT}</body></html>"


def measure(html: str, repeat: int) -> dict[str, object]:
    best, page = float("inf"), None
    for _ in range(repeat):
        started = time.process_time()
        page = extract_html(html)
        best = min(best, time.process_time() - started)
    assert page is not None
    return {
        "bytes": len(html.encode()),
        "cpu_s": best,
        "node_visits": page.node_visits,
        "blocks": len(page.blocks),
        "chars": len(page.text),
        "truncated": page.truncated,
        "partial_reason": page.partial_reason,
    }


def measure_reading_only(html: str, repeat: int) -> dict[str, object]:
    """Parse outside the timing, then one strict reading of the full-depth tree."""
    best, visits, blocks = float("inf"), 0, []
    for _ in range(repeat):
        tree = LexborHTMLParser(html)
        budget = Budget()
        started = time.process_time()
        blocks = read_main_text(tree, PASSES[0], budget)
        best = min(best, time.process_time() - started)
        visits = budget.visits
    return {
        "bytes": len(html.encode()),
        "cpu_s": best,
        "node_visits": visits,
        "blocks": len(blocks),
        "chars": sum(len(b.text) for b in blocks),
        "truncated": False,
        "partial_reason": None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--page", default="nytimes-1", help="recorded page padded for (a)")
    args = parser.parse_args()
    rows = {
        f"(a) {args.page} padded with its paragraphs": measure(padded_page(args.page), args.repeat),
        "(b) 100,000 nested <div>s": measure(nested_divs(), args.repeat),
        "(c) 100,000 flat <div>s": measure(flat_divs(), args.repeat),
        "(d) 100,000 nested <span>s, reading only, no nesting limit": measure_reading_only(
            nested_spans(), args.repeat
        ),
    }
    (a, b, *_rest) = rows.values()
    ratio = float(b["cpu_s"]) / float(a["cpu_s"])  # type: ignore[arg-type]
    print("| page | size | CPU s | node visits | blocks | chars | partial |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(
            f"| {name} | {int(r['bytes']) / 1e6:.2f} MB | {float(r['cpu_s']):.3f} "  # type: ignore[arg-type]
            f"| {r['node_visits']:,} | {r['blocks']:,} | {r['chars']:,} "
            f"| {r['partial_reason'] or 'no'} |"
        )
    print(f"\nratio (b)/(a): {ratio:.2f}x (target <= 3x)")
    machine = f"{platform.system()} {platform.machine()}, Python {platform.python_version()}"
    print(f"machine: {machine}; best of {args.repeat}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {"rows": rows, "ratio_b_over_a": ratio, "repeat": args.repeat, "machine": machine},
            indent=2,
        )
        + "\n",
        "utf-8",
    )
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
