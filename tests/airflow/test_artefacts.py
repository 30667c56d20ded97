"""Where a run's artefacts go: one new folder per DAG, logical date, step and try, never rewritten; on S3 one
upload per try, switched to atomically."""

import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException

from tasks.runtime import digest
from tasks.runtime.outputs import atomic_output
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import artefacts  # noqa: E402


def context(try_number: int = 1, run_id: str = "scheduled__2025-01-01T00:00:00+00:00") -> dict:
    logical_date = pendulum.datetime(2025, 1, 1, tz="UTC")
    return {
        "run_id": run_id,
        "dag": SimpleNamespace(dag_id="nlp_local"),
        "ti": SimpleNamespace(try_number=try_number),
        "dag_run": SimpleNamespace(logical_date=logical_date, run_after=logical_date),
    }


TRAIN = ["train", "--data", "/staged/try1", "--epochs", "3"]


def test_a_local_root_keys_artefacts_by_dag_logical_date_step_and_try(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    step = tmp_path / "nlp_local" / "20250101T000000Z" / "model"
    assert artefacts.claim_try(context(3), "model", TRAIN) == step / "try3"
    assert json.loads((step / "try3.command.json").read_text()) == {
        "run_id": "scheduled__2025-01-01T00:00:00+00:00",
        "command": TRAIN,
    }, "the command is recorded before the step runs"
    assert artefacts.publish(context(3), "model", step / "try3") == str(step / "try3"), "XCom names the exact try"


def write_model(folder: Path, weights: bytes) -> str:
    """What a step does with its --output: write it whole, sealed with its digest (tasks.runtime.outputs)."""
    with atomic_output(folder) as work:
        (work / "saved_model").mkdir()
        (work / "saved_model" / "weights").write_bytes(weights)
    return digest.sealed(folder)


@pytest.mark.parametrize(
    "rerun",
    [context(2), context(1, run_id="backfill__2025-01-01T00:00:00+00:00")],
    ids=["the next try of the run", "a re-created run of the interval, at try 1 again"],
)
def test_a_rerun_keeps_the_production_bytes_and_writes_a_folder_of_its_own(tmp_path, monkeypatch, rerun):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    production = artefacts.claim_try(context(1), "model", TRAIN)
    registered = write_model(production, b"production")  # the folder and digest a registry entry names

    retrained = artefacts.claim_try(rerun, "model", [*TRAIN[:-1], "4"])
    write_model(retrained, b"retrained")

    assert retrained != production and retrained.parent == production.parent
    assert digest.verify(production, registered) == registered, "the registered bytes are unchanged"
    assert (production / "saved_model" / "weights").read_bytes() == b"production"
    assert (retrained / "saved_model" / "weights").read_bytes() == b"retrained"


def test_a_step_folder_of_the_one_folder_per_run_layout_is_never_written_into(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    old = tmp_path / "nlp_local" / "20250101T000000Z" / "model"
    registered = write_model(old, b"an old production model")
    with pytest.raises(AirflowFailException, match=r"model is an artefact of the one-folder-per-run layout.*move it"):
        artefacts.claim_try(context(2), "model", TRAIN)
    assert digest.verify(old, registered) and sorted(path.name for path in old.iterdir()) == [".digest", "saved_model"]


def reused(run: dict, command: list[str] = TRAIN) -> Path | None:
    return artefacts.reusable_output(run, "model", command)


def test_a_retry_reuses_an_earlier_try_of_the_same_run_and_command_that_is_complete_and_verifies(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    assert reused(context(1)) is None, "nothing written yet"
    unfinished = artefacts.claim_try(context(1), "model", TRAIN)  # its step failed before sealing
    (unfinished / "saved_model").mkdir(parents=True)
    assert reused(context(2)) is None, "not sealed: not complete"

    finished = artefacts.claim_try(context(2), "model", TRAIN)
    sealed = write_model(finished, b"weights")
    caplog.set_level(logging.INFO, logger="nlp_pipeline.artefacts")
    assert reused(context(3)) == finished
    assert f"reusing try2's output (digest {sealed})" in caplog.text
    assert reused(context(3), [*TRAIN[:-1], "4"]) is None, "another command"
    assert reused(context(1, run_id="manual__2025-01-02")) is None, "another run of the interval"

    (finished / "saved_model" / "weights").write_bytes(b"changed after sealing")
    assert reused(context(3)) is None, "its digest no longer verifies"
    assert f"not reusing try2's output: {finished}: the content digest is" in caplog.text


def test_a_rerun_on_s3_switches_to_its_complete_upload_in_one_put(tmp_path, monkeypatch, s3):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", f"s3://{s3['bucket']}/root/")
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, weights in [(first, b"old"), (second, b"new")]:
        (folder / "variables").mkdir(parents=True)
        (folder / "variables" / "weights").write_bytes(weights)
        (folder / "config.json").write_text("{}")
    (first / "only-in-the-first").write_text("stale")

    old = artefacts.publish(context(1), "model", first)
    new = artefacts.publish(context(2), "model", second)

    prefix = "root/nlp_local/20250101T000000Z/model"
    assert old.startswith(f"s3://{s3['bucket']}/{prefix}/") and old.endswith("-try1")
    assert new.startswith(f"s3://{s3['bucket']}/{prefix}/") and new.endswith("-try2") and new != old
    read = lambda key: s3["client"].get_object(Bucket=s3["bucket"], Key=key)["Body"].read()  # noqa: E731
    new_upload, old_upload = new.rsplit("/", 1)[1], old.rsplit("/", 1)[1]
    assert read(f"{prefix}/LATEST").decode() == new_upload
    assert read(f"{prefix}/{new_upload}/variables/weights") == b"new"
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix=f"{prefix}/{new_upload}/")["Contents"]
    assert sorted(key["Key"].rsplit(f"{new_upload}/", 1)[1] for key in listed) == ["config.json", "variables/weights"]
    assert read(f"{prefix}/{old_upload}/variables/weights") == b"old", "a URI handed on earlier stays valid"
