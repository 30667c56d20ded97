"""Starting runs: an event on the source Asset starts one; the CLI refuses a bad Param."""

import time

import httpx

from tests.airflow.conftest import run_airflow
from tests.airflow.stack.conftest import REST_TIMEOUT, api_headers


def test_an_update_of_the_source_asset_triggers_a_run(airflow_stack):
    url = airflow_stack["url"]
    headers = api_headers(url)
    [asset] = httpx.get(
        f"{url}/api/v2/assets", params={"name_pattern": "nlp_source_data"}, headers=headers, timeout=REST_TIMEOUT
    ).json()["assets"]
    event = {"asset_id": asset["id"], "extra": {"landed": "s3://bucket/mrpc/2026-11-26/"}}
    httpx.post(f"{url}/api/v2/assets/events", json=event, headers=headers, timeout=REST_TIMEOUT).raise_for_status()

    runs_url = f"{url}/api/v2/dags/nlp_local/dagRuns"
    deadline = time.monotonic() + 120
    while not (
        triggered := [
            run
            for run in httpx.get(runs_url, headers=headers, timeout=REST_TIMEOUT).json()["dag_runs"]
            if run["run_type"] == "asset_triggered"
        ]
    ):
        assert time.monotonic() < deadline, "no run after the asset event"
        time.sleep(2)
    # The run has the default Params, which read the hub (offline here): it is enough that it started.
    httpx.patch(
        f"{runs_url}/{triggered[0]['dag_run_id']}", headers=headers, json={"state": "failed"}, timeout=REST_TIMEOUT
    )


def test_the_cli_refuses_a_run_with_a_bad_param(airflow_stack):
    result = run_airflow(airflow_stack["env"], "dags", "trigger", "nlp_local", "-c", '{"epochs": 0}', check=False)
    assert result.returncode != 0
    assert "Invalid input for param epochs: 0 is less than the minimum of 1" in result.stdout + result.stderr
