"""``technoshare eval add-from-feedback``: 👎 jobs become new eval examples.

For each job whose latest reaction was 👎 (``eval/feedback.py``) and whose link is not in the
dataset yet: its source is read again through the adapters and recorded into ``data/recorded/``
(``eval/recorder.py``), and an example is appended to the dataset with the job's Slack message,
the recorded reference, suggested must-mention terms (words of the source's title found in the
recorded text) and ``status: needs_review``. Expected themes are left for a person to fill:
the commentary that got the 👎 is no ground truth. The suite evaluates only ``ready`` examples.

The source is read live by default; ``FETCH_RECORDED=true`` reads it from the recorded web
(offline runs and tests).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from eval.dataset import DEFAULT_RECORDED_DIR, RecordedRef, load_dataset, recorded_text
from pipeline.settings import Settings

_WORD = re.compile(r"[A-Za-z][\w.+#/-]{3,}")
_STOP = frozenset(
    [
        "with",
        "from",
        "that",
        "this",
        "into",
        "your",
        "their",
        "about",
        "using",
        "towards",
        "what",
        "when",
    ]
)


def suggest_terms(title: str | None, text: str, limit: int = 3) -> list[str]:
    """Distinctive words of the title that occur in the recorded text (case-insensitive)."""
    lowered = text.casefold()
    terms: list[str] = []
    for word in _WORD.findall(title or ""):
        word = word.strip(".-/")
        if word.casefold() in _STOP or word.casefold() in (t.casefold() for t in terms):
            continue
        if word.casefold() in lowered:
            terms.append(word)
    terms.sort(key=lambda w: (not w[:1].isupper(), -len(w)))  # names first, then long words
    return terms[:limit]


def _fetcher(settings: Settings) -> Any:
    if settings.fetch_recorded:
        from services.recorded_web import RecordedWeb

        return RecordedWeb().fetcher(settings)
    from pipeline.fetch import SafeFetcher

    return SafeFetcher(settings)


def _example(job: Any, ref: RecordedRef, title: str | None, recorded_dir: Path) -> dict[str, Any]:
    message = job.message_text if job.url in job.message_text else f"{job.message_text} <{job.url}>"
    terms = suggest_terms(title, recorded_text(ref, recorded_dir))
    who = f" by {job.user}" if job.user else ""
    return {
        "id": f"fb-{job.job_id[:12].lower()}",
        "url": job.url,
        "message_text": message.strip(),
        "recorded": ref.model_dump(),
        "expected_themes": [],
        "tags": ["from-feedback", ref.kind],
        "must_mention": terms,
        "status": "needs_review",
        "notes": (
            f"👎{who} on job {job.job_id} (MLflow run {job.run_id}). Fill expected_themes, check "
            "must_mention (suggested from the title), then set status to ready."
        ),
    }


def add_from_feedback(
    settings: Settings, *, dataset_path: Path, recorded_dir: Path, days: int, dry_run: bool
) -> list[dict[str, Any]]:
    from eval.feedback import disliked_jobs
    from eval.recorder import UnsupportedRecording, record_link
    from pipeline.errors import TechnoShareError
    from pipeline.links import canonical_url

    dataset = load_dataset(dataset_path)
    known = {canonical_url(e.url) for e in dataset.examples}
    added: list[dict[str, Any]] = []
    fetcher = _fetcher(settings)
    try:
        for job in disliked_jobs(settings, days=days):
            if not job.url or canonical_url(job.url) in known:
                continue
            try:
                ref, title = record_link(job.url, settings, fetcher, recorded_dir)
            except (UnsupportedRecording, TechnoShareError) as exc:
                print(f"skip {job.url}: {exc}", file=sys.stderr)
                continue
            added.append(_example(job, ref, title, recorded_dir))
            known.add(canonical_url(job.url))
    finally:
        fetcher.close()
    if added and not dry_run:
        raw = json.loads(dataset_path.read_text(encoding="utf-8"))
        raw["examples"].extend(added)
        dataset_path.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", "utf-8")
        load_dataset(dataset_path)  # what was written must load
    return added


def main(args: argparse.Namespace, settings: Settings) -> int:
    recorded_dir = args.recorded_dir or DEFAULT_RECORDED_DIR
    added = add_from_feedback(
        settings,
        dataset_path=args.dataset,
        recorded_dir=recorded_dir,
        days=args.days,
        dry_run=args.dry_run,
    )
    verb = "would add" if args.dry_run else "added"
    print(f"{verb} {len(added)} example(s) from 👎 feedback to {args.dataset} (needs_review):")
    for example in added:
        print(f"  {example['id']}  {example['url']}  recorded {example['recorded']['kind']} "
              f"{example['recorded']['id']}")  # fmt: skip
    return 0
