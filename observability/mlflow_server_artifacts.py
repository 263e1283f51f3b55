"""A run's small text artifacts, written by the ``technoshare`` server app itself: to the
artifact repository MLflow's own server writes uploads to, at the path it would give them.

Only runs whose artifact URI this server serves (``mlflow-artifacts:``, no host) get them this
way; the client uploads the others itself (``observability/mlflow_batch.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import posixpath
import shutil
import tempfile
import threading


def served(artifact_uri: str) -> bool:
    """This server writes the artifacts behind the URI itself (``mlflow-artifacts:``, no host)."""
    from urllib.parse import urlparse

    from mlflow.server.handlers import _is_serving_proxied_artifacts

    parsed = urlparse(artifact_uri)
    return (
        parsed.scheme == "mlflow-artifacts"
        and not parsed.netloc
        and bool(_is_serving_proxied_artifacts())
    )


class _Staging(threading.local):
    """A directory of this thread's own for the files ``log_artifact`` copies from, made once:
    a temporary directory per write (mkdtemp, a folder per file, rmtree) was a tenth of a
    stage write's server CPU. Removed with the process."""

    path = ""

    def folder(self) -> str:
        if not self.path or not os.path.isdir(self.path):
            self.path = tempfile.mkdtemp(prefix="ts-runs-write-")
            atexit.register(shutil.rmtree, self.path, True)
        return self.path


_staging = _Staging()


def write_texts(artifact_uri: str, texts: dict[str, str]) -> None:
    """As ``PUT /mlflow-artifacts/artifacts/<path>`` stores an upload: same path, same repo
    (the repository copies a local file whose base name is the artifact's)."""
    from mlflow.server.handlers import (
        _get_artifact_repo_mlflow_artifacts,
        _get_proxied_run_artifact_destination_path,
        _get_workspace_scoped_repo_path_if_enabled,
    )
    from mlflow.utils.uri import validate_path_is_safe

    repo = _get_artifact_repo_mlflow_artifacts()
    folder = _staging.folder()
    for name, text in texts.items():
        path = _get_proxied_run_artifact_destination_path(artifact_uri, name)
        path = _get_workspace_scoped_repo_path_if_enabled(validate_path_is_safe(path))
        head, tail = posixpath.split(str(path))
        local = os.path.join(folder, tail)
        try:
            with open(local, "wb") as out:
                out.write(text.encode("utf-8"))
            repo.log_artifact(local, artifact_path=head or None)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
