"""The offline model called directly by LLMClient: litellm is never imported on that path, and
the answer, usage and validation are those of the litellm provider it also is."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from pipeline import offline_model
from pipeline.errors import LLMUnavailableError
from pipeline.llm import LLMClient
from pipeline.stage_a import FactsAnswer
from tests.support.builders import make_article_evidence
from tests.support.llm import (
    PRIMARY,
    auth_error,
    llm_settings,
    offline_settings,
    stage_a_messages,
)
from tests.support.service import subprocess_env

_OFFLINE_JOB = textwrap.dedent(
    """
    import json, sys
    from pipeline.llm import LLMClient
    from pipeline.settings import Settings
    from pipeline.stage_a import run_stage_a
    from pipeline.stage_b import run_stage_b
    from pipeline.context import load_project_context
    from pipeline.prompting import FilePromptSource
    from tests.support.builders import make_article_evidence

    settings = Settings(llm_model="offline/extractive", mlflow_enable_tracking=False)
    llm, prompts = LLMClient(settings), FilePromptSource()
    evidence = make_article_evidence()
    facts = run_stage_a(evidence, llm=llm, prompts=prompts, settings=settings)
    commentary = run_stage_b(
        facts, evidence, context=load_project_context(settings=settings), llm=llm,
        prompts=prompts, settings=settings,
    )
    heavy = sorted(m for m in ("litellm", "openai") if m in sys.modules)
    print(json.dumps({"facts": len(facts.key_facts), "tldr": len(commentary.tldr),
                      "extractive": commentary.extractive, "heavy": heavy}))
    """
)


def test_an_offline_job_never_imports_litellm():
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_JOB],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["facts"] > 0 and out["tldr"] == 3 and out["extractive"]
    assert out["heavy"] == []


def test_direct_and_litellm_paths_give_the_same_answer_and_usage():
    import litellm

    messages = stage_a_messages(make_article_evidence())
    answer, usage = LLMClient(offline_settings()).complete_model("stage_a", messages, FactsAnswer)
    offline_model.register()
    response = litellm.completion(model=offline_model.MODEL, messages=messages)
    via_litellm = FactsAnswer.model_validate_json(response.choices[0].message.content)
    assert answer == via_litellm
    [call] = usage.calls
    assert (call.model, call.cost_usd, call.purpose) == (offline_model.MODEL, 0.0, "answer")
    assert call.input_tokens == response.usage.prompt_tokens
    assert call.output_tokens == response.usage.completion_tokens


def test_a_prompt_without_marker_is_a_permanent_error_on_the_direct_path():
    client = LLMClient(offline_settings())
    with pytest.raises(LLMUnavailableError, match="ANSWER-FORMAT"):
        client.complete_model("stage_a", [{"role": "user", "content": "hi"}], FactsAnswer)


def test_a_real_model_falling_back_to_offline_goes_through_litellm(scripted):
    scripted.script(PRIMARY, auth_error())
    settings = llm_settings(llm_fallback_models=[offline_model.MODEL])
    messages = stage_a_messages(make_article_evidence())
    answer, usage = LLMClient(settings).complete_model("stage_a", messages, FactsAnswer)
    assert answer.key_facts
    assert usage.model == offline_model.MODEL


_TRACKED_OFFLINE_RUN = textwrap.dedent(
    """
    import json, sys
    from services.run_cli import run

    result = run("https://github.com/encode/httpx", recorded=True)
    heavy = sorted(m for m in ("litellm", "openai") if m in sys.modules)
    print(json.dumps({"outcome": result.outcome.value, "heavy": heavy,
                      "mlflow": "mlflow" in sys.modules}))
    """
)


def test_a_tracked_offline_run_records_to_mlflow_without_importing_litellm(tmp_path):
    """LLM-call autologging is armed by an import hook: it costs nothing until litellm is
    imported, which only a real model does (an offline `technoshare run` was 8-18 s with it)."""
    env = subprocess_env()  # no MLFLOW_TRACKING_URI: the embedded default, sqlite in STATE_DIR
    env.update(STATE_DIR=str(tmp_path), MLFLOW_ENABLE_TRACKING="true",
               MLFLOW_ENABLE_TRACING="true", LLM_MODEL="offline/extractive")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", _TRACKED_OFFLINE_RUN], env=env, capture_output=True, text=True,
        timeout=180, check=True,
    )  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"outcome": "success", "heavy": [], "mlflow": True}
    from tests.support.mlflow_server import client_and_experiment

    db = next(tmp_path.rglob("*.db"))
    client, experiment = client_and_experiment(f"sqlite:///{db}")
    runs = client.search_runs([experiment])
    assert len(runs) == 6  # the parent and one nested run per stage: recorded all the same
