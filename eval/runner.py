"""``technoshare eval`` (also ``scripts/run_eval.py``): the evaluation suite, offline by default.

    technoshare eval add-from-feedback [--days 30] [--dry-run]   (see eval/from_feedback.py)
    technoshare eval [--min-pass-rate 0.8] [--summary-md PATH] [--results-json PATH]
                     [--compare RUN_ID] [--prompts-dir DIR] [--dataset PATH] [--ids a,b] [--limit N]

Every example of ``data/eval_dataset.json`` runs through fetch (recorded web) -> stage A ->
stage B -> gates with the configured model (``LLM_MODEL``, default the offline extractive
model), then is scored and recorded in MLflow (experiment ``MLFLOW_EVAL_EXPERIMENT``, tracking
URI from settings, default the local sqlite store). The pass rule is in ``eval/scorers.py``.

Exit codes: 0 pass rate >= ``--min-pass-rate``; 1 below it; 2 the eval could not run (bad
dataset, prompts dir, ``--compare`` run, configuration).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.offline import apply_offline_defaults

EXIT_OK, EXIT_BELOW_THRESHOLD, EXIT_CANNOT_RUN = 0, 1, 2

apply_offline_defaults()  # offline and quiet, also when run as scripts/run_eval.py


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from eval.dataset import DEFAULT_DATASET

    parser.add_argument(
        "action",
        nargs="?",
        default="run",
        choices=("run", "add-from-feedback"),
        help="run the suite (default), or append 👎 jobs to the dataset as examples to review",
    )
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="eval dataset JSON")
    parser.add_argument(
        "--min-pass-rate", type=float, default=0.8, help="exit 1 below this (default 0.8)"
    )
    parser.add_argument("--summary-md", type=Path, help="write a markdown summary (PR comment)")
    parser.add_argument("--results-json", type=Path, help="also write eval_results.json here")
    parser.add_argument("--compare", metavar="RUN_ID", help="show changes against an eval run")
    parser.add_argument("--prompts-dir", type=Path, help="evaluate the prompt set in DIR")
    parser.add_argument("--recorded-dir", type=Path, help="recorded web data (data/recorded)")
    parser.add_argument("--ids", help="only these example ids (comma-separated)")
    parser.add_argument("--limit", type=int, help="only the first N examples")
    parser.add_argument("--run-name", help="MLflow run name (default eval-<UTC time>)")
    parser.add_argument("--days", type=int, default=30, help="add-from-feedback: look back N days")
    parser.add_argument("--dry-run", action="store_true", help="add-from-feedback: write nothing")


def _select(dataset: Any, ids: str | None, limit: int | None) -> list[Any]:
    examples = dataset.ready()  # needs_review examples wait for a person's labels
    if ids:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        known = dataset.by_id()
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise ValueError(f"--ids: unknown example ids: {', '.join(unknown)}")
        examples = [known[i] for i in wanted]
    return examples[:limit] if limit else examples


def _prompt_versions(prompts_dir: Path) -> dict[str, str]:
    from pipeline.prompting import FilePromptSource

    source = FilePromptSource(prompts_dir)
    names = [p.stem for p in sorted(prompts_dir.glob("*.md")) if p.stem.lower() != "readme"]
    return {name: source.get(name).version for name in names}


def _params(settings: Any, meta: dict[str, Any], judges: dict[str, Any]) -> dict[str, str]:
    params = {
        "model": settings.llm_model,
        "model_stage_a": settings.model_for("stage_a"),
        "model_stage_b": settings.model_for("stage_b"),
        "models_used": ",".join(meta["models"]["used"]) or "-",
        "prompts_dir": meta["prompts_dir"],
        "dataset": meta["dataset"]["path"],
        "dataset_sha256": meta["dataset"]["sha256"],
        "examples": str(meta["dataset"]["examples"]),
        "min_pass_rate": str(meta["min_pass_rate"]),
        "llm_judges": judges["model"] if judges["enabled"] else judges["reason"],
    }
    for name, version in meta["prompt_versions"].items():
        params[f"prompt_{name}"] = version
    return params


def _scorers(settings: Any, judges: dict[str, Any]) -> tuple[list[Any], list[str]]:
    from eval.judges import JUDGE_NAMES, build_judge_scorers, llm_ask, themes_text
    from eval.scorers import build_code_scorers

    scorers = build_code_scorers()
    if not judges["enabled"]:
        return scorers, []
    return scorers + build_judge_scorers(llm_ask(settings), themes_text(settings)), list(
        JUDGE_NAMES
    )


def main(args: argparse.Namespace) -> int:
    from eval import results as res
    from eval.dataset import DatasetError, load_dataset
    from eval.execute import Progress, recorded_deps, run_examples
    from eval.judges import judges_status
    from eval.tracking import CompareError, load_previous_results, record_eval_run
    from pipeline.errors import TechnoShareError
    from pipeline.prompting import PROMPTS_DIR
    from pipeline.settings import get_settings

    started = time.perf_counter()
    settings = get_settings()
    if getattr(args, "action", "run") == "add-from-feedback":
        from eval.from_feedback import main as add_from_feedback

        try:
            return add_from_feedback(args, settings)
        except (DatasetError, TechnoShareError, OSError) as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_CANNOT_RUN
    prompts_dir = (args.prompts_dir or PROMPTS_DIR).resolve()
    try:
        if not prompts_dir.is_dir():
            raise ValueError(f"--prompts-dir {prompts_dir}: not a directory")
        dataset = load_dataset(args.dataset)
        examples = _select(dataset, args.ids, args.limit)
        waiting = len(dataset.examples) - len(dataset.ready())
        if waiting:
            print(f"eval: {waiting} example(s) need review and are skipped", file=sys.stderr)
        previous = load_previous_results(settings, args.compare) if args.compare else None
        judges = judges_status(settings)
        with recorded_deps(
            settings, prompts_dir=args.prompts_dir, recorded_dir=args.recorded_dir
        ) as deps:
            print(f"eval: {len(examples)} examples, model {settings.llm_model}", file=sys.stderr)
            runs = run_examples(examples, deps, Progress(len(examples)))
        versions = _prompt_versions(prompts_dir)
    except (DatasetError, CompareError, TechnoShareError, ValueError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_CANNOT_RUN

    summary = res.summarize(runs)
    raw = Path(args.dataset).read_bytes()
    meta: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "path": str(args.dataset),
            "sha256": hashlib.sha256(raw).hexdigest()[:16],
            "examples": len(examples),
        },
        "prompts_dir": str(prompts_dir),
        "prompt_versions": versions,
        "models": {
            "configured": settings.llm_model,
            "stage_a": settings.model_for("stage_a"),
            "stage_b": settings.model_for("stage_b"),
            "used": sorted({m for r in runs for m in r.models}),
        },
        "min_pass_rate": args.min_pass_rate,
    }
    passed = summary["overall_pass_rate"] >= args.min_pass_rate
    meta["verdict"] = "passed" if passed else "failed"
    state: dict[str, Any] = {}

    def finish(
        run_id: str, judge_values: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, float], str]:
        meta["run_id"] = run_id
        meta["duration_seconds"] = round(time.perf_counter() - started, 2)
        doc = res.results_document(
            runs=runs,
            summary=summary,
            meta=meta,
            judges_status=judges,
            judge_values=judge_values,
        )
        comparison = None
        if previous is not None:
            doc["compared_to"] = args.compare
            comparison = doc["comparison"] = res.compare(doc, previous)
        state.update(doc=doc, comparison=comparison)
        metrics = res.run_metrics(summary, runs, meta["duration_seconds"])
        return doc, metrics, res.markdown_summary(doc, comparison)

    scorers, judge_names = _scorers(settings, judges)
    run_id = record_eval_run(
        settings,
        runs=runs,
        params=_params(settings, meta, judges),
        scorers=scorers,
        judge_names=judge_names,
        finish=finish,
        run_name=args.run_name or f"eval-{datetime.now(UTC):%Y%m%d-%H%M%S}",
    )
    doc, comparison = state["doc"], state["comparison"]
    print(res.console_table(doc))
    if comparison is not None:
        print()
        print(res.comparison_markdown(comparison, args.compare))
    if not judges["enabled"]:
        print(f"\nLLM judges: {judges['reason']}")
    if args.results_json:
        args.results_json.parent.mkdir(parents=True, exist_ok=True)
        args.results_json.write_text(
            json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8"
        )
    if args.summary_md:
        args.summary_md.parent.mkdir(parents=True, exist_ok=True)
        args.summary_md.write_text(res.markdown_summary(doc, comparison), encoding="utf-8")
    print(
        f"\npass rate {summary['overall_pass_rate']:.1%} ({summary['passed_examples']}/"
        f"{summary['total_examples']}), threshold {args.min_pass_rate:.0%}: "
        f"{'PASSED' if passed else 'FAILED'} · MLflow run {run_id} "
        f"(experiment {settings.mlflow_eval_experiment}) · {time.perf_counter() - started:.0f}s"
    )
    return EXIT_OK if passed else EXIT_BELOW_THRESHOLD


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="technoshare eval")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
