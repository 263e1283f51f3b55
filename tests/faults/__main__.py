"""``python -m tests.faults [--fast] [--only NAME[,NAME]] [--json out.json]``: run the fault
scenarios (all, or the CI subset with ``--fast``) one at a time and print the table.

The environment is made hermetic first, exactly as the test suite's (tests/conftest.py), so no
``.env``, no real Slack, model or MLflow is ever reached. Exit status 1 when a scenario fails.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

import tests.conftest  # noqa: F401  (the hermetic environment, before anything else is imported)


class ScenarioTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise ScenarioTimeout("the scenario's hard time bound passed")


def main(argv: list[str] | None = None) -> int:
    from tests.faults.harness import Result, dump, execute, table
    from tests.faults.scenarios import BY_NAME, SCENARIOS, Resources

    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--fast", action="store_true", help="only the CI subset")
    parser.add_argument(
        "--only", action="append", default=[], help="scenario name(s), comma-separated"
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)

    chosen = [s for s in SCENARIOS if s.fast or not args.fast]
    if args.only:
        names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
        chosen = [s for s in chosen if s.name in names]
    if args.list:
        for s in chosen:
            print(f"{s.name:24} {'fast' if s.fast else 'full':5} {s.fault}")
        return 0

    root = Path(tempfile.mkdtemp(prefix="technoshare-faults-"))
    resources = Resources(root / "shared")
    results: list[Result] = []
    signal.signal(signal.SIGALRM, _alarm)
    try:
        for scenario in chosen:
            print(f"== {scenario.name}: {scenario.fault}", flush=True)
            tmp = root / scenario.name
            tmp.mkdir()
            signal.setitimer(signal.ITIMER_REAL, scenario.bound_s)
            try:
                result = execute(scenario, resources, tmp)
            except ScenarioTimeout as exc:
                result = Result(scenario.name, scenario.fault, jobs=scenario.jobs, error=str(exc))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            results.append(result)
            print(
                f"   {'ok' if result.ok else 'FAIL'} in {result.duration_s:.0f} s: "
                f"once {result.posted_once}, twice {result.posted_twice}, "
                f"lost {result.lost}, statuses {result.statuses}, recovery {result.recovery_s} s"
                + (f", {result.extra}" if result.extra else "")
                + (f"\n   {result.error}" if result.error else ""),
                flush=True,
            )
            if args.json:
                dump(results, args.json)
    finally:
        resources.close()
    print()
    print(table(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
