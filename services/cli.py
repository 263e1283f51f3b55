"""The ``technoshare`` command. Each subcommand imports its implementation lazily so that a
quick ``technoshare --help`` (or the ingest process) never pays for mlflow or litellm.

Exit codes: 0 success, 1 error (one-line reason on stderr), 2 usage, 3 gate_failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from pipeline.offline import apply_offline_defaults

apply_offline_defaults()  # litellm must not fetch its price list, MLflow must not phone home

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATE_FAILED = 0, 1, 2, 3

# subcommand -> ("module:function", help). The function takes the parsed args and returns an
# exit code; each module also exposes ``add_arguments(parser)``.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("services.run_cli:main", "Run the whole pipeline in-process on one link."),
    "demo": ("services.demo:main", "Run recorded links through the real Celery chain, offline."),
    "reprocess": (
        "services.reprocess_cli:main",
        "Re-run a job by id, replying in the same thread.",
    ),
    "ingest": ("services.ingest:main", "Serve the Slack Events API (or Socket Mode)."),
    "dev-stack": (
        "services.dev_stack:main",
        "Start redis, mlflow, workers, ingest and flower locally.",
    ),
    "prompts": ("prompts.sync:main", "Prompt registry: `prompts sync`."),
    "doctor": ("services.doctor:main", "Check MLflow, Redis, workers, Slack and the LLM."),
    "eval": ("eval.runner:main", "Run the evaluation suite."),
    "report": ("eval.report:main", "Write the offline HTML quality report."),
    "digest": ("services.digest:main", "Print (or post) a channel's links of the last N days."),
}


def _load(target: str) -> tuple[Callable[[argparse.Namespace], int], Callable[..., None] | None]:
    module_name, func_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, func_name), getattr(module, "add_arguments", None)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="technoshare",
        description="TechnoShare Commentator: evidence-grounded commentary on shared tech links.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (target, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text)
        if name == wanted:  # only import the module of the command actually run
            _, add_arguments = _load(target)
            if add_arguments is not None:
                add_arguments(sp)
    return parser


def configure_logging() -> None:
    """Warnings and errors on stderr, every line through the secret redaction filter (a
    provider error can echo an API key; a URL setting can carry a password)."""
    import logging

    from pipeline.redact import install_log_redaction
    from pipeline.settings import get_settings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        install_log_redaction(get_settings())
    except Exception as exc:  # noqa: BLE001 - e.g. a settings error, reported by the command
        logging.getLogger(__name__).debug("log redaction not installed: %s", exc)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    configure_logging()
    func, _ = _load(COMMANDS[args.command][0])
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
