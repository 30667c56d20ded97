"""nlp_maintenance: gc on the local platform's root with its registry, skipped until a model was registered; a try
a retry reuses is kept."""

import os
import sys
import time

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import AirflowSkipException  # noqa: E402
from nlp_pipeline import artefacts, maintenance  # noqa: E402

from tasks import cli  # noqa: E402
from tasks.config import GcArguments  # noqa: E402
from tasks.endpoint.registry import Registry  # noqa: E402
from tasks.runtime import digest, housekeeping  # noqa: E402
from tests.airflow.test_artefacts import TRAIN, context  # noqa: E402


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
    assert arguments.dag_ids() == ["nlp_local", "nlp_monitor_local"], "its registry names the local DAG's models only"


def test_a_remote_root_has_its_workspace_collected_too(monkeypatch, tmp_path, recorded):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/root")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    (tmp_path / "nlp-artefacts").mkdir()
    (tmp_path / "nlp-artefacts" / "registry.sqlite").touch()
    maintenance.collect_garbage.function()
    [[step, *flags]] = recorded
    arguments = cli.parse(step, flags)
    assert (arguments.root, arguments.workspace) == ("s3://bucket/root", str(tmp_path / "nlp-workspace"))
    assert arguments.dag_ids() == ["nlp_local", "nlp_monitor_local"], "the EKS and SageMaker DAGs' models stay"


def test_a_reused_try_is_kept_by_gc_however_old_it_was(monkeypatch, tmp_path, capsys):
    """A retry reusing an old try (artefacts.reusable_output) refreshes its age, so gc, running meanwhile, keeps
    what the rest of the run is about to read."""
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    output = artefacts.claim_try(context(1), "model", TRAIN)
    (output / "saved_model").mkdir(parents=True)
    (output / "saved_model" / "saved_model.pb").write_bytes(b"x")
    digest.seal(output)
    old = time.time() - 30 * 86400
    for path in [*output.rglob("*"), output, output.with_name("try1.command.json")]:
        os.utime(path, (old, old))
    Registry(tmp_path / "registry.sqlite")

    assert artefacts.reusable_output(context(2), "model", TRAIN) == output
    housekeeping.run(GcArguments(root=str(tmp_path), dags="nlp_local"))
    assert digest.sealed(output), f"reused, so kept: {capsys.readouterr().out}"
