"""``python -m tasks registry``: the local platform's model registry, one SQLite file beside the artefacts.

Each candidate the pipeline evaluates is recorded with its metrics, its lineage (data fingerprint, base
model, the configuration it was trained with, DAG run) and a status::

    candidate ──► approved ──► production ──► archived
        └──────────────────────────────────────┘   (rejected by the gate: archived with the gate's reasons)

At most one model is in ``production``: promoting one archives the one before, in one transaction. The
gate's champion and the training cache both read the production model.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing, contextmanager
from pathlib import Path

from tasks.config import RegistryArguments
from tasks.endpoint.state import now
from tasks.errors import ConfigError, ModelError
from tasks.runtime import step_result

STATUSES = ("candidate", "approved", "production", "archived")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    model            TEXT NOT NULL,
    version          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('candidate', 'approved', 'production', 'archived')),
    decision         TEXT,
    reasons          TEXT NOT NULL,
    metrics          TEXT NOT NULL,
    data_fingerprint TEXT,
    base_model       TEXT,
    config           TEXT NOT NULL,
    dag_id           TEXT,
    run_id           TEXT,
    logical_date     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
)
"""
_JSON_COLUMNS = ("reasons", "metrics", "config")
_METRICS = ("accuracy", "f1", "latency_ms_b1_p50", "latency_ms_b1_p99", "throughput_b32", "precision")


class Registry:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.execute(_SCHEMA)

    @contextmanager
    def _transaction(self):
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            db.execute("BEGIN IMMEDIATE")  # one writer at a time: concurrent DAG runs queue here
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def register(self, *, model: str, version: str, status: str, evaluation: dict, card: dict, **lineage) -> dict:
        if status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        stamp = now()
        row = {
            "model": model,
            "version": version,
            "status": status,
            "decision": evaluation.get("decision"),
            "reasons": json.dumps(evaluation.get("reasons", [])),
            "metrics": json.dumps({name: evaluation.get(name) for name in _METRICS}),
            "data_fingerprint": evaluation.get("data_fingerprint") or card.get("data", {}).get("fingerprint"),
            "base_model": card.get("base_model"),
            "config": json.dumps(lineage.pop("config", {}), sort_keys=True),
            "dag_id": lineage.get("dag_id"),
            "run_id": lineage.get("run_id"),
            "logical_date": lineage.get("logical_date"),
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._transaction() as db:
            cursor = db.execute(
                f"INSERT INTO models ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
            )
            return self._get(db, cursor.lastrowid)

    def promote(self, entry_id: int) -> dict:
        """Make ``entry_id`` the production model and archive the one before it."""
        with self._transaction() as db:
            entry = self._get(db, entry_id)
            if entry["status"] == "archived":
                raise ModelError(f"registry entry {entry_id} ({entry['version']}) is archived; register it again")
            stamp = now()
            db.execute(
                "UPDATE models SET status = 'archived', updated_at = ? WHERE status = 'production' AND id != ?",
                (stamp, entry_id),
            )
            db.execute("UPDATE models SET status = 'production', updated_at = ? WHERE id = ?", (stamp, entry_id))
            return self._get(db, entry_id)

    def production(self) -> dict | None:
        with self._transaction() as db:
            row = db.execute("SELECT id FROM models WHERE status = 'production'").fetchone()
            return self._get(db, row["id"]) if row else None

    def entries(self) -> list[dict]:
        with self._transaction() as db:
            return [self._get(db, row["id"]) for row in db.execute("SELECT id FROM models ORDER BY id")]

    @staticmethod
    def _get(db, entry_id: int) -> dict:
        row = db.execute("SELECT * FROM models WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no registry entry with id {entry_id}")
        entry = dict(row)
        for column in _JSON_COLUMNS:
            entry[column] = json.loads(entry[column])
        return entry


def run(args: RegistryArguments) -> None:
    """Print the result as one line of JSON (the last line of stdout), for the caller to parse; in a pod it is
    also the termination message (``tasks.runtime.step_result``)."""
    registry = Registry(args.registry)
    if args.action == "register":
        result = _register(registry, args)
    elif args.action == "promote":
        result = registry.promote(args.id)
    elif args.action == "production":
        result = registry.production()
    else:
        result = registry.entries()
    print(json.dumps(result, sort_keys=True))
    if args.action != "list":  # one entry: small enough for a termination message
        step_result.write(result)


def _register(registry: Registry, args: RegistryArguments) -> dict:
    from tasks.runtime.models import resolve
    from tasks.serving.served_model import model_version

    folder = resolve(args.model)
    if not (folder / "saved_model" / "saved_model.pb").is_file():
        raise ModelError(
            f"--model {args.model}: not a trained model (no saved_model/saved_model.pb); register the "
            "output of `train` or `quantize`"
        )
    evaluation = _read_json(Path(args.evaluation) / "evaluation.json")
    card_path = folder / "model_card.json"
    card = _read_json(card_path) if card_path.is_file() else {}
    try:
        config = json.loads(args.config)
    except ValueError as error:
        raise ConfigError(f"--config must be a JSON object: {error}") from None
    return registry.register(
        model=args.model,
        version=model_version(folder),
        status=args.status,
        evaluation=evaluation,
        card=card,
        config=config,
        dag_id=args.dag_id or None,
        run_id=args.run_id or None,
        logical_date=args.logical_date or None,
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except ValueError as error:
        raise ModelError(f"{path}: not valid JSON: {error}") from None
