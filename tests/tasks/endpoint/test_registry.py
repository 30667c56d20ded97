"""The model registry on a local SQLite file: idempotent registration per (DAG, run, model digest), the
migration of registries written before the digest column, a clear non-retried error for a file that is not
a registry, and concurrent writers that lose nothing; `list` and `show` for people, `--json` for machines."""

import io
import json
import re
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from multiprocessing import get_context
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from tasks import cli
from tasks.config import REGISTRY_ENV, RegistryArguments
from tasks.endpoint import registry
from tasks.endpoint.registry import Registry
from tasks.errors import NOT_RETRYABLE, ConfigError, ModelError
from tasks.runtime import digest, model_card
from tests.conftest import flags
from tests.tasks.runtime.test_model_card import CARD

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


# ---- list and show: the registry for people ------------------------------------------------------------------------
LIST_HEADERS = ["id", "version", "status", "precision", "accuracy", "F1", "latency b1 p50 (ms)", "trained on"]
LIST_HEADERS += ["DAG", "run"]
LONG_RUN_ID = "backfill__2025-01-01T00:00:00+00:00__with_a_long_suffix_that_must_not_be_cut"


def carded_model_folder(root: Path, name: str) -> Path:
    """A sealed model folder with its model card (README.md and model_card.json), as `quantize` leaves it."""
    folder = root / name
    (folder / "saved_model").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(f"graph of {name}".encode())
    model_card.write(folder, CARD)
    digest.seal(folder)
    return folder


def registry_says(capsys, *arguments: str) -> tuple[int, str, str]:
    """``python -m tasks registry ARGUMENTS`` in this process: its exit code, stdout and stderr."""
    code = cli.main(["registry", *arguments])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def three_entries(tmp_path: Path) -> tuple[Path, list[dict]]:
    """A registry of three entries, oldest first: an archived FP32 model, the production INT8 model, and a
    candidate whose latency was never measured, registered by a backfill run with a long run id."""
    registry_file = tmp_path / "registry.sqlite"
    figures = [
        {"decision": "reject", "reasons": ["f1 below 0.8"], "accuracy": 0.61234, "f1": 0.5, "latency_ms_b1_p50": 9.96},
        {"decision": "promote", "reasons": ["ok"], "accuracy": 0.8125, "f1": 0.86049, "latency_ms_b1_p50": 4.04},
        {"decision": "promote", "reasons": ["ok"], "accuracy": 0.8, "f1": 0.85},
    ]
    runs = ["manual__2026-12-01T10:00:00+00:00", "scheduled__2026-12-02T00:00:00+00:00", LONG_RUN_ID]
    entries = []
    for n, (evaluation, run_id) in enumerate(zip(figures, runs, strict=True)):
        (tmp_path / f"run-{n}").mkdir()
        folder = evaluation_folder(tmp_path / f"run-{n}", evaluation | {"precision": ["fp32", "int8", None][n]})
        model, status = model_folder(tmp_path, f"model-{n}"), ["archived", "approved", "candidate"][n]
        entries.append(register(registry_file, model, folder, status=status, dag_id="nlp_local", run_id=run_id))
    Registry(registry_file).promote(entries[1]["id"])
    return registry_file, entries


def test_list_prints_a_table_of_every_entry_newest_first(tmp_path, capsys):
    registry_file, (archived, production, candidate) = three_entries(tmp_path)
    code, out, _ = registry_says(capsys, "list", "--registry", str(registry_file))
    assert code == 0
    header, *rows = [re.split(r" {2,}", line.strip()) for line in out.strip().splitlines()]
    assert header == LIST_HEADERS
    today = archived["created_at"][:10]
    assert rows == [
        ["3", candidate["version"], "candidate", "fp32", "0.800", "0.850", "-", today, "nlp_local", LONG_RUN_ID],
        ["2", production["version"], "production", "int8", "0.812", "0.860", "4.0", today, "nlp_local"]
        + ["scheduled__2026-12-02T00:00:00+00:00"],
        ["1", archived["version"], "archived", "fp32", "0.612", "0.500", "10.0", today, "nlp_local"]
        + ["manual__2026-12-01T10:00:00+00:00"],
    ]
    lines = out.splitlines()
    for line, row in zip(lines[1:], rows, strict=True):
        for column in ("version", "status", "run"):
            start = lines[0].index(f" {column}") + 1
            assert line[start:].startswith(row[LIST_HEADERS.index(column)]), f"{column} is aligned:\n{out}"
        assert line.index(" 0.") + 6 == lines[0].index("accuracy") + len("accuracy"), f"figures right-aligned:\n{out}"


