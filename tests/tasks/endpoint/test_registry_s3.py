"""The registry on S3 (moto on 127.0.0.1), as EKS pods use it: concurrent registrations and promotions lose
nothing, a retried registration writes nothing, an object that is not a registry fails at once, and people
list and show it."""

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from tasks import cli
from tasks.runtime import remote_paths
from tests.conftest import flags
from tests.tasks.endpoint.test_registry import evaluation_folder, model_folder


@pytest.fixture
def atomic_conditional_writes(monkeypatch):
    """PutObject whose If-Match / If-None-Match check and write are one step, as S3 documents them ("if
    multiple conditional writes occur for the same object, the first to finish succeeds"; the others get 412
    or 409). moto 5.2.5 checks the condition, then writes, with nothing holding other requests off in
    between (``moto/s3/responses.py`` ``S3Response.put_object``); its threaded server runs in this process,
    so the handler is serialised here."""
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    put_object = S3Response.put_object

    def atomic_put_object(self):
        with lock:
            return put_object(self)

    monkeypatch.setattr(S3Response, "put_object", atomic_put_object)


def registry_rows(s3, key: str, scratch: Path) -> list[dict]:
    """The registry object's rows as they are now on S3."""
    local = scratch / f"{threading.get_ident()}.sqlite"
    s3["client"].download_file(s3["bucket"], key, str(local))
    try:
        with sqlite3.connect(local) as db:
            db.row_factory = sqlite3.Row
            return [dict(row) for row in db.execute("SELECT * FROM models ORDER BY id")]
    finally:
        local.unlink()


def test_concurrent_registrations_and_promotions_lose_nothing(s3, atomic_conditional_writes, tmp_path, monkeypatch):
    conflicts = []
    back_off = remote_paths._back_off
    monkeypatch.setattr(remote_paths, "_back_off", lambda attempt: conflicts.append(attempt) or back_off(attempt))
    key, writers = "prefix/registry.sqlite", 8
    registry = f"s3://{s3['bucket']}/{key}"
    evaluation = evaluation_folder(tmp_path)
    models = [model_folder(tmp_path, f"model-{writer}") for writer in range(writers)]
    promoters = {writer for writer in range(writers) if writer % 2 == 0}
    started = threading.Barrier(writers)
    outcomes: dict[int, list] = {}

    def write(writer: int) -> None:
        run_id = f"run-{writer}"
        register = flags(
            registry=registry, action="register", model=models[writer], evaluation=evaluation, run_id=run_id
        )
        started.wait()
        outcomes[writer] = [cli.main(["registry", *register])]
        if writer == 0:
            outcomes[writer].append(cli.main(["registry", *register]))  # a retried task registers again
        if writer in promoters:
            mine = [row["id"] for row in registry_rows(s3, key, tmp_path) if row["run_id"] == run_id]
            promote = flags(registry=registry, action="promote", id=mine[0]) if mine else None
            outcomes[writer].append(cli.main(["registry", *promote]) if promote else "registration lost")

    cli.parse("registry", ["--registry", registry])  # transformers' lazy imports are not thread-safe: import once
    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert outcomes == {writer: [0] * (1 + (writer == 0) + (writer in promoters)) for writer in range(writers)}, (
        "every step succeeded"
    )
    assert conflicts, "the writers raced"
    rows = registry_rows(s3, key, tmp_path)
    assert sorted(row["run_id"] for row in rows) == sorted(f"run-{writer}" for writer in range(writers)), (
        "every registration is there exactly once"
    )
    production = [row for row in rows if row["status"] == "production"]
    assert len(production) == 1 and production[0]["run_id"] in {f"run-{writer}" for writer in promoters}
    promoted = {f"run-{writer}" for writer in promoters} - {production[0]["run_id"]}
    assert {row["status"] for row in rows if row["run_id"] in promoted} == {"archived"}, "every promotion happened"


def test_a_retried_registration_or_a_lookup_writes_nothing(s3, tmp_path, capsys):
    key = "registry.sqlite"
    registry = f"s3://{s3['bucket']}/{key}"
    assert cli.main(["registry", *flags(registry=registry, action="production")]) == 0
    assert capsys.readouterr().out.strip() == "null"
    assert "Contents" not in s3["client"].list_objects_v2(Bucket=s3["bucket"]), "a lookup creates no registry"
    register = flags(
        registry=registry,
        action="register",
        model=model_folder(tmp_path, "model"),
        evaluation=evaluation_folder(tmp_path),
        run_id="run-1",
    )
    assert cli.main(["registry", *register]) == 0
    written = s3["client"].head_object(Bucket=s3["bucket"], Key=key)["ETag"]
    assert cli.main(["registry", *register]) == 0
    assert cli.main(["registry", "--registry", registry, "--action", "list"]) == 0
    assert s3["client"].head_object(Bucket=s3["bucket"], Key=key)["ETag"] == written
    assert len(registry_rows(s3, key, tmp_path)) == 1


def test_an_object_that_is_not_a_registry_fails_at_once_and_stays(s3, tmp_path, capsys):
    key = "registry.sqlite"
    s3["client"].put_object(Bucket=s3["bucket"], Key=key, Body=b"<html>an error page saved as the registry</html>")
    registry = f"s3://{s3['bucket']}/{key}"
    register = flags(
        registry=registry,
        action="register",
        model=model_folder(tmp_path, "model"),
        evaluation=evaluation_folder(tmp_path),
    )
    assert cli.main(["registry", *register]) == 3
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: --registry {registry}: not a SQLite database"), error
    body = s3["client"].get_object(Bucket=s3["bucket"], Key=key)["Body"].read()
    assert body == b"<html>an error page saved as the registry</html>"


def test_list_and_show_read_a_registry_on_s3_and_refuse_a_missing_object(s3, tmp_path, capsys):
    registry = f"s3://{s3['bucket']}/prefix/registry.sqlite"
    assert cli.main(["registry", "list", "--registry", registry]) == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: --registry {registry}: no such registry")
    )
    assert "Contents" not in s3["client"].list_objects_v2(Bucket=s3["bucket"]), "looking creates no registry"
    model = model_folder(tmp_path, "model")
    register = flags(registry=registry, action="register", model=model, evaluation=evaluation_folder(tmp_path))
    assert cli.main(["registry", *register, "--run-id", "run-1"]) == 0
    entry = json.loads(capsys.readouterr().out.splitlines()[-1])
    written = s3["client"].head_object(Bucket=s3["bucket"], Key="prefix/registry.sqlite")["ETag"]
    assert cli.main(["registry", "list", "--registry", registry]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["id", "version", "status"] and row.split()[:3] == ["1", entry["version"], "candidate"]
    assert cli.main(["registry", "show", entry["version"], "--json", "--registry", registry]) == 0
    assert json.loads(capsys.readouterr().out) == [entry | {"model_card": f"{model}/README.md"}]
    assert s3["client"].head_object(Bucket=s3["bucket"], Key="prefix/registry.sqlite")["ETag"] == written
