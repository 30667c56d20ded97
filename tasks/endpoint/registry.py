"""``python -m tasks registry``: the model registry, one SQLite file beside the artefacts (local, or on S3).

Each candidate the pipeline evaluates is recorded with its metrics, its lineage (data fingerprint, base
model, the configuration it was trained with, DAG run), the content digest of its folder
(``tasks.runtime.digest``: deploy and serve verify the bytes against it) and a status::

    candidate ──► approved ──► production ──► archived
        └──────────────────────────────────────┘   (rejected by the gate: archived with the gate's reasons)

At most one model is in ``production``: promoting one archives the one before, in one transaction. The
gate's champion and the training cache both read the production model.

Every action can be redone without harm, which a retried task and the S3 update loop rely on. A
registration is keyed by (DAG, run, model digest): the same bytes registered again by the same run return
the entry made before (see ``Registry.register``); promoting the production model again changes nothing.

``list`` and ``show`` are for people: a table of every entry, newest first, and one model's entries whole (metrics,
lineage, folder, digest, model card, and the search that chose its setting: the chosen setting, each trial's score); ``--json`` prints the same entries as JSON. The other actions print JSON,
which the pipeline parses.

Writers never lose each other's updates: a local file is changed in ``BEGIN IMMEDIATE`` transactions (SQLite
queues writers), a registry on S3 with conditional writes that redo the action on the newer object
(``tasks.runtime.remote_paths.edit_remote_file``). A file that is not a registry is RegistryError (exit 3,
not retried): retrying cannot repair it.
"""

from __future__ import annotations

import difflib
import json
import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing, contextmanager
from pathlib import Path

from tasks.config import RegistryArguments
from tasks.endpoint.state import now
from tasks.errors import ConfigError, ModelError, RegistryError
from tasks.runtime import model_card, remote_paths, step_result
from tasks.tuning.space import describe as describe_setting

