"""Redaction speed (not a test): ``Redactor`` (a trigger scan, then the full pattern only where a
match could start) against the full pattern tried at every position (``Redactor.whole``, what
it was before and what it must equal), on the same texts in the same run:

- every recorded page's extracted text (``data/recorded/pages/*/expected.txt``), joined;
- a stage artifact: the evidence JSON of a recorded page as the pipeline writes it (indented).

Both are checked equal before timing. Best of ``--repeat`` runs, CPU time.

    python bench/redaction.py [--repeat 5]    # prints a table, writes bench/results/redaction.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.stackstats import write_results  # noqa: E402
from pipeline.redact import Redactor  # noqa: E402

RESULTS = REPO / "bench" / "results" / "redaction.json"
SECRETS = ["xoxb-1234567890-0987654321-AbCdEfGhIjKl", "8f14e45fceea167a5a36dedd4bea2543"]


@functools.cache
def texts() -> dict[str, str]:
    pages = sorted((REPO / "data" / "recorded" / "pages").glob("*/expected.txt"))
    joined = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    snippets = [{"text": para, "source": "https://example.org/post#p" + str(i)}
                for i, para in enumerate(joined.split("\n")[:200])]  # fmt: skip
    evidence = json.dumps({"url": "https://example.org/post", "snippets": snippets}, indent=2)
    return {"recorded pages (text)": joined, "evidence JSON (indented)": evidence}


def best_ms(call: Callable[[str], str], text: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        call(text)
        times.append(time.process_time() - start)
    return min(times) * 1000


def machine_ms_per_mb(repeat: int = 3) -> float:
    """This machine's speed now, in one thread: this bench's baseline (the full pattern tried at
    every position over the recorded pages' text), best of ``repeat``, ms per MB, lower is
    faster; ~0.5 s. The chain and store benches read it before and after each run: machines of
    one kind differ, and one drifts (bench/README.md)."""
    text = texts()["recorded pages (text)"]
    redactor = Redactor(SECRETS)
    redactor.whole(text[:10_000])  # compiled and cached before the timed passes
    return round(best_ms(redactor.whole, text, repeat) / (len(text) / 1e6), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    redactor = Redactor(SECRETS)
    rows = []
    for name, text in texts().items():
        assert redactor(text) == redactor.whole(text), name
        ours, full = (
            best_ms(redactor, text, args.repeat),
            best_ms(redactor.whole, text, args.repeat),
        )
        mb = len(text) / 1e6
        rows.append({"text": name, "chars": len(text), "ms_per_mb": round(ours / mb, 1),
                     "baseline_ms_per_mb": round(full / mb, 1), "ratio": round(ours / full, 3)})  # fmt: skip
    print("| text | chars | Redactor ms/MB | full pattern at every position ms/MB | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['text']} | {r['chars']:,} | {r['ms_per_mb']} | {r['baseline_ms_per_mb']} "
              f"| {r['ratio']} |")  # fmt: skip
    write_results(RESULTS, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
