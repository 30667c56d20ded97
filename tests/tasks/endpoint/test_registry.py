"""The model registry on a local SQLite file: idempotent registration per (DAG, run, model digest), the
migration of registries written before the digest column, a clear non-retried error for a file that is not
a registry, and concurrent writers that lose nothing."""

import io
import json
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from multiprocessing import get_context
from pathlib import Path

import pytest

from tasks import cli
from tasks.config import RegistryArguments
from tasks.endpoint import registry
from tasks.endpoint.registry import Registry
from tasks.errors import NOT_RETRYABLE, ModelError
from tasks.runtime import digest
from tests.conftest import flags

EVALUATION = {"decision": "promote", "reasons": ["ok"], "accuracy": 0.8, "f1": 0.85}
# The registry's table as it was before the digest column: files written then must keep working.
SCHEMA_BEFORE_DIGEST = """
CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('candidate', 'approved', 'production', 'archived')),
    decision TEXT, reasons TEXT NOT NULL, metrics TEXT NOT NULL, data_fingerprint TEXT, base_model TEXT,
    config TEXT NOT NULL, dag_id TEXT, run_id TEXT, logical_date TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""


def model_folder(root: Path, name: str) -> Path:
    """A sealed model folder as `train` leaves it (a graph file is all the registry reads)."""
    folder = root / name
    (folder / "saved_model").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(f"graph of {name}".encode())
    digest.seal(folder)
    return folder


def evaluation_folder(root: Path, evaluation: dict = EVALUATION) -> Path:
    folder = root / "evaluation"
    folder.mkdir(exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(evaluation))
    return folder


def register(registry_file: Path, model: Path, evaluation: Path, **options) -> dict:
    """``python -m tasks registry --action register`` in this process; the entry it printed."""
    args = RegistryArguments(
        registry=str(registry_file), action="register", model=str(model), evaluation=str(evaluation), **options
    )
    with redirect_stdout(io.StringIO()) as printed:
        registry.run(args)
    return json.loads(printed.getvalue().splitlines()[-1])


def rows(registry_file: Path) -> list[dict]:
    with sqlite3.connect(registry_file) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM models ORDER BY id")]


def test_a_retried_registration_returns_the_entry_it_made(tmp_path):
    registry_file, evaluation = tmp_path / "registry.sqlite", evaluation_folder(tmp_path)
    model = model_folder(tmp_path, "model")
    first = register(registry_file, model, evaluation, dag_id="nlp_eks", run_id="run-1")
    again = register(registry_file, model, evaluation, dag_id="nlp_eks", run_id="run-1")
    assert first["digest"] == digest.verify(model) and first["digest"].startswith(digest.PREFIX)
    assert again == first, "a retry returns the entry unchanged"
    assert len(rows(registry_file)) == 1


def test_other_bytes_or_another_run_are_other_entries(tmp_path):
    registry_file, evaluation = tmp_path / "registry.sqlite", evaluation_folder(tmp_path)
    model, other = model_folder(tmp_path, "model"), model_folder(tmp_path, "other")
    ids = {
        register(registry_file, model, evaluation, dag_id="nlp_eks", run_id="run-1")["id"],
        register(registry_file, other, evaluation, dag_id="nlp_eks", run_id="run-1")["id"],
        register(registry_file, model, evaluation, dag_id="nlp_eks", run_id="run-2")["id"],
        register(registry_file, model, evaluation, dag_id="nlp_local", run_id="run-1")["id"],
    }
    assert len(ids) == 4 == len(rows(registry_file))


def test_registering_again_never_moves_the_production_model(tmp_path):
    registry_file, evaluation = tmp_path / "registry.sqlite", evaluation_folder(tmp_path)
    model = model_folder(tmp_path, "model")
    entry = register(registry_file, model, evaluation, dag_id="nlp_eks", run_id="run-1")
    Registry(registry_file).promote(entry["id"])
    again = register(registry_file, model, evaluation, dag_id="nlp_eks", run_id="run-1", status="archived")
    assert again["id"] == entry["id"] and again["status"] == "production"
    assert Registry(registry_file).production()["id"] == entry["id"]


def test_a_new_gate_decision_for_the_same_bytes_replaces_the_earlier_one(tmp_path):
    registry_file, model = tmp_path / "registry.sqlite", model_folder(tmp_path, "model")
    rejected = {"decision": "reject", "reasons": ["f1 below 0.9"], "accuracy": 0.5, "f1": 0.4}
    first = register(registry_file, model, evaluation_folder(tmp_path, rejected), run_id="run-1", status="archived")
    revived = register(registry_file, model, evaluation_folder(tmp_path), run_id="run-1", status="approved")
    assert revived["id"] == first["id"] and len(rows(registry_file)) == 1
    assert revived["status"] == "approved" and revived["decision"] == "promote"
    assert revived["metrics"]["f1"] == 0.85 and revived["reasons"] == ["ok"]
    assert Registry(registry_file).promote(first["id"])["status"] == "production"


def test_a_model_whose_files_changed_after_sealing_is_refused(tmp_path):
    model = model_folder(tmp_path, "model")
    (model / "saved_model" / "saved_model.pb").write_bytes(b"replaced")
    with pytest.raises(ModelError, match="content digest"):
        register(tmp_path / "registry.sqlite", model, evaluation_folder(tmp_path))
    assert not (tmp_path / "registry.sqlite").exists() or rows(tmp_path / "registry.sqlite") == []


def test_a_registry_written_before_the_digest_column_keeps_working(tmp_path):
    registry_file, evaluation = tmp_path / "registry.sqlite", evaluation_folder(tmp_path)
    with sqlite3.connect(registry_file) as db:
        db.execute(SCHEMA_BEFORE_DIGEST)
        db.execute(
            "INSERT INTO models (model, version, status, reasons, metrics, config, run_id, created_at, updated_at)"
            " VALUES ('/old', 'fp32-0123456789ab', 'production', '[]', '{}', '{}', 'run-0', 'then', 'then')"
        )
    old = Registry(registry_file).production()
    assert old["version"] == "fp32-0123456789ab" and old["digest"] is None
    entry = register(registry_file, model_folder(tmp_path, "model"), evaluation, run_id="run-1")
    assert register(registry_file, model_folder(tmp_path / "copy", "model"), evaluation, run_id="run-1") == entry
    assert [row["digest"] for row in rows(registry_file)] == [None, entry["digest"]]


def test_a_file_that_is_not_a_registry_fails_at_once_naming_it(tmp_path, capsys):
    not_sqlite = tmp_path / "not-sqlite.sqlite"
    not_sqlite.write_bytes(b"these bytes are no SQLite database, " * 100)
    other_schema = tmp_path / "other-schema.sqlite"
    with sqlite3.connect(other_schema) as db:
        db.execute("CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT)")
    other_database = tmp_path / "airflow.db"
    with sqlite3.connect(other_database) as db:
        db.execute("CREATE TABLE dag_run (id INTEGER PRIMARY KEY)")
    for path, reason in (
        (not_sqlite, "not a SQLite database"),
        (other_schema, "its models table lacks the columns base_model, config,"),
        (other_database, "a SQLite database that has no models table (tables: dag_run)"),
    ):
        before = path.read_bytes()
        assert cli.main(["registry", *flags(registry=path, action="production")]) == 3 and 3 in NOT_RETRYABLE
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"error: --registry {path}: {reason}") and "restore it" in error, error
        assert path.read_bytes() == before, "a file that is not a registry is left as it was"


def _register_many(registry_file: str, model_root: str, writer: int, count: int) -> list[int]:
    root, evaluation = Path(model_root), Path(model_root) / "evaluation"
    return [
        register(Path(registry_file), root / f"model-{writer}-{n}", evaluation, run_id=f"run-{writer}-{n}")["id"]
        for n in range(count)
    ]


def test_concurrent_processes_lose_no_registration(tmp_path):
    registry_file, writers, count = tmp_path / "registry.sqlite", 4, 5
    evaluation_folder(tmp_path)
    for writer in range(writers):
        for n in range(count):
            model_folder(tmp_path, f"model-{writer}-{n}")
    with ProcessPoolExecutor(writers, mp_context=get_context("fork")) as pool:
        writing = [pool.submit(_register_many, str(registry_file), str(tmp_path), w, count) for w in range(writers)]
        ids = [writer.result() for writer in writing]
    assert sorted(sum(ids, [])) == list(range(1, writers * count + 1))
    assert sorted(row["run_id"] for row in rows(registry_file)) == sorted(
        f"run-{w}-{n}" for w in range(writers) for n in range(count)
    )


def test_a_database_error_without_a_sqlite_code_is_raised_as_it_is(tmp_path):
    """Errors the sqlite3 module raises itself carry no sqlite_errorcode: they are not a corrupt registry."""
    registry = Registry(tmp_path / "registry.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="raised by the module"), registry._transaction():
        raise sqlite3.DatabaseError("raised by the module")
