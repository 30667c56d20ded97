"""Starting runs: an event on the source Asset starts one; the CLI refuses a bad Param."""

import time
from urllib.parse import quote

import httpx

from tests.airflow.conftest import run_airflow
from tests.airflow.stack.conftest import REST_TIMEOUT, api_headers


def test_an_update_of_the_source_asset_triggers_a_run(airflow_stack):
    url = airflow_stack["url"]
    headers = api_headers(url)
    runs_url = f"{url}/api/v2/dags/nlp_local/dagRuns"

    def asset_triggered() -> dict[str, dict]:
        runs = httpx.get(runs_url, headers=headers, params={"limit": 100}, timeout=REST_TIMEOUT).json()["dag_runs"]
        return {run["dag_run_id"]: run for run in runs if run["run_type"] == "asset_triggered"}

    before = asset_triggered()  # other tests' runs: the drift Asset starts nlp_local runs too (test_drift.py)
    [asset] = httpx.get(
        f"{url}/api/v2/assets", params={"name_pattern": "nlp_source_data"}, headers=headers, timeout=REST_TIMEOUT
    ).json()["assets"]
    event = {"asset_id": asset["id"], "extra": {"landed": "s3://bucket/mrpc/2026-11-26/"}}
    httpx.post(f"{url}/api/v2/assets/events", json=event, headers=headers, timeout=REST_TIMEOUT).raise_for_status()

    deadline = time.monotonic() + 120
    while not (triggered := [run for run_id, run in asset_triggered().items() if run_id not in before]):
        assert time.monotonic() < deadline, "no run after the asset event"
        time.sleep(2)
    events = httpx.get(
        f"{runs_url}/{quote(triggered[0]['dag_run_id'])}/upstreamAssetEvents", headers=headers, timeout=REST_TIMEOUT
    ).json()["asset_events"]
    assert [event["name"] for event in events] == ["nlp_source_data"]
    # The run has the default Params, which read the hub (offline here): it is enough that it started.
    httpx.patch(
        f"{runs_url}/{quote(triggered[0]['dag_run_id'])}",
        headers=headers,
        json={"state": "failed"},
        timeout=REST_TIMEOUT,
    )


def test_the_cli_refuses_a_run_with_a_bad_param(airflow_stack):
    result = run_airflow(airflow_stack["env"], "dags", "trigger", "nlp_local", "-c", '{"epochs": 0}', check=False)
    assert result.returncode != 0
    assert "Invalid input for param epochs: 0 is less than the minimum of 1" in result.stdout + result.stderr