log = logging.getLogger(__name__)

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
    updated_at       TEXT NOT NULL,
    digest           TEXT,
    tuning           TEXT
)
"""
# Columns added after the first registries were written, with their type: opening an older file adds them.
# tuning: the search that chose the model's setting (its model card's ``tuning``), JSON; NULL when none did.
_ADDED_COLUMNS = {"digest": "TEXT", "tuning": "TEXT"}
_JSON_COLUMNS = ("reasons", "metrics", "config")
_NULLABLE_JSON_COLUMNS = ("tuning",)
# The actions that change the registry; the others only read it.
WRITES = frozenset({"register", "promote"})
# The actions that print text for people unless given --json, and refuse a registry that does not exist.
FOR_PEOPLE = frozenset({"list", "show"})
# sqlite3's primary result codes for a file that is not a database, or a damaged one.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_METRICS = ("accuracy", "f1", "latency_ms_b1_p50", "latency_ms_b1_p99", "throughput_b32", "precision")


class Registry:
    """The registry in the SQLite file ``path``; ``name`` (the file, or the URI it was downloaded from) is
    what errors call it."""

    def __init__(self, path: str | Path, name: str = ""):
        self.path = Path(path)
        self.name = name or str(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            self._create_or_migrate(db)

    def _create_or_migrate(self, db) -> None:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "models" not in tables and tables - {"sqlite_sequence"}:
            raise self._not_a_registry(
                f"a SQLite database that has no models table (tables: {', '.join(sorted(tables))})"
            )
        db.execute(_SCHEMA)
        columns = {row["name"] for row in db.execute("PRAGMA table_info(models)")}
        missing = _columns() - columns - _ADDED_COLUMNS.keys()
        if missing:
            raise self._not_a_registry(f"its models table lacks the columns {', '.join(sorted(missing))}")
        for column, kind in _ADDED_COLUMNS.items():
            if column not in columns:
                db.execute(f"ALTER TABLE models ADD COLUMN {column} {kind}")

    def _not_a_registry(self, what: str) -> RegistryError:
        return RegistryError(
            f"--registry {self.name}: {what}, so it is no model registry (or a damaged one). Point --registry at"
            " the registry file, or restore it from a backup (on S3, the object's previous version); moving it"
            " aside starts an empty registry."
        )

    @contextmanager
    def _transaction(self):
        try:
            with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
                db.row_factory = sqlite3.Row
                db.execute("BEGIN IMMEDIATE")  # one writer at a time: concurrent DAG runs queue here
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.DatabaseError as error:
            code = getattr(error, "sqlite_errorcode", None)  # None on errors the sqlite3 module raises itself
            if code is None or (code & 0xFF) not in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise  # "database is locked" and the like: a retry can help
            raise self._not_a_registry(f"not a SQLite database ({error})") from None

    def register(
        self, *, model: str, version: str, status: str, evaluation: dict, card: dict, digest: str, **lineage
    ) -> dict:
        """The entry of ``model`` (whose folder has the content ``digest``) for this DAG run.

        Registering the same digest for the same DAG and run again returns the entry made before, unchanged
        when it is in production or already has ``status`` (a retried task); otherwise it takes this
        registration's status, decision, reasons and metrics (a re-run whose gate decided again), in place.
        """
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
            "digest": digest,
            "tuning": json.dumps(card[model_card.TUNING], sort_keys=True) if card.get(model_card.TUNING) else None,
        }
        with self._transaction() as db:
            existing = db.execute(
                "SELECT id, status FROM models WHERE dag_id IS ? AND run_id IS ? AND digest = ? ORDER BY id LIMIT 1",
                (row["dag_id"], row["run_id"], digest),
            ).fetchone()
            if existing is None:
                cursor = db.execute(
                    f"INSERT INTO models ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
                )
                return self._get(db, cursor.lastrowid)
            if existing["status"] not in ("production", status):
                redecided = {name: row[name] for name in ("status", "decision", "reasons", "metrics", "updated_at")}
                db.execute(
                    f"UPDATE models SET {', '.join(f'{name} = ?' for name in redecided)} WHERE id = ?",
                    (*redecided.values(), existing["id"]),
                )
            log.info("%s is registry entry %d already (run %s)", digest, existing["id"], row["run_id"])
            return self._get(db, existing["id"])

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
        """Every entry, newest first."""
        with self._transaction() as db:
            return [self._get(db, row["id"]) for row in db.execute("SELECT id FROM models ORDER BY id DESC")]

    def find(self, version: str) -> list[dict]:
        """The entries of ``version`` (one model registered by several runs), newest first; ``version`` may be an
        entry id instead. None is a ConfigError naming the registry and the versions it resembles."""
        with self._transaction() as db:
            found = db.execute(
                "SELECT id FROM models WHERE version = ? OR (? AND id = ?) ORDER BY id DESC",
                (version, version.isdecimal(), int(version) if version.isdecimal() else 0),
            ).fetchall()
            if found:
                return [self._get(db, row["id"]) for row in found]
            versions = sorted({row["version"] for row in db.execute("SELECT version FROM models")})
        resembled = difflib.get_close_matches(version, versions, n=3)
        hint = f"did you mean {' or '.join(resembled)}?" if resembled else "`registry list` shows its versions"
        raise ConfigError(f"no model {version!r} in the registry {self.name}: {hint}")

    @staticmethod
    def _get(db, entry_id: int) -> dict:
        row = db.execute("SELECT * FROM models WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise ConfigError(f"no registry entry with id {entry_id}")
        entry = dict(row)
        for column in _JSON_COLUMNS:
            entry[column] = json.loads(entry[column])
        for column in _NULLABLE_JSON_COLUMNS:
            entry[column] = json.loads(entry[column]) if entry[column] is not None else None
        return entry


def _columns() -> set[str]:
    """The columns of the models table as this module creates it."""
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute(_SCHEMA)
        return {row[1] for row in db.execute("PRAGMA table_info(models)")}


def run(args: RegistryArguments) -> None:
    """``list`` and ``show`` print text for people (JSON with ``--json``). The other actions print their result
    as one line of JSON (the last line of stdout), for the caller to parse; in a pod it is also the termination
    message (``tasks.runtime.step_result``)."""
    action = _register(args) if args.action == "register" else _ACTIONS[args.action](args)
    if remote_paths.is_remote(args.registry):
        result = remote_paths.edit_remote_file(
            args.registry, lambda path: action(_open(path, args)), writes=args.action in WRITES
        )
    else:
        result = action(_open(Path(args.registry), args))
    if args.action in FOR_PEOPLE:
        print(json.dumps(result, sort_keys=True) if args.json else _TEXT[args.action](result, args.registry))
        return
    print(json.dumps(result, sort_keys=True))
    step_result.write(_without_trials(result))  # one entry: small enough for a termination message


def _without_trials(result):
    """An entry with its search's trials counted rather than listed (32 trials would overflow a termination
    message); stdout and the registry keep them."""
    if not isinstance(result, dict) or not result.get("tuning"):
        return result
    tuning = result["tuning"]
    return result | {
        "tuning": {key: value for key, value in tuning.items() if key != "trials"} | {"trials": len(tuning["trials"])}
    }


def _open(path: Path, args: RegistryArguments) -> Registry:
    """The registry at ``path``; a lookup by a person in one that does not exist is refused rather than
    answered "nothing registered" from an empty file it would create (a mistyped path)."""
    if args.action in FOR_PEOPLE and not path.exists():
        raise ConfigError(
            f"--registry {args.registry}: no such registry; pass the registry file or URI (the demo's is"
            " demo-output/artefacts/registry.sqlite: `make registry`)"
        )
    return Registry(path, args.registry)


# What each action does to an open registry: a function of the registry alone, so that it can be redone on a
# newer copy. Registering first reads the model and its evaluation, once (``_register``).
_ACTIONS: dict[str, Callable[[RegistryArguments], Callable[[Registry], object]]] = {
    "promote": lambda args: lambda registry: registry.promote(args.id),
    "production": lambda args: Registry.production,
    "list": lambda args: Registry.entries,
    "show": lambda args: (
        lambda registry: [
            entry | {"model_card": model_card.location(entry["model"])} for entry in registry.find(args.version)
        ]
    ),
}


# ---- text for people ------------------------------------------------------------------------------------------------
_MISSING = "-"
# list's columns: the header and the entry's value as text.
_COLUMNS: tuple[tuple[str, Callable[[dict], str]], ...] = (
    ("id", lambda entry: str(entry["id"])),
    ("version", lambda entry: entry["version"]),
    ("status", lambda entry: entry["status"]),
    ("precision", lambda entry: _precision(entry)),
    ("accuracy", lambda entry: _number(entry["metrics"].get("accuracy"), 3)),
    ("F1", lambda entry: _number(entry["metrics"].get("f1"), 3)),
    ("latency b1 p50 (ms)", lambda entry: _number(entry["metrics"].get("latency_ms_b1_p50"), 1)),
    ("trained on", lambda entry: entry["created_at"][:10]),
    ("DAG", lambda entry: entry["dag_id"] or _MISSING),
    ("run", lambda entry: entry["run_id"] or _MISSING),
)
_NUMERIC = frozenset({"id", "accuracy", "F1", "latency b1 p50 (ms)"})


def _number(value, decimals: int) -> str:
    return _MISSING if value is None else f"{value:.{decimals}f}"


def _precision(entry: dict) -> str:
    """The precision recorded with the metrics, else the one the version starts with (``int8-0123abcd``)."""
    return entry["metrics"].get("precision") or entry["version"].partition("-")[0] or _MISSING


def table(entries: list[dict], registry: str) -> str:
    """The entries as an aligned text table, one row each, in the order given; nothing cut short."""
    if not entries:
        return f"no models registered in {registry}"
    cells = [[header for header, _ in _COLUMNS]] + [[value(entry) for _, value in _COLUMNS] for entry in entries]
    widths = [max(len(row[column]) for row in cells) for column in range(len(_COLUMNS))]
    lines = [
        "  ".join(
            cell.rjust(width) if header in _NUMERIC else cell.ljust(width)
            for (header, _), cell, width in zip(_COLUMNS, row, widths, strict=True)
        ).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def describe(entries: list[dict], registry: str) -> str:
    """Each entry whole, as labelled lines: its status, metrics, lineage and files."""
    return "\n\n".join(_describe(entry, registry) for entry in entries)


def _describe(entry: dict, registry: str) -> str:
    metrics = entry["metrics"]
    sections = {
        f"{entry['version']}: registry entry {entry['id']} of {registry}": [
            ("status", entry["status"]),
            ("registered", entry["created_at"]),
            ("last changed", entry["updated_at"]),
            ("gate decision", entry["decision"] or _MISSING),
            ("gate reasons", "; ".join(entry["reasons"]) or _MISSING),
        ],
        "metrics": [
            ("precision", _precision(entry)),
            ("accuracy", _number(metrics.get("accuracy"), 3)),
            ("F1", _number(metrics.get("f1"), 3)),
            ("latency b1 p50 (ms)", _number(metrics.get("latency_ms_b1_p50"), 1)),
            ("latency b1 p99 (ms)", _number(metrics.get("latency_ms_b1_p99"), 1)),
            ("throughput b32 (pairs/s)", _number(metrics.get("throughput_b32"), 1)),
        ],
        "lineage": [
            ("data fingerprint", entry["data_fingerprint"] or _MISSING),
            ("base model", entry["base_model"] or _MISSING),
            ("training config", json.dumps(entry["config"], sort_keys=True) if entry["config"] else _MISSING),
            ("DAG", entry["dag_id"] or _MISSING),
            ("run", entry["run_id"] or _MISSING),
            ("logical date", entry["logical_date"] or _MISSING),
        ],
        "model": [
            ("folder", entry["model"]),
            ("digest", entry["digest"] or _MISSING),
            ("model card", _card_text(entry["model_card"])),
        ],
    }
    if entry.get("tuning"):
        sections["tuning"] = _tuning_lines(entry["tuning"])
    width = max(len(label) for lines in sections.values() for label, _ in lines)
    return "\n".join(
        "\n".join([title, *(f"  {label:<{width}}  {value}" for label, value in lines)])
        for title, lines in sections.items()
    )


def _tuning_lines(tuning: dict) -> list[tuple[str, str]]:
    """The search that chose the setting: where it is, the chosen setting, and each trial's setting and score."""
    best = tuning["best"]
    lines = [
        ("search", tuning.get("uri") or _MISSING),
        ("chosen setting", describe_setting(best["setting"])),
        ("chosen trial", f"{best['name']}: accuracy {_number(best['accuracy'], 3)}, F1 {_number(best['f1'], 3)}"),
    ]
    for trial in tuning.get("trials", []):
        score = f"accuracy {_number(trial.get('accuracy'), 3)}, F1 {_number(trial.get('f1'), 3)}"
        lines.append(
            (trial["name"], f"{describe_setting(trial['setting'])}: {score} ({trial.get('status') or _MISSING})")
        )
    return lines


def _card_text(path: str | None) -> str:
    """The card's path; a local one that is not there (the folder removed by gc) says so."""
    if path is None:
        return "inside the model's archive"
    if remote_paths.is_remote(path) or Path(path).is_file():
        return path
    return f"{path} (not found)"


_TEXT: dict[str, Callable[[list[dict], str], str]] = {"list": table, "show": describe}


def _register(args: RegistryArguments) -> Callable[[Registry], dict]:
    from tasks.runtime.digest import verify
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
    entry = {
        "model": args.model,
        "version": model_version(folder),
        "status": args.status,
        "evaluation": evaluation,
        "card": card,
        "digest": verify(folder),
        "config": config,
        "dag_id": args.dag_id or None,
        "run_id": args.run_id or None,
        "logical_date": args.logical_date or None,
    }
    return lambda registry: registry.register(**entry)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except ValueError as error:
        raise ModelError(f"{path}: not valid JSON: {error}") from None
