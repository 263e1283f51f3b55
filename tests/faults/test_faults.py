"""The fault scenarios as pytest tests (marker ``faults``; the CI subset also ``fast``, the
others ``faults_full``, deselected by default). ``python -m tests.faults`` runs the same ones."""

from __future__ import annotations

import pytest

from tests.faults.harness import execute
from tests.faults.scenarios import SCENARIOS, Resources


@pytest.fixture(scope="session")
def fault_resources(tmp_path_factory):
    resources = Resources(tmp_path_factory.mktemp("fault-shared"))
    yield resources
    resources.close()


def _param(scenario):
    marks = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(scenario.bound_s + 30)]
    marks.append(pytest.mark.fast if scenario.fast else pytest.mark.faults_full)
    if scenario.name.startswith("mlflow_"):
        marks.append(pytest.mark.mlflow_server)
    return pytest.param(scenario, id=scenario.name, marks=marks)


@pytest.mark.parametrize("scenario", [_param(s) for s in SCENARIOS])
def test_fault_scenario(scenario, fault_resources, tmp_path):
    result = execute(scenario, fault_resources, tmp_path)
    print(result.as_dict())
    assert result.ok, f"{result.error}\n{result.as_dict()}"
    assert result.posted_twice == 0 or scenario.documented_bound
    assert result.lost == 0 or scenario.documented_bound
