"""nlp_monitor_local end to end with `airflow dags test`, as `make demo` runs DAGs: the real monitor step reads capture
records under the artefact root against the traffic baseline of the registry's production model (the tiny BERT
trained on generated data). A window of long truncated pairs drifts: the event on nlp_drift_detected_local is
recorded; the next drifted window of the same model finds it (inlet_events) and signals nothing; a window with
too few pairs is not enough data."""

import json
import random
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tasks.monitoring import records
from tests.airflow.conftest import airflow_env, dags_test, run_airflow, task_states
from tests.conftest import run_tasks

WINDOW_END = datetime.fromisoformat("2026-11-30T12:00:00+00:00")


@pytest.fixture
def monitor_home(tmp_path, trained_tiny) -> tuple[dict, dict]:
    """An Airflow home of its own whose registry's production model is ``trained_tiny``: (environment, entry)."""
    env = airflow_env(tmp_path / "home", tmp_path / "artefacts")
    run_airflow(env, "db", "migrate")
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "evaluation.json").write_text(json.dumps({"decision": "promote", "accuracy": 0.9, "f1": 0.9}))
    registry = ("registry", "--registry", str(tmp_path / "artefacts" / "registry.sqlite"))
    entry = json.loads(
        run_tasks(
            *registry,
            *("--action", "register", "--model", str(trained_tiny), "--evaluation", str(evaluation)),
            *("--status", "approved"),
        ).stdout.splitlines()[-1]
    )
    promoted = run_tasks(*registry, "--action", "promote", "--id", str(entry["id"])).stdout.splitlines()[-1]
    return env, json.loads(promoted)


def capture(root: Path, version: str, start: datetime, count: int) -> None:
    """``count`` records of long, truncated pairs from ``start`` on, one a second, as the server writes them."""
    rng = random.Random(3)
    folder = root / "capture" / "nlp_local" / records.hour_folder(start)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        first = rng.randint(60, 70)
        record = {
            "time": records.stamp(start + timedelta(seconds=index)),
            "model_version": version,
            "request_id": f"r{index}",
            "tokens": [first, 128 - first],
            "truncated": True,
            "unknown_tokens": 0,
            "label": rng.randint(0, 1),
            "probability": 0.55,
        }
        lines.append(json.dumps(record))
    (folder / records.file_name(start, "host", 1, 0)).write_text("\n".join(lines) + "\n")


def drift_events(env: dict) -> list[tuple[str, dict]]:
    """The events on nlp_drift_detected_local in the home's metadata database: (source run id, extra)."""
    with closing(sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db")) as db:
        rows = db.execute(
            "SELECT event.source_run_id, event.extra FROM asset_event AS event JOIN asset ON asset.id = event.asset_id"
            " WHERE asset.name = 'nlp_drift_detected_local' ORDER BY event.id"
        ).fetchall()
    return [(run_id, json.loads(extra)) for run_id, extra in rows]


def test_drift_is_signalled_once_per_model_and_too_little_traffic_never(monitor_home, tmp_path):
    env, production = monitor_home
    conf = {"min_records": 50}
    capture(tmp_path / "artefacts", production["version"], WINDOW_END - timedelta(minutes=40), 120)

    run_id = dags_test(env, "nlp_monitor_local", conf, WINDOW_END.isoformat())
    states = task_states(env, "nlp_monitor_local", run_id)
    assert (states["signal_drift"], states["notify_drift"], states["no_drift"]) == ("success", "success", "skipped")
    [(source_run, extra)] = drift_events(env)
    assert source_run == run_id and extra["version"] == production["version"]
    assert "token_length_psi" in extra["drifted"] and extra["records"] == 120
    report = json.loads(Path(extra["uri"], "monitoring.json").read_text())
    assert report["status"] == "drift" and report["window"]["end"].startswith("2026-11-30T12:00:00")

    later = WINDOW_END + timedelta(minutes=10)  # the same drifted traffic, within a day of the signal
    run_id = dags_test(env, "nlp_monitor_local", conf, later.isoformat())
    states = task_states(env, "nlp_monitor_local", run_id)
    assert (states["detect_drift"], states["signal_drift"], states["notify_drift"]) == ("success", "skipped", "skipped")
    assert len(drift_events(env)) == 1, "the model's drift was signalled once"

    run_id = dags_test(env, "nlp_monitor_local", {"min_records": 500}, (later + timedelta(minutes=5)).isoformat())
    states = task_states(env, "nlp_monitor_local", run_id)
    assert (states["no_drift"], states["signal_drift"]) == ("success", "skipped"), "not enough data is never drift"
