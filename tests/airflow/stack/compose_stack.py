"""docker-compose.yaml's Airflow stack run as processes on this machine: the stack the Airflow tests use.

There is no Docker engine here, so each service runs its compose command with its compose environment,
translated from the containers' world to this machine's:
- service names become 127.0.0.1 addresses (PostgreSQL: the test cluster; the api-server: a free port), and
  the ports a container has to itself (8080, 8974) become free ones on 127.0.0.1;
- container paths become folders under a temporary root: the repository folders compose bind-mounts
  (dags/, plugins/, tasks/) are linked there, named volumes are empty folders, and ``/entrypoint`` is a
  stand-in for the official image's (which migrates the database first when ``_AIRFLOW_DB_MIGRATE`` is set).
``airflow-init`` runs its own script to completion; then the long-running services start in compose's order,
each once the services it depends on pass their compose health checks.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.airflow.stack.browser import stop_session
from tests.conftest import REPO
from tests.docker import compose

AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
# What the official image sets that compose does not: Airflow's home.
IMAGE_ENVIRONMENT = {"AIRFLOW_HOME": "/opt/airflow"}
_CONTAINER_PATH = re.compile(r"(?<![\w.-])/(opt|home/airflow|entrypoint)\b")
_ENTRYPOINT = """#!/bin/sh
# Stands in for the official image's /entrypoint: migrate first when asked, then run the command.
if [ "${_AIRFLOW_DB_MIGRATE:-}" = "true" ]; then airflow db migrate > /dev/null || exit 1; fi
exec "$@"
"""


@dataclass
class ComposeStack:
    """The interpolated compose model and how its names and paths map onto this machine."""

    root: Path
    services: dict
    addresses: dict[str, str]
    overrides: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def translate(self, text: str) -> str:
        for container_address, address in self.addresses.items():
            text = text.replace(container_address, address)
        return _CONTAINER_PATH.sub(lambda match: f"{self.root}{match.group(0)}", text)

    def environment(self, name: str) -> dict[str, str]:
        service = self.services[name]
        container = IMAGE_ENVIRONMENT | {key: str(value) for key, value in service.get("environment", {}).items()}
        return {**os.environ, **{key: self.translate(value) for key, value in container.items()}, **self.overrides}

    def command(self, name: str) -> list[str]:
        service = self.services[name]
        command = service["command"]
        command = command if isinstance(command, list) else command.split()
        entrypoint = service.get("entrypoint", "airflow")  # the official image runs `airflow COMMAND`
        return [self.translate(part) for part in [*entrypoint.split(), *command]]

    def health_check(self, name: str) -> list[str]:
        test = self.services[name]["healthcheck"]["test"]
        command = ["bash", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
        return [self.translate(part) for part in command]

    def check_health(self, name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.health_check(name), env=self.environment(name), capture_output=True, text=True, timeout=120
        )

    def lay_out_volumes(self) -> None:
        """Bind mounts become links to the repository (or the given folder), named volumes empty folders."""
        for name in ("airflow-init", *AIRFLOW_SERVICES):
            for volume in self.services[name].get("volumes", []):
                source, target = volume.split(":")[:2]
                path = self.root / target.lstrip("/")
                if path.exists() or path.is_symlink():
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                if source.startswith((".", "/")):
                    path.symlink_to((REPO / source).resolve())
                else:
                    path.mkdir()
        entrypoint = self.root / "entrypoint"
        entrypoint.write_text(_ENTRYPOINT)
        entrypoint.chmod(0o755)


def dependencies_ready(stack: ComposeStack, name: str) -> bool:
    """Whether every service ``name`` depends on is up as its compose condition asks."""
    for dependency, condition in stack.services[name].get("depends_on", {}).items():
        if dependency in stack.processes and condition["condition"] == "service_healthy":
            if stack.check_health(dependency).returncode != 0:
                return False
    return True


@contextmanager
def running(
    root: Path,
    database_url: str,
    variables: dict[str, str],
    overrides: dict[str, str],
    ports: dict[str, int],
    log_folder: Path,
    timeout: float = 300,
) -> Iterator[ComposeStack]:
    """Run airflow-init, then the Airflow services; yield the stack; stop every service on exit.

    :param database_url: the metadata database on 127.0.0.1 that stands for the ``postgres`` service
    :param variables: what .env would hold, over .env.example's values
    :param overrides: environment settings the test adds on top of every service's compose environment
    :param ports: this machine's ports for the api-server's 8080 and the scheduler health server's 8974
    """
    database = database_url.split("@", 1)[1].split("/", 1)[0]
    stack = ComposeStack(
        root=root,
        services=compose.load({**compose.env_file(), **compose.FILLED_IN, **variables})["services"],
        addresses={
            "airflow-apiserver:8080": f"127.0.0.1:{ports['api']}",
            "localhost:8080": f"127.0.0.1:{ports['api']}",
            "localhost:8974": f"127.0.0.1:{ports['scheduler_health']}",
            "@postgres/": f"@{database}/",
        },
        overrides=overrides,
    )
    stack.lay_out_volumes()
    init = subprocess.run(
        stack.command("airflow-init"),
        env=stack.environment("airflow-init"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    (log_folder / "airflow-init.log").write_text(init.stdout + init.stderr)
    assert init.returncode == 0, f"airflow-init failed:\n{init.stdout[-3000:]}\n{init.stderr[-3000:]}"
    try:
        for name in AIRFLOW_SERVICES:
            deadline = time.monotonic() + timeout
            while not dependencies_ready(stack, name):
                assert time.monotonic() < deadline, f"{name}'s dependencies never became healthy"
                time.sleep(2)
            with (log_folder / f"{name}.log").open("wb") as log:
                stack.processes[name] = subprocess.Popen(
                    stack.command(name),
                    env=stack.environment(name),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        for name in AIRFLOW_SERVICES:
            deadline = time.monotonic() + timeout
            while (check := stack.check_health(name)).returncode != 0:
                assert stack.processes[name].poll() is None, f"{name} exited:\n{_tail(log_folder, name)}"
                assert time.monotonic() < deadline, (
                    f"{name} never passed its health check: {check.stdout}{check.stderr}\n{_tail(log_folder, name)}"
                )
                time.sleep(2)
        yield stack
    finally:
        for process in stack.processes.values():
            stop_session(process)


def _tail(log_folder: Path, name: str) -> str:
    return (log_folder / f"{name}.log").read_text(errors="replace")[-4000:]
