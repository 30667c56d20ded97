"""Steps reading and writing S3 directly (a pod without a shared volume), against moto on 127.0.0.1."""

import json
from pathlib import Path

import pytest

from tasks.errors import NOT_RETRYABLE, ConcurrentUpdateError, ConfigError
from tasks.runtime import remote_paths
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


def object_text(s3, key: str) -> str:
    return s3["client"].get_object(Bucket=s3["bucket"], Key=key)["Body"].read().decode()


def appending(line: str, competitor=None, calls: list | None = None):
    """An edit that appends ``line`` to the local copy; ``competitor(attempt)`` runs first, as another writer
    would between this writer's download and upload."""

    def edit(path: Path) -> str:
        if calls is not None:
            calls.append(path.read_text() if path.exists() else None)
        if competitor:
            competitor(len(calls or ()))
        with path.open("a") as handle:
            handle.write(line)
        return line

    return edit


def test_an_edit_that_lost_a_race_is_redone_on_the_newer_object(s3):
    client, bucket = s3["client"], s3["bucket"]
    client.put_object(Bucket=bucket, Key="log", Body=b"first\n")
    calls = []

    def competitor(attempt: int) -> None:
        if attempt == 1:
            client.put_object(Bucket=bucket, Key="log", Body=b"first\ncompetitor\n")

    result = remote_paths.edit_remote_file(f"s3://{bucket}/log", appending("mine\n", competitor, calls), writes=True)
    assert result == "mine\n" and calls == ["first\n", "first\ncompetitor\n"]
    assert object_text(s3, "log") == "first\ncompetitor\nmine\n", "neither update is lost"


def test_a_creation_that_lost_a_race_is_redone_on_the_created_object(s3):
    client, bucket = s3["client"], s3["bucket"]
    calls = []

    def competitor(attempt: int) -> None:
        if attempt == 1:
            client.put_object(Bucket=bucket, Key="new/log", Body=b"competitor\n")

    remote_paths.edit_remote_file(f"s3://{bucket}/new/log", appending("mine\n", competitor, calls), writes=True)
    assert calls == [None, "competitor\n"] and object_text(s3, "new/log") == "competitor\nmine\n"


def test_a_writer_that_always_loses_gives_up_with_a_retryable_error_naming_the_object(s3, monkeypatch):
    client, bucket = s3["client"], s3["bucket"]
    pauses = []
    monkeypatch.setattr(remote_paths, "_back_off", pauses.append)
    calls = []

    def competitor(attempt: int) -> None:
        client.put_object(Bucket=bucket, Key="log", Body=f"competitor {attempt}\n".encode())

    with pytest.raises(ConcurrentUpdateError) as raised:
        remote_paths.edit_remote_file(f"s3://{bucket}/log", appending("mine\n", competitor, calls), writes=True)
    assert len(calls) == remote_paths.UPDATE_ATTEMPTS and pauses == list(range(1, remote_paths.UPDATE_ATTEMPTS))
    assert f"s3://{bucket}/log" in str(raised.value) and str(remote_paths.UPDATE_ATTEMPTS) in str(raised.value)
    assert raised.value.exit_code not in NOT_RETRYABLE
    assert object_text(s3, "log") == f"competitor {remote_paths.UPDATE_ATTEMPTS}\n"


def test_the_back_off_is_jittered_and_bounded(monkeypatch):
    slept = []
    monkeypatch.setattr(remote_paths.time, "sleep", slept.append)
    for attempt in range(1, 30):
        remote_paths._back_off(attempt)
    assert all(0 <= pause <= remote_paths.MAX_PAUSE for pause in slept) and len(set(slept)) > 1


def test_a_read_only_edit_uploads_nothing(s3):
    client, bucket = s3["client"], s3["bucket"]
    assert remote_paths.edit_remote_file(f"s3://{bucket}/absent", appending("x\n"), writes=False) == "x\n"
    client.put_object(Bucket=bucket, Key="log", Body=b"first\n")
    etag = client.head_object(Bucket=bucket, Key="log")["ETag"]
    remote_paths.edit_remote_file(f"s3://{bucket}/log", appending("x\n"), writes=False)
    assert keys(s3, "") == {"log"} and client.head_object(Bucket=bucket, Key="log")["ETag"] == etag


@pytest.mark.parametrize(
    ("code", "status", "conflict"),
    [
        ("PreconditionFailed", 412, True),
        ("ConditionalRequestConflict", 409, True),
        ("AccessDenied", 403, False),
        ("InternalError", 500, False),
    ],
)
def test_a_conflict_is_what_s3_answers_to_a_conditional_write_that_lost(code, status, conflict):
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    answer = {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}
    assert remote_paths._conflict(translate_boto_error(ClientError(answer, "PutObject"))) is conflict


def test_only_an_s3_registry_can_be_remote(tmp_path):
    with pytest.raises(ConfigError, match="memory://registry/registry.sqlite.*s3://"):
        remote_paths.edit_remote_file("memory://registry/registry.sqlite", appending("x\n"), writes=True)
