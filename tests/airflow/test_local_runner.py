"""How the local platform runs a step: output into the task log, bad input not retried, the rest retried; each try
writes a folder of its own, and a retry reuses an earlier try's finished output."""

import logging
import sys
from pathlib import Path

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline.operators.local import run_step, run_step_json  # noqa: E402


def test_a_step_streams_its_output_and_returns_its_last_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nlp_pipeline.steps")
    assert run_step_json("registry", "--registry", tmp_path / "registry.sqlite", "--action", "production") is None
    assert any("python -m tasks registry --registry" in record.message for record in caplog.records)


def test_a_bad_flag_fails_at_once_without_retries(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"registry failed on a bad flag, not retried: .*--action"):
        run_step("registry", "--registry", tmp_path / "r.sqlite", "--action", "explode")


def test_bad_data_fails_at_once_without_retries(tmp_path, minilm_path):
    from airflow.sdk.exceptions import AirflowFailException

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n7\t1\t2\ta\tb\n")
    with pytest.raises(AirflowFailException, match="failed on bad data"):
        run_step("stage", "--source", tmp_path / "raw", "--output", tmp_path / "staged", "--tokenizer", minilm_path)


def test_other_failures_are_retried(tmp_path):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException, match="rollback exited with 1: .*no endpoint runs from") as raised:
        run_step("rollback", "--state", tmp_path / "nothing")
    assert not isinstance(raised.value, AirflowFailException)


# ---- the local tasks: one folder per try, and a retry reuses finished work ------------------------------------------
STAGED = {"data": "/staged/try1", "uri": "/staged/try1", "fingerprint": "sha256:0f"}


def train_context(try_number: int = 1, run_id: str = "scheduled__2026-05-01T00:00:00+00:00", **params) -> dict:
    from nlp_pipeline.params import local_params, pipeline_params

    defaults = {name: param.value for name, param in (pipeline_params() | local_params()).items()}
    return task_context(
        "nlp_local",
        "train",
        defaults | params,
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id=run_id,
        try_number=try_number,
    )


@pytest.fixture
def fake_train(tmp_path, monkeypatch) -> list[list[str]]:
    """The train step as it writes its --output (whole and sealed), on a local root with no production model;
    the commands it ran."""
    from nlp_pipeline import local

    from tasks.runtime.outputs import atomic_output

    ran = []

    def run_step(step, *flags):
        flags = [str(flag) for flag in flags]
        ran.append([step, *flags])
        with atomic_output(flags[flags.index("--output") + 1]) as work:
            (work / "saved_model").mkdir()
            (work / "saved_model" / "weights").write_text(f"trained by command {len(ran)}")
            (work / "metrics.json").write_text('{"accuracy": 0.9}')

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr(local, "production_model", lambda context=None: None)
    monkeypatch.setattr(local, "run_step", run_step)
    return ran


def test_a_retried_train_reuses_the_finished_model_instead_of_training_again(fake_train, monkeypatch, caplog):
    from nlp_pipeline import artefacts, local

    from tasks.runtime import digest

    publish = artefacts.publish

    def failing_upload(context, step, folder):
        if context["ti"].try_number == 1:
            raise OSError("the upload failed")
        return publish(context, step, folder)

    monkeypatch.setattr(artefacts, "publish", failing_upload)
    with pytest.raises(OSError, match="the upload failed"):
        local.train.function(STAGED, **train_context(1))
    caplog.set_level(logging.INFO, logger="nlp_pipeline.artefacts")
    trained = local.train.function(STAGED, **train_context(2))

    assert len(fake_train) == 1, "trained once"
    assert trained["model"] == trained["uri"] and trained["model"].endswith("/nlp_local/20260501T000000Z/model/try1")
    assert f"reusing try1's output (digest {digest.verify(trained['model'])})" in caplog.text
    assert trained["metrics"] == {"accuracy": 0.9}
    assert "--checkpoint-dir" in fake_train[0], "a failed try's checkpoints are where the next try looks"


def test_a_rerun_of_train_keeps_the_production_bytes_and_writes_a_folder_of_its_own(fake_train):
    from nlp_pipeline import local

    from tasks.runtime import digest

    production = local.train.function(STAGED, **train_context(1))
    registered = digest.verify(production["model"])  # what the registry entry records
    rerun = local.train.function(STAGED, **train_context(1, run_id="backfill__2026-05-01T00:00:00+00:00"))

    assert len(fake_train) == 2 and rerun["model"] != production["model"]
    assert digest.verify(production["model"], registered) == registered, "the production bytes are unchanged"
    assert Path(production["model"], "saved_model", "weights").read_text() == "trained by command 1"
    assert Path(rerun["model"], "saved_model", "weights").read_text() == "trained by command 2"


def test_the_local_deploy_hands_the_registry_entrys_digest_to_deploy_local(tmp_path, monkeypatch):
    from nlp_pipeline import local

    from tasks import cli

    digest = "sha256:" + "a" * 64
    entry = {"id": 1, "model": str(tmp_path / "model" / "try1"), "version": "fp32-aaaa", "digest": digest}
    ran = []
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    monkeypatch.setattr(local, "run_step", lambda *command: ran.append([str(part) for part in command]))
    monkeypatch.setattr(
        local, "run_step_json", lambda *command: {"url": "http://127.0.0.1:1", "current": {"version": "fp32-aaaa"}}
    )
    local.deploy.function(entry, **train_context())

    [(step, *flags)] = ran
    arguments = cli.parse(step, flags)
    assert step == "deploy-local" and (arguments.model, arguments.model_digest) == (entry["model"], digest)
