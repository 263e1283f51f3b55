"""The evaluation dataset: its shape, its spread, and that it is grounded in the recorded sources."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest

from eval.dataset import (
    DEFAULT_DATASET,
    DatasetError,
    load_dataset,
    missing_must_mention,
    parse_dataset,
    recorded_text,
)


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(DEFAULT_DATASET.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dataset():
    return load_dataset()


def test_dataset_has_enough_examples_spread_over_kinds(dataset):
    assert len(dataset.examples) >= 24
    kinds = Counter(e.kind for e in dataset.examples)
    assert set(kinds) == {"arxiv", "github", "page"}
    assert min(kinds.values()) >= 7, kinds


def test_dataset_covers_a_non_english_page_and_edge_cases(dataset):
    assert any(e.kind == "page" and e.language != "en" for e in dataset.examples)
    assert sum("edge-case" in e.tags for e in dataset.examples) >= 2


def test_every_example_is_a_realistic_slack_message(dataset):
    for e in dataset.examples:
        assert e.url in e.message_text
        assert f"<{e.url}" in e.message_text, e.id  # Slack wraps links as <url> or <url|label>


@pytest.mark.parametrize("example", load_dataset().examples, ids=lambda e: e.id)
def test_must_mention_terms_occur_in_the_recorded_source(example):
    assert recorded_text(example.recorded).strip(), example.id
    assert missing_must_mention(example) == []


def test_a_term_absent_from_the_source_is_reported(dataset):
    example = dataset.examples[0].model_copy(update={"must_mention": ["zzqx-not-in-source"]})
    assert missing_must_mention(example) == ["zzqx-not-in-source"]


def test_malformed_example_error_names_example_and_field(raw):
    broken = copy.deepcopy(raw)
    broken["examples"][3]["must_mention"] = []
    with pytest.raises(DatasetError) as err:
        parse_dataset(broken)
    name = raw["examples"][3]["id"]
    assert f"example '{name}' (#3)" in str(err.value)
    assert "must_mention" in str(err.value)


def test_unknown_field_is_rejected(raw):
    broken = copy.deepcopy(raw)
    broken["examples"][0]["expected_theme"] = "typo of expected_themes"
    with pytest.raises(DatasetError, match=r"field 'expected_theme'.*[Ee]xtra"):
        parse_dataset(broken)


def test_duplicate_ids_and_foreign_urls_are_rejected(raw):
    dup = copy.deepcopy(raw)
    dup["examples"][1]["id"] = dup["examples"][0]["id"]
    with pytest.raises(DatasetError, match="duplicate id"):
        parse_dataset(dup)
    foreign = copy.deepcopy(raw)
    foreign["examples"][2]["message_text"] = "no link here"
    with pytest.raises(DatasetError, match=r"#2\).*message_text"):
        parse_dataset(foreign)


def test_missing_file_and_bad_json_are_clear(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_dataset(bad)


def test_expected_themes_are_the_project_context_themes(dataset):
    from pipeline.context import load_project_context
    from pipeline.gates import GENERAL_THEME

    names = set(load_project_context().theme_names()) | {GENERAL_THEME}
    for e in dataset.examples:
        assert set(e.expected_themes) <= names, (e.id, set(e.expected_themes) - names)
    used = {t for e in dataset.examples for t in e.expected_themes}
    assert len(used - {GENERAL_THEME}) >= 5, "the dataset should exercise most team themes"