def test_list_json_round_trips_every_field_newest_first(tmp_path, capsys):
    registry_file, entries = three_entries(tmp_path)
    code, out, _ = registry_says(capsys, "list", "--json", "--registry", str(registry_file))
    listed = json.loads(out)
    assert code == 0 and [entry["id"] for entry in listed] == [3, 2, 1]
    assert listed == Registry(registry_file).entries()
    stored = {row["id"]: row for row in rows(registry_file)}
    for entry in listed:
        row = stored[entry["id"]]
        assert entry.keys() == row.keys(), "every column of the registry"
        assert entry == row | {column: json.loads(row[column]) for column in ("reasons", "metrics", "config")}


def test_show_prints_a_model_with_its_lineage_and_model_card(tmp_path, capsys):
    registry_file = tmp_path / "registry.sqlite"
    model = carded_model_folder(tmp_path, "quantized")
    evaluation = evaluation_folder(tmp_path, EVALUATION | {"precision": "int8", "latency_ms_b1_p99": 7.25})
    lineage = {"config": '{"epochs": 2, "learning_rate": 0.0002}', "dag_id": "nlp_local"}
    first = register(registry_file, model, evaluation, **lineage, run_id="manual__1", logical_date="20261201T000000Z")
    again = register(registry_file, model, evaluation, **lineage, run_id="manual__2", logical_date="20261202T000000Z")
    code, out, _ = registry_says(capsys, "show", first["version"], "--registry", str(registry_file))
    assert code == 0
    newest, oldest = out.split("\n\n")
    assert newest.startswith(f"{again['version']}: registry entry {again['id']} of {registry_file}\n")
    assert oldest.startswith(f"{first['version']}: registry entry {first['id']} of {registry_file}\n")
    card = model / "README.md"
    fields = dict(re.split(r" {2,}", line.strip(), maxsplit=1) for line in newest.splitlines() if line.startswith("  "))
    assert fields == {
        "status": "candidate",
        "registered": again["created_at"],
        "last changed": again["updated_at"],
        "gate decision": "promote",
        "gate reasons": "ok",
        "precision": "int8",
        "accuracy": "0.800",
        "F1": "0.850",
        "latency b1 p50 (ms)": "-",
        "latency b1 p99 (ms)": "7.2",
        "throughput b32 (pairs/s)": "-",
        "data fingerprint": CARD["data"]["fingerprint"],
        "base model": CARD["base_model"],
        "training config": '{"epochs": 2, "learning_rate": 0.0002}',
        "DAG": "nlp_local",
        "run": "manual__2",
        "logical date": "20261202T000000Z",
        "folder": str(model),
        "digest": digest.verify(model),
        "model card": str(card),
    }
    metadata = ModelCard.load(card).data.to_dict()
    assert metadata["model-index"][0]["results"], "the card the registry links has YAML metadata with model-index"

    code, out, _ = registry_says(capsys, "show", first["version"], "--json", "--registry", str(registry_file))
    assert json.loads(out) == [entry | {"model_card": str(card)} for entry in Registry(registry_file).entries()]
    code, out, _ = registry_says(capsys, "show", str(first["id"]), "--json", "--registry", str(registry_file))
    assert [entry["id"] for entry in json.loads(out)] == [first["id"]], "an entry id names one entry"


def test_show_says_when_the_model_card_is_gone_or_inside_an_archive(tmp_path, capsys):
    registry_file, entries = three_entries(tmp_path)
    code, out, _ = registry_says(capsys, "show", "1", "--registry", str(registry_file))
    assert code == 0 and f"model card                {tmp_path}/model-0/README.md (not found)" in out
    archive = "s3://bucket/jobs/train-1/output/model.tar.gz"
    Registry(registry_file).register(
        model=archive, version="fp32-0a0a0a0a0a0a", status="candidate", evaluation={}, card={}, digest=None
    )
    code, out, _ = registry_says(capsys, "show", "fp32-0a0a0a0a0a0a", "--json", "--registry", str(registry_file))
    assert json.loads(out)[0]["model_card"] is None
    code, out, _ = registry_says(capsys, "show", "fp32-0a0a0a0a0a0a", "--registry", str(registry_file))
    assert code == 0 and "model card                inside the model's archive" in out


