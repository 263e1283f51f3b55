"""``technoshare prompts sync``: register each ``prompts/*.md`` template in MLflow's Prompt
Registry when its text changed, and point the alias (``production`` by default) at it.

For each template: compare its text with the registry's ``@latest`` first (registering identical
text would create a new version anyway); register a new version only when it differs, tagged
with the content hash; move the alias to the latest version; and for a new version log a run
``prompt-sync-<name>`` (tags ``run_kind=prompt_sync``, ``prompt_name``, ``content_hash``,
``prompt_version``; the text as artifact ``prompt.md``). Prints one line per template:

    stage_a_system  hash=3f9a0c1d2b4e  version=4  registered  alias production -> 4
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.prompting import PROMPTS_DIR
from pipeline.settings import Settings, get_settings

EXIT_OK, EXIT_ERROR = 0, 1


def content_hash(text: str) -> str:
    """The same 12 hex digits as the file version (``file:<hash>``) of pipeline.prompting."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class SyncResult:
    name: str
    content_hash: str
    version: int
    registered: bool
    alias: str

    def line(self) -> str:
        state = "registered" if self.registered else "unchanged"
        return (
            f"{self.name}  hash={self.content_hash}  version={self.version}  {state}  "
            f"alias {self.alias} -> {self.version}"
        )


def _latest(client: Any, name: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.load_prompt(f"prompts:/{name}@latest", allow_missing=True)
    except MlflowException as exc:  # an unknown prompt is "nothing registered yet"
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        raise


def _log_sync_run(client: Any, experiment_id: str, result: SyncResult, text: str) -> None:
    run = client.create_run(
        experiment_id,
        tags={
            "mlflow.runName": f"prompt-sync-{result.name}",
            "run_kind": "prompt_sync",
            "prompt_name": result.name,
            "content_hash": result.content_hash,
            "prompt_version": str(result.version),
        },
    )
    client.log_text(run.info.run_id, text, "prompt.md")
    client.set_terminated(run.info.run_id, "FINISHED")


def sync_prompt(client: Any, experiment_id: str, path: Path, alias: str) -> SyncResult:
    name, text = path.stem, path.read_text(encoding="utf-8")
    digest = content_hash(text)
    latest = _latest(client, name)
    if latest is not None and latest.template == text:
        result = SyncResult(name, digest, int(latest.version), False, alias)
    else:
        version = client.register_prompt(
            name,
            text,
            commit_message=f"technoshare prompts sync ({digest})",
            tags={"content_hash": digest, "source": f"prompts/{path.name}"},
        )
        result = SyncResult(name, digest, int(version.version), True, alias)
        _log_sync_run(client, experiment_id, result, text)
    client.set_prompt_alias(name, alias, result.version)
    return result


def sync_all(settings: Settings, directory: Path, alias: str | None = None) -> list[SyncResult]:
    from observability.mlflow_store import MlflowStore

    store = MlflowStore(settings)  # the store alone: the CLI needs no writer, ledger or probe
    client, experiment_id = store.client(), store.experiment_id()
    alias = alias or settings.mlflow_prompt_alias
    return [sync_prompt(client, experiment_id, p, alias) for p in sorted(directory.glob("*.md"))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["sync"], help="sync: register changed templates")
    parser.add_argument("--dir", type=Path, default=PROMPTS_DIR, help="templates (*.md)")
    parser.add_argument("--alias", default=None, help="alias to move (MLFLOW_PROMPT_ALIAS)")


def main(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.mlflow_enable_tracking:
        print("MLflow tracking is disabled (MLFLOW_ENABLE_TRACKING=false)", file=sys.stderr)
        return EXIT_ERROR
    try:
        results = sync_all(settings, Path(args.dir), args.alias)
    except Exception as exc:
        uri = settings.effective_tracking_uri()
        print(f"prompts sync failed against {uri}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not results:
        print(f"no templates (*.md) in {args.dir}", file=sys.stderr)
        return EXIT_ERROR
    for result in results:
        print(result.line())
    return EXIT_OK
