"""nlp_maintenance: gc on the local platform's root with its registry, skipped until a model was registered."""

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import AirflowSkipException  # noqa: E402
from nlp_pipeline import maintenance  # noqa: E402

from tasks import cli  # noqa: E402


@pytest.fixture
def recorded(monkeypatch):
    ran = []
    monkeypatch.setattr(maintenance, "run_step", lambda *command: ran.append([str(part) for part in command]))
    return ran


def test_nothing_is_collected_before_a_model_was_registered(monkeypatch, tmp_path, recorded):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    with pytest.raises(AirflowSkipException, match="no registry at .*registry.sqlite yet"):
        maintenance.collect_garbage.function()
    assert recorded == []


def test_gc_gets_the_local_root_and_its_registry(monkeypatch, tmp_path, recorded):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    (tmp_path / "registry.sqlite").touch()
    maintenance.collect_garbage.function()
    [[step, *flags]] = recorded
    arguments = cli.parse(step, flags)
    assert (arguments.root, arguments.workspace) == (str(tmp_path), "")
    assert str(tmp_path / "registry.sqlite") in str(arguments.registries)
    assert arguments.dag_ids() == ["nlp_local"], "its registry names the local DAG's models only"


def test_a_remote_root_has_its_workspace_collected_too(monkeypatch, tmp_path, recorded):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/root")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    (tmp_path / "nlp-artefacts").mkdir()
    (tmp_path / "nlp-artefacts" / "registry.sqlite").touch()
    maintenance.collect_garbage.function()
    [[step, *flags]] = recorded
    arguments = cli.parse(step, flags)
    assert (arguments.root, arguments.workspace) == ("s3://bucket/root", str(tmp_path / "nlp-workspace"))
    assert arguments.dag_ids() == ["nlp_local"], "the EKS and SageMaker DAGs' models on the shared root stay"
