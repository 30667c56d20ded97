"""The running stack is docker-compose.yaml's: each Airflow service's and PostgreSQL's health checks pass."""

from __future__ import annotations

import json
import subprocess

from tests.airflow.stack.postgres import server_binaries
from tests.docker import compose
from tests.docker.compose import AIRFLOW_COMMANDS


def test_the_stack_runs_from_the_compose_file_and_passes_its_health_checks(airflow_stack, metadata_database):
    """The stack every Airflow test uses runs docker-compose.yaml's services with their environment
    (compose_stack.py): here each one's health check, run as its container would run it."""
    stack = airflow_stack["stack"]
    assert list(stack.processes) == list(AIRFLOW_COMMANDS)
    for name in AIRFLOW_COMMANDS:
        check = stack.check_health(name)
        assert check.returncode == 0, f"{name}: {stack.health_check(name)}\n{check.stdout}\n{check.stderr}"
    # airflow-init wrote the one airflow.cfg every component reads (their shared secrets are in it).
    config = stack.root / "opt" / "airflow" / "config"
    assert stack.environment("airflow-triggerer")["AIRFLOW_CONFIG"] == str(config / "airflow.cfg")
    assert "jwt_secret" in (config / "airflow.cfg").read_text()
    assert json.loads((config / "passwords.json").read_text()) == {"admin": "admin"}
    postgres = compose.load()["services"]["postgres"]["healthcheck"]["test"][1:]
    port = metadata_database.rsplit(":", 1)[1].split("/")[0]
    postgres = [str(server_binaries() / postgres[0]), *postgres[1:], "--host", "127.0.0.1", "--port", port]
    assert subprocess.run(postgres, capture_output=True).returncode == 0
