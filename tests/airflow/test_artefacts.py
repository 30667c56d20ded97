"""Where a run's artefacts go: one folder per DAG and logical date, replaced atomically on S3 too."""

import sys
from types import SimpleNamespace

import pendulum

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import artefacts  # noqa: E402


def context(try_number: int = 1) -> dict:
    logical_date = pendulum.datetime(2025, 1, 1, tz="UTC")
    return {
        "dag": SimpleNamespace(dag_id="nlp_local"),
        "ti": SimpleNamespace(try_number=try_number),
        "dag_run": SimpleNamespace(logical_date=logical_date, run_after=logical_date),
    }


def test_a_local_root_keys_artefacts_by_dag_and_logical_date(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    assert artefacts.workspace(context(), "model") == tmp_path / "nlp_local" / "20250101T000000Z" / "model"
    assert (
        artefacts.publish(context(), "model", tmp_path / "anything") == f"{tmp_path}/nlp_local/20250101T000000Z/model"
    )


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
