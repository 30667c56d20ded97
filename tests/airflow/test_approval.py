"""require_approval: the rollout waits in Airflow's human-in-the-loop until a person approves it."""

import time

import httpx

from tests.airflow.conftest import REST_TIMEOUT, api_headers
from tests.conftest import free_port, run_tasks


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(3)
    return result


def test_a_rollout_waits_for_approval_then_deploys(airflow_stack, raw_data, tiny_model):
    url, port = airflow_stack["url"], free_port()
    headers, runs = api_headers(url), f"{url}/api/v2/dags/nlp_local/dagRuns"
    conf = {"source": str(raw_data), "base_model": str(tiny_model), "epochs": 1, "batch_size": 16,
            "learning_rate": 1e-3, "quantize": False, "min_accuracy": 0, "min_f1": 0, "champion_margin": 1,
            "require_approval": True, "endpoint_port": port}  # fmt: skip
    run = httpx.post(runs, headers=headers, json={"logical_date": None, "conf": conf}, timeout=REST_TIMEOUT)
    run.raise_for_status()
    run_id = run.json()["dag_run_id"]
    tasks = f"{runs}/{run_id}/taskInstances"

    def state(task_id: str) -> str | None:
        return httpx.get(f"{tasks}/{task_id}", headers=headers, timeout=REST_TIMEOUT).json().get("state")

    try:
        wait_until(lambda: state("approve") in ("deferred", "awaiting_input"), 600, "the approval to be asked for")
        assert state("deploy") is None and state("register") == "success"
        answer = httpx.patch(
            f"{tasks}/approve/-1/hitlDetails",
            headers=headers,
            json={"chosen_options": ["Approve"]},
            timeout=REST_TIMEOUT,
        )
        answer.raise_for_status()
        final = wait_until(
            lambda: (
                (run := httpx.get(f"{runs}/{run_id}", headers=headers, timeout=REST_TIMEOUT).json())["state"]
                in ("success", "failed")
                and run["state"]
            ),
            600,
            "the run to finish",
        )
        assert final == "success" and state("deploy") == "success" and state("mark_production") == "success"
        assert httpx.get(f"http://127.0.0.1:{port}/ping").json()["status"] == "ready"
    finally:  # never leave this run active: with max_active_runs=1 it would hold back every later test's run
        current = httpx.get(f"{runs}/{run_id}", headers=headers, timeout=REST_TIMEOUT).json()["state"]
        if current not in ("success", "failed"):
            httpx.patch(f"{runs}/{run_id}", headers=headers, json={"state": "failed"}, timeout=REST_TIMEOUT)
        run_tasks("stop-local", "--state", f"{airflow_stack['env']['AIRFLOW_VAR_NLP_ARTEFACT_ROOT']}/nlp_local/endpoint",
                  check=False)  # fmt: skip
