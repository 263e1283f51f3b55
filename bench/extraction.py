"""Extraction benchmark (not a test): our extractor vs trafilatura and readability-lxml.

Over every page of ``data/recorded/pages``: token-level precision/recall/F1 of the extracted
main text against ``expected.txt``, exact title match against ``expected-metadata.json`` and
CPU milliseconds per page (best of ``--repeat`` runs, after a warm-up), all three extractors in
the same run on the same pages. ``--write`` replaces the "Extraction" section of
docs/BENCHMARKS.md with the table.

    python bench/extraction.py [--repeat 5] [--write]

Tokens: lower-cased runs of letters/digits; each CJK character is a token of its own. F1 is
computed on token multisets (bag of words), per page, then summarised by the median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import extract_rules  # noqa: E402
from pipeline.extract import decode_html, extract_html  # noqa: E402

PAGES = REPO / "data" / "recorded" / "pages"
DOC = REPO / "docs" / "BENCHMARKS.md"
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_WORD = re.compile(r"[^\W_]+")


def tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if _CJK.search(word):
            out.extend(_CJK.findall(word))
            out.extend(_CJK.sub(" ", word).split())
        else:
            out.append(word)
    return out


def token_prf(predicted: str, gold: str) -> tuple[float, float, float]:
    p, g = Counter(tokens(predicted)), Counter(tokens(gold))
    overlap = sum((p & g).values())
    if not overlap:
        return 0.0, 0.0, 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(g.values())
    return precision, recall, 2 * precision * recall / (precision + recall)


Extractor = Callable[[bytes], tuple[str, str | None]]


def ours(raw: bytes) -> tuple[str, str | None]:
    # Cold caches every time: the per-class-value caches would otherwise be warm from the
    # previous repeat of the same page, which a worker seeing a new site would not have.
    extract_rules._value_weight.cache_clear()
    extract_rules._looks_unlikely.cache_clear()
    page = extract_html(raw)
    return page.text, page.title


def trafilatura_extractor() -> Extractor:
    import trafilatura

    def run(raw: bytes) -> tuple[str, str | None]:
        html = decode_html(raw)
        text = trafilatura.extract(html, include_comments=False, include_tables=True) or ""
        meta = trafilatura.extract_metadata(html)
        return text, (meta.title if meta else None)

    return run


def readability_extractor() -> Extractor:
    from lxml.html import fromstring
    from readability import Document

    def run(raw: bytes) -> tuple[str, str | None]:
        doc = Document(decode_html(raw))
        summary = doc.summary(html_partial=True)
        text = fromstring(summary).text_content() if summary.strip() else ""
        return text, doc.short_title()

    return run


def measure(extract: Extractor, raw: bytes, repeat: int) -> tuple[str, str | None, float]:
    extract(raw)  # warm-up: imports, regex compilation
    best = float("inf")
    result: tuple[str, str | None] = ("", None)
    for _ in range(repeat):
        started = time.process_time()
        result = extract(raw)
        best = min(best, time.process_time() - started)
    return result[0], result[1], best * 1000


def run(repeat: int) -> dict[str, dict[str, object]]:
    extractors: dict[str, Extractor] = {
        "technoshare (selectolax)": ours,
        "trafilatura": trafilatura_extractor(),
        "readability-lxml": readability_extractor(),
    }
    pages = sorted(p for p in PAGES.iterdir() if (p / "source.html").exists())
    results: dict[str, dict[str, object]] = {}
    for name, extract in extractors.items():
        rows = []
        for page in pages:
            raw = (page / "source.html").read_bytes()
            gold = (page / "expected.txt").read_text("utf-8")
            expected_title = json.loads((page / "expected-metadata.json").read_text())["title"]
            text, title, ms = measure(extract, raw, repeat)
            p, r, f = token_prf(text, gold)
            rows.append({"page": page.name, "p": p, "r": r, "f1": f, "ms": ms,
                         "title_ok": (title or "").strip() == (expected_title or "").strip()})  # fmt: skip
        results[name] = {
            "pages": len(rows),
            "median_p": statistics.median(r["p"] for r in rows),
            "median_r": statistics.median(r["r"] for r in rows),
            "median_f1": statistics.median(r["f1"] for r in rows),
            "mean_f1": statistics.fmean(r["f1"] for r in rows),
            "min_f1": min(rows, key=lambda r: r["f1"]),
            "title_match": sum(r["title_ok"] for r in rows) / len(rows),
            "median_ms": statistics.median(r["ms"] for r in rows),
            "rows": rows,
        }
    return results


def table(results: dict[str, dict[str, object]]) -> str:
    lines = [
        "| extractor | median P | median R | median F1 | mean F1 | worst page (F1) "
        "| title exact | median ms/page |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        worst = r["min_f1"]
        assert isinstance(worst, dict)
        lines.append(
            f"| {name} | {r['median_p']:.3f} | {r['median_r']:.3f} | {r['median_f1']:.3f} "
            f"| {r['mean_f1']:.3f} | {worst['page']} ({worst['f1']:.2f}) "
            f"| {r['title_match']:.0%} | {r['median_ms']:.1f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load:.1f} at the start"
    )


def section(results: dict[str, dict[str, object]], repeat: int, started: str) -> str:
    ours_r, *others = results.values()
    speedups = ", ".join(
        f"{float(o['median_ms']) / float(ours_r['median_ms']):.0f}x faster than {name}"
        for name, o in list(results.items())[1:]
    )
    verdict = [
        f"median F1 {ours_r['median_f1']:.3f} (target >= 0.90)",
        f"title exact match {ours_r['title_match']:.0%} (target >= 95%)",
        f"median {ours_r['median_ms']:.1f} ms per page (target <= 5 ms)",
    ]
    return (
        "## Extraction\n\n"
        f"Command: `python bench/extraction.py --repeat {repeat} --write` (a few minutes; longer on a loaded machine).\n\n"
        f"Machine: {started}.\n\n"
        f"Pages: all {ours_r['pages']} pages of `data/recorded/pages` (the corpus's development "
        "split; a held-out split exists and nothing was tuned to single pages). Gold: "
        "`expected.txt` (text of Readability's expected output) and the `title` of "
        "`expected-metadata.json`. Tokens: lower-cased runs of letters and digits, each CJK "
        "character a token; P/R/F1 on token multisets per page, then the median over pages. "
        "Time: CPU time (`time.process_time`) of one call on bytes, including decoding, best of "
        f"{repeat} after a warm-up, median over pages; ours runs with its per-class-value caches "
        "cleared each call. Baselines get the same decoded text.\n\n"
        f"{table(results)}\n\n"
        f"Ours: {'; '.join(verdict)}; {speedups} in the same run.\n\n"
        "The absolute times depend on the load of this shared 2-core machine (other "
        "developers' test suites run alongside); the ratios to the baselines, measured in the "
        "same run, are the steadier figure.\n\n"
        "Titles: the gold titles are what Readability.js's metadata rules give (JSON-LD, then "
        "Open Graph/Dublin Core/Twitter tags, then `<title>` with site-name suffixes dropped "
        "when enough words remain). `pipeline/extract_meta.py` implements those documented "
        "rules, which is why it matches every title here; on other pages expect less. The "
        "baselines' misses are mostly a different choice of source (an `<h1>`, the `<title>` "
        "with or without its suffix, a navigation heading), not garbled text.\n"
    )


def write_section(body: str) -> None:
    text = DOC.read_text("utf-8") if DOC.exists() else "# Benchmarks\n"
    start = text.find("## Extraction")
    if start == -1:
        text = text.rstrip() + "\n\n" + body
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + body + (text[end + 1 :] if end != -1 else "")
    DOC.write_text(text.rstrip() + "\n", "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    started = machine()
    results = run(args.repeat)
    out = table(results)
    print(out)
    print(started)
    if args.write:
        write_section(section(results, args.repeat, started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
