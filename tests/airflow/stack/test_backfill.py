"""``airflow backfill create`` with a scheduler running: one pipeline per interval, each in its own folder,
each model registered, none deployed."""

import json
import time
from pathlib import Path

import httpx

from tests.airflow.conftest import json_output, run_airflow, smoke_conf
from tests.airflow.stack.conftest import REST_TIMEOUT, api_headers
from tests.conftest import run_tasks


def backfill_runs(env: dict) -> list[dict]:
    runs = json_output(run_airflow(env, "dags", "list-runs", "nlp_local", "-o", "json"))
    return sorted((run for run in runs if run["run_id"].startswith("backfill__")), key=lambda run: run["run_id"])


def test_a_backfill_runs_each_interval_and_never_deploys(airflow_stack, raw_data, tiny_model):
    env = airflow_stack["env"]
    # A seed of its own: no other test's production model may make these runs hit the training cache.
    conf = smoke_conf(raw_data, tiny_model, seed=3, quantize=False, deploy=True)
    run_airflow(
        env,
        "backfill",
        "create",
        "--dag-id",
        "nlp_local",
        "--from-date",
        "2024-01-01",
        "--to-date",
        "2025-01-01",
        "--dag-run-conf",
        json.dumps(conf),
    )

    deadline = time.monotonic() + 900
    while True:
        runs = backfill_runs(env)
        if len(runs) == 2 and all(run["state"] in ("success", "failed") for run in runs):
            break
        assert time.monotonic() < deadline, f"backfill not done: {runs}\n{airflow_stack['log'].read_text()[-3000:]}"
        time.sleep(5)
    assert [run["state"] for run in runs] == ["success"] * 2, runs

    artefacts = Path(env["AIRFLOW_VAR_NLP_ARTEFACT_ROOT"])  # shared with the other tests on the stack
    folders = ["20240101T000000Z", "20250101T000000Z"]
    for folder in folders:
        assert {path.name for path in (artefacts / "nlp_local" / folder).iterdir()} == {"staged", "model", "evaluation"}
    entries = json.loads(
        run_tasks("registry", "list", "--json", "--registry", str(artefacts / "registry.sqlite")).stdout
    )
    backfilled = [entry for entry in entries if entry["run_id"].startswith("backfill__")]
    assert sorted(entry["logical_date"] for entry in backfilled) == folders
    assert {entry["status"] for entry in backfilled} == {"approved"}  # registered, never production
    headers = api_headers(airflow_stack["url"])
    for run in runs:
        deploy = httpx.get(
            f"{airflow_stack['url']}/api/v2/dags/nlp_local/dagRuns/{run['run_id']}/taskInstances/deploy",
            headers=headers,
            timeout=REST_TIMEOUT,
        ).json()
        assert deploy["state"] == "skipped", run["run_id"]
