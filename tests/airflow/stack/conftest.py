"""The tests that need the running Airflow stack: docker-compose.yaml's services (compose_stack.py) on
PostgreSQL (postgres.py). The stack is started for the first of these tests and stopped after the last, so it
never runs beside the rest of the suite."""

from __future__ import annotations

import json
import os

import pytest

from tests.airflow.conftest import BIN, TEST_POLICY, run_airflow
from tests.airflow.stack.postgres import postgres_server

# The api-server shares two cores with training steps: slower than httpx's default 5 s at times.
REST_TIMEOUT = 60


def api_headers(url: str) -> dict:
    import httpx

    token = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=REST_TIMEOUT)
    token = token.json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def fail_scheduled_runs(url: str, timeout: float = 60) -> None:
    import time

    import httpx

    headers, runs = api_headers(url), f"{url}/api/v2/dags/nlp_local/dagRuns"
    deadline = time.monotonic() + timeout
    while not (
        scheduled := [
            run
            for run in httpx.get(runs, headers=headers, timeout=REST_TIMEOUT).json()["dag_runs"]
            if run["run_type"] == "scheduled"
        ]
    ):
        assert time.monotonic() < deadline, "unpausing nlp_local scheduled no run"
        time.sleep(1)
    for run in scheduled:
        failed = httpx.patch(
            f"{runs}/{run['dag_run_id']}", headers=headers, json={"state": "failed"}, timeout=REST_TIMEOUT
        )
        failed.raise_for_status()


@pytest.fixture(scope="package")
def metadata_database():
    """The stack's metadata database: PostgreSQL, the one Airflow supports for concurrent components."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="package")
def airflow_stack(tmp_path_factory, metadata_database):
    """docker-compose.yaml's Airflow stack (compose_stack.py): airflow-init, then api-server,
    scheduler, dag-processor and triggerer with the LocalExecutor on PostgreSQL, each started and checked as
    compose would, on 127.0.0.1 ports; user admin/admin, nlp_local parsed and unpaused. Unpausing schedules
    the latest interval (catchup=False) with the default Params, which read the hub, offline here: that run
    is failed at once, so only the runs and backfills a test starts run. Stopped after this package's last
    test, so no later test shares the machine with it."""
    import time

    from airflow.utils.net import get_hostname

    from tests.airflow.stack.compose_stack import running
    from tests.conftest import free_port

    root, ports = tmp_path_factory.mktemp("compose"), {"api": free_port(), "scheduler_health": free_port()}
    url = f"http://127.0.0.1:{ports['api']}"
    variables = {
        "_AIRFLOW_WWW_USER_USERNAME": "admin",
        "_AIRFLOW_WWW_USER_PASSWORD": "admin",
        "AIRFLOW_UID": str(os.getuid()),
        "NLP_RETRAIN_SCHEDULE": "0 0 1 1 *",
    }
    overrides = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOSTNAME": get_hostname(),  # what a container's HOSTNAME is to Airflow's job records
        # This machine's ports, bound to 127.0.0.1 only (a container has 8080 and 8974 to itself).
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(ports["api"]),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(ports["scheduler_health"]),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW_VAR_NLP_PROMOTION_POLICY": json.dumps(TEST_POLICY),
    }
    logs = tmp_path_factory.mktemp("compose-logs")
    with running(root, metadata_database, variables, overrides, ports, logs) as stack:
        env = stack.environment("airflow-scheduler")  # the CLI as `docker compose run airflow-cli` has it
        deadline = time.monotonic() + 300
        while "nlp_local" not in run_airflow(env, "dags", "list", "-o", "plain", check=False).stdout:
            assert time.monotonic() < deadline, (
                f"nlp_local was not parsed:\n{(logs / 'airflow-dag-processor.log').read_text()[-4000:]}"
            )
            time.sleep(2)
        run_airflow(env, "dags", "unpause", "nlp_local")
        fail_scheduled_runs(url)
        yield {
            "env": env,
            "url": url,
            "stack": stack,
            "log": logs / "airflow-scheduler.log",
            "scheduler_health_port": ports["scheduler_health"],
        }