def test_an_unknown_version_is_an_error_naming_it_and_the_registry(tmp_path, capsys):
    registry_file, (archived, *_) = three_entries(tmp_path)
    mistyped = archived["version"][:-1] + "x"
    code, out, err = registry_says(capsys, "show", mistyped, "--registry", str(registry_file))
    assert code == ConfigError.exit_code == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"error: no model {mistyped!r} in the registry {registry_file}: did you mean {archived['version']}?"
    )
    code, _, err = registry_says(capsys, "show", "fp32-000000000000", "--json", "--registry", str(registry_file))
    assert code == 2 and "`registry list` shows its versions" in err


def test_an_empty_registry_says_so_and_a_missing_one_is_refused(tmp_path, capsys):
    empty = tmp_path / "registry.sqlite"
    Registry(empty)
    assert registry_says(capsys, "list", "--registry", str(empty)) == (0, f"no models registered in {empty}\n", "")
    assert registry_says(capsys, "list", "--json", "--registry", str(empty)) == (0, "[]\n", "")
    missing = tmp_path / "mistyped.sqlite"
    for action in (["list"], ["show", "fp32-0123456789ab"]):
        code, out, err = registry_says(capsys, *action, "--registry", str(missing))
        assert (code, out) == (2, "") and err.startswith(f"error: --registry {missing}: no such registry"), err
    assert not missing.exists(), "looking at a registry creates none"


def test_the_registry_comes_from_the_environment_when_not_given(tmp_path, capsys, monkeypatch):
    registry_file, _ = three_entries(tmp_path)
    code, _, err = registry_says(capsys, "list")
    assert code == 2 and f"set the environment variable {REGISTRY_ENV}" in err
    monkeypatch.setenv(REGISTRY_ENV, str(registry_file))
    code, out, _ = registry_says(capsys, "list")
    assert code == 0 and out.splitlines()[0].startswith("id  version")


def test_the_action_is_a_word_or_a_flag_and_the_pipelines_actions_print_json(tmp_path, capsys):
    registry_file, (_, production, _) = three_entries(tmp_path)
    where = ["--registry", str(registry_file)]
    assert cli.parse("registry", ["show", "v1", *where]) == cli.parse(
        "registry", ["--action", "show", "--version", "v1", *where]
    )
    assert cli.parse("registry", ["promote", "--id", "2", *where]) == cli.parse(
        "registry", ["--action", "promote", "--id", "2", *where]
    )
    for arguments, message in (
        (["list", "--action", "show"], "ACTION given twice, as a word ('list') and as --action"),
        (["list", "v1"], "unexpected word 'v1' after list; usage: python -m tasks registry [ACTION [VERSION]]"),
        (["--action", "list", "--version", "v1"], "--version must be given only to show"),
        (["explode"], "--action must be one of list, show, register, promote, production, got 'explode'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            cli.parse("registry", [*arguments, *where])
    assert cli.parse("registry", [*where, "show", "v1"]) == cli.parse("registry", ["show", "v1", *where])
    with pytest.raises(ConfigError, match="--action must be one of list, show, register, promote, production, got 'x'"):
        RegistryArguments(registry=str(registry_file), action="x")
    for arguments in (["production", *where], [*where, "--action", "production"]):
        code, out, _ = registry_says(capsys, *arguments)
        assert code == 0 and json.loads(out)["id"] == production["id"]


def test_a_non_ascii_digit_is_looked_up_as_a_version_not_an_id(tmp_path, capsys):
    registry_file, _ = three_entries(tmp_path)
    code, out, err = registry_says(capsys, "show", "²", "--registry", str(registry_file))
    assert (code, out) == (2, "") and "no model '²' in the registry" in err, err


@pytest.mark.parametrize(
    "arguments",
    [["--json", "list"], ["list", "--json"], ["--json"]],
    ids=["flag-first", "flag-last", "flag-alone"],
)
def test_json_is_a_plain_flag_wherever_it_stands_in_list(tmp_path, capsys, arguments):
    registry_file, entries = three_entries(tmp_path)
    code, out, err = registry_says(capsys, *arguments, "--registry", str(registry_file))
    assert code == 0, err
    assert [entry["id"] for entry in json.loads(out)] == sorted((entry["id"] for entry in entries), reverse=True)


def test_json_is_a_plain_flag_between_show_and_its_version(tmp_path, capsys):
    registry_file, (first, *_) = three_entries(tmp_path)
    code, out, err = registry_says(capsys, "show", "--json", first["version"], "--registry", str(registry_file))
    assert code == 0, err
    assert {entry["version"] for entry in json.loads(out)} == {first["version"]}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["list", "extra"], "unexpected word 'extra' after list"),
        (["production", "v1"], "unexpected word 'v1' after production"),
        (["show", "v1", "v2"], "unexpected word 'v2' after show v1"),
    ],
)
def test_a_word_an_action_does_not_take_is_named(tmp_path, capsys, arguments, message):
    registry_file, _ = three_entries(tmp_path)
    code, out, err = registry_says(capsys, *arguments, "--registry", str(registry_file))
    assert (code, out) == (2, "") and message in err, err


