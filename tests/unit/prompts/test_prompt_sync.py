"""``technoshare prompts sync`` and the registry-backed prompt source, on a real MLflow store
(local sqlite: the Prompt Registry behaves the same there as behind a server)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.cli import main as cli


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    recorder = install_recorder_for_environment()
    yield uri
    recorder.close()


def install_recorder_for_environment():
    """What a worker does at start: the recorder for its settings (the registry source reads
    the store through the installed recorder)."""
    from observability.setup import configure
    from pipeline.settings import get_settings, reset_settings_cache

    reset_settings_cache()
    return configure(get_settings())


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    d = tmp_path / "prompts"
    d.mkdir()
    (d / "alpha.md").write_text("Summarize {{evidence}} in {{n}} sentences.\n")
    (d / "beta.md").write_text("Comment on {{facts}}.\n")
    return d


def sync(templates: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, str]:
    assert cli(["prompts", "sync", "--dir", str(templates), *extra]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return {line.split()[0]: line for line in lines}


def test_changed_prompt_gets_a_new_version_unchanged_does_not(store, templates, capsys) -> None:
    from mlflow import MlflowClient

    first = sync(templates, capsys)
    alpha_hash = hashlib.sha256((templates / "alpha.md").read_bytes()).hexdigest()[:12]
    assert f"hash={alpha_hash}" in first["alpha"]
    assert "version=1  registered  alias production -> 1" in first["alpha"]
    assert "version=1  registered" in first["beta"]

    again = sync(templates, capsys)
    assert "version=1  unchanged" in again["alpha"] and "version=1  unchanged" in again["beta"]

    (templates / "alpha.md").write_text("Summarize {{evidence}} in at most {{n}} sentences.\n")
    changed = sync(templates, capsys)
    assert "version=2  registered  alias production -> 2" in changed["alpha"]
    assert "version=1  unchanged" in changed["beta"]

    client = MlflowClient(tracking_uri=store)
    assert client.load_prompt("prompts:/alpha@production").template.startswith(
        "Summarize {{evidence}} in at most"
    )
    assert client.load_prompt("prompts:/alpha@production").version == 2
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="not found"):  # no identical second version
        client.get_prompt_version("beta", 2)
    exp = client.get_experiment_by_name("technoshare_commentator")
    runs = client.search_runs([exp.experiment_id], "tags.run_kind = 'prompt_sync'")
    assert sorted((r.data.tags["prompt_name"], r.data.tags["prompt_version"]) for r in runs) == [
        ("alpha", "1"),
        ("alpha", "2"),
        ("beta", "1"),
    ]
    alpha2 = next(r for r in runs if r.data.tags["prompt_version"] == "2")
    text = Path(client.download_artifacts(alpha2.info.run_id, "prompt.md")).read_text()
    assert text == (templates / "alpha.md").read_text()
    assert alpha2.data.tags["content_hash"] == hashlib.sha256(text.encode()).hexdigest()[:12]


def test_alias_option_moves_another_alias(store, templates, capsys) -> None:
    from mlflow import MlflowClient

    sync(templates, capsys)
    out = sync(templates, capsys, "--alias", "staging")
    assert "alias staging -> 1" in out["alpha"]
    assert MlflowClient(tracking_uri=store).load_prompt("prompts:/alpha@staging").version == 1


def test_registry_source_serves_the_alias_and_names_the_version(store, templates, capsys):
    from pipeline.prompting import FilePromptSource
    from prompts.registry_source import RegistryPromptSource

    sync(templates, capsys)
    (templates / "alpha.md").write_text("Edited locally, not synced: {{evidence}}\n")
    source = RegistryPromptSource(fallback=FilePromptSource(templates))
    alpha = source.get("alpha")
    assert alpha.version == "1"
    assert alpha.text == "Summarize {{evidence}} in {{n}} sentences.\n"
    assert source.get("alpha") is alpha  # cached


def test_a_prompt_not_registered_comes_from_the_file_and_mlflow_stays_up(store, templates):
    from observability.recorder import get_recorder
    from pipeline.prompting import FilePromptSource, file_version
    from prompts.registry_source import RegistryPromptSource

    rt = get_recorder().runtime
    assert rt.health.check_now()
    source = RegistryPromptSource(fallback=FilePromptSource(templates))
    beta = source.get("beta")  # nothing registered in this store
    assert beta.version == file_version(beta.text)
    assert rt.health.available() and rt.health.outages == 0  # absent is not an outage


def test_registry_source_falls_back_to_files_when_mlflow_is_unreachable(
    templates, tmp_path, monkeypatch
) -> None:
    from pipeline.prompting import FilePromptSource, file_version
    from prompts.registry_source import RegistryPromptSource
    from tests.support.service import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    recorder = install_recorder_for_environment()
    try:
        source = RegistryPromptSource(fallback=FilePromptSource(templates))
        beta = source.get("beta")
        assert beta.text == "Comment on {{facts}}.\n"
        assert beta.version == file_version(beta.text)
        assert source.get("alpha").version.startswith("file:")
    finally:
        recorder.close()


def test_unreachable_tracking_server_fails_with_one_line(templates, monkeypatch, capsys) -> None:
    from tests.support.service import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    assert cli(["prompts", "sync", "--dir", str(templates)]) == 1
    err = capsys.readouterr().err
    assert "prompts sync failed against http://127.0.0.1:" in err
