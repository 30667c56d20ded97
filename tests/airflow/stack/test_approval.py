"""require_approval: the rollout waits in Airflow's human-in-the-loop until a person approves it."""

import time

import httpx

from tests.airflow.conftest import smoke_conf
from tests.airflow.stack.conftest import REST_TIMEOUT, api_headers
from tests.conftest import free_port, run_tasks


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(3)
    return result


# Airflow 3.3.2 race: an answer within about a second of the question resumes the task before the scheduler
# has handled the parked worker's exit, and the scheduler then fails that try; `approve` retries once and asks
# again. So the test answers whenever the question is open, as a person would.
def test_a_rollout_waits_for_approval_then_deploys(airflow_stack, raw_data, tiny_model):
    url, port = airflow_stack["url"], free_port()
    headers, runs = api_headers(url), f"{url}/api/v2/dags/nlp_local/dagRuns"
    conf = smoke_conf(raw_data, tiny_model, quantize=False, require_approval=True, endpoint_port=port)
    run = httpx.post(runs, headers=headers, json={"logical_date": None, "conf": conf}, timeout=REST_TIMEOUT)
    run.raise_for_status()
    run_id = run.json()["dag_run_id"]
    tasks = f"{runs}/{run_id}/taskInstances"

    def state(task_id: str) -> str | None:
        return httpx.get(f"{tasks}/{task_id}", headers=headers, timeout=REST_TIMEOUT).json().get("state")

    def answer_when_asked() -> str | None:
        """Approve whenever the question is open, as a person would; the run's state once it has ended."""
        if state("approve") == "awaiting_input":
            answer = httpx.patch(
                f"{tasks}/approve/-1/hitlDetails",
                headers=headers,
                json={"chosen_options": ["Approve"]},
                timeout=REST_TIMEOUT,
            )
            assert answer.status_code in (200, 409), answer.text  # 409: answered already, not yet resumed
            asked.append(answer.status_code)
        current = httpx.get(f"{runs}/{run_id}", headers=headers, timeout=REST_TIMEOUT).json()["state"]
        return current if current in ("success", "failed") else None

    asked: list[int] = []
    try:
        wait_until(lambda: state("approve") == "awaiting_input", 600, "the approval to be asked for")
        assert state("deploy") is None and state("register") == "success"
        final = wait_until(answer_when_asked, 900, "the run to finish")
        assert 200 in asked, "no approval was given"
        assert final == "success" and state("deploy") == "success" and state("mark_production") == "success"
        assert httpx.get(f"http://127.0.0.1:{port}/ping").json()["status"] == "ready"
    finally:  # never leave this run active: with max_active_runs=1 it would hold back every later test's run
        current = httpx.get(f"{runs}/{run_id}", headers=headers, timeout=REST_TIMEOUT).json()["state"]
        if current not in ("success", "failed"):
            httpx.patch(f"{runs}/{run_id}", headers=headers, json={"state": "failed"}, timeout=REST_TIMEOUT)
        run_tasks(
            "stop-local",
            "--state",
            f"{airflow_stack['env']['AIRFLOW_VAR_NLP_ARTEFACT_ROOT']}/nlp_local/endpoint",
            check=False,
        )
