"""Steps reading and writing S3 directly (a pod without a shared volume), against moto on 127.0.0.1."""

import json

from tests.conftest import flags, run_tasks, upload_folder


def keys(s3, prefix: str) -> set[str]:
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix=prefix).get("Contents", [])
    return {item["Key"].removeprefix(prefix) for item in listed}


def test_a_step_reads_and_writes_s3_and_uploads_nothing_when_it_fails(s3, raw_data, minilm_path, tmp_path):
    bucket = s3["bucket"]
    source = upload_folder(s3["client"], raw_data, bucket, "raw")
    result_file = tmp_path / "result"
    stage = flags(source=f"{source}/", output=f"s3://{bucket}/run/staged/try1", tokenizer=minilm_path)
    run_tasks("stage", *stage, env={"TASKS_RESULT_FILE": str(result_file)})
    uploaded = keys(s3, "run/staged/try1/")
    assert {"manifest.json", "tokenizer/tokenizer.json"} <= uploaded and any(k.startswith("train/") for k in uploaded)
    manifest = json.loads(s3["client"].get_object(Bucket=bucket, Key="run/staged/try1/manifest.json")["Body"].read())
    result = json.loads(result_file.read_text())
    assert result["fingerprint"] == manifest["fingerprint"] and result["output"] == f"s3://{bucket}/run/staged/try1"

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n7\t1\t2\ta\tb\n")
    bad = upload_folder(s3["client"], tmp_path / "bad", bucket, "bad")
    stage = flags(source=f"{bad}/", output=f"s3://{bucket}/run/staged/try2", tokenizer=minilm_path)
    failed = run_tasks("stage", *stage, check=False)
    assert failed.returncode == 3, failed.stderr
    assert keys(s3, "run/staged/try2/") == set(), "a failed step uploads nothing"


def test_the_registry_can_live_on_s3(s3, trained_tiny, tiny_model, tmp_path):
    bucket = s3["bucket"]
    (tmp_path / "evaluation").mkdir()
    promoted = {"decision": "promote", "reasons": ["ok"], "accuracy": 0.8, "f1": 0.85}
    (tmp_path / "evaluation" / "evaluation.json").write_text(json.dumps(promoted))
    evaluation = upload_folder(s3["client"], tmp_path / "evaluation", bucket, "run/evaluation/try1")
    registry = f"s3://{bucket}/registry.sqlite"

    def registry_step(*flags: str) -> dict:
        return json.loads(run_tasks("registry", "--registry", registry, *flags).stdout.strip().splitlines()[-1])

    register = flags(registry=registry, action="register", model=tiny_model, evaluation=evaluation)
    untrained = run_tasks("registry", *register, check=False)
    assert untrained.returncode == 1 and "not a trained model (no saved_model/saved_model.pb)" in untrained.stderr
    assert "registry.sqlite" not in keys(s3, ""), "a failed registry step uploads nothing"
    entry = registry_step(*flags(action="register", model=trained_tiny, evaluation=evaluation, status="approved"))
    assert entry["status"] == "approved" and entry["metrics"]["accuracy"] == 0.8
    assert registry_step("--action", "production") is None
    registry_step("--action", "promote", "--id", str(entry["id"]))
    assert registry_step("--action", "production")["id"] == entry["id"], "each step saw the one before"
    assert "registry.sqlite" in keys(s3, "")