TUNING = {
    "uri": "/runs/tuning/tuning.json",
    "objective": "validation accuracy",
    "best": {
        "name": "trial-001",
        "setting": {"learning_rate": 0.0001, "epochs": 4, "batch_size": 16, "warmup_ratio": 0.06, "weight_decay": 0.01},
        "accuracy": 0.85,
        "f1": 0.89,
    },
    "trials": [
        {
            "name": f"trial-{index:03d}",
            "setting": {
                "learning_rate": rate,
                "epochs": 4,
                "batch_size": 16,
                "warmup_ratio": 0.06,
                "weight_decay": 0.01,
            },
            "accuracy": accuracy,
            "f1": None if accuracy is None else accuracy + 0.04,
            "status": "failed" if accuracy is None else "completed",
            "epochs_run": None if accuracy is None else 4,
        }
        for index, (rate, accuracy) in enumerate([(2e-5, 0.7), (1e-4, 0.85), (3e-4, None)])
    ],
}


def test_a_tuned_model_keeps_its_search_in_the_entry_and_show_prints_it(tmp_path, capsys, monkeypatch):
    model = tmp_path / "tuned"
    (model / "saved_model").mkdir(parents=True)
    (model / "saved_model" / "saved_model.pb").write_bytes(b"graph of tuned")
    model_card.write(model, CARD | {model_card.TUNING: TUNING})
    digest.seal(model)
    registry_file = tmp_path / "registry.sqlite"
    result_file = tmp_path / "termination-message"
    monkeypatch.setenv("TASKS_RESULT_FILE", str(result_file))
    entry = register(registry_file, model, evaluation_folder(tmp_path))
    assert entry["tuning"] == TUNING and Registry(registry_file).entries()[0]["tuning"] == TUNING
    # The termination message counts the trials: 32 of them would overflow its 4096 bytes.
    assert json.loads(result_file.read_text())["tuning"] == {
        key: TUNING[key] for key in ("uri", "objective", "best")
    } | {"trials": 3}

    code, out, _ = registry_says(capsys, "show", entry["version"], "--registry", str(registry_file))
    assert code == 0
    tuning = out.split("\ntuning\n")[1].splitlines()
    fields = dict(re.split(r" {2,}", line.strip(), maxsplit=1) for line in tuning)
    assert fields == {
        "search": "/runs/tuning/tuning.json",
        "chosen setting": "learning_rate 0.0001, epochs 4, batch_size 16, warmup_ratio 0.06, weight_decay 0.01",
        "chosen trial": "trial-001: accuracy 0.850, F1 0.890",
        "trial-000": "learning_rate 2e-05, epochs 4, batch_size 16, warmup_ratio 0.06, weight_decay 0.01: accuracy"
        " 0.700, F1 0.740 (completed)",
        "trial-001": "learning_rate 0.0001, epochs 4, batch_size 16, warmup_ratio 0.06, weight_decay 0.01: accuracy"
        " 0.850, F1 0.890 (completed)",
        "trial-002": "learning_rate 0.0003, epochs 4, batch_size 16, warmup_ratio 0.06, weight_decay 0.01: accuracy -,"
        " F1 - (failed)",
    }
    untuned = register(registry_file, model_folder(tmp_path, "untuned"), evaluation_folder(tmp_path))
    assert untuned["tuning"] is None
    code, out, _ = registry_says(capsys, "show", untuned["version"], "--registry", str(registry_file))
    assert "\ntuning\n" not in out
