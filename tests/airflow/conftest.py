"""An Airflow home of its own for the Airflow tests: SQLite, this repo's dags/ and plugins/, no examples."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"


def airflow_env(home: Path, artefacts: Path, **extra: str) -> dict:
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": str(artefacts),
        **extra,
    }


def run_airflow(env: dict, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"airflow {' '.join(args)} exited {result.returncode}:\n{result.stdout[-6000:]}\n"
                             f"{result.stderr[-6000:]}")  # fmt: skip
    return result


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> dict:
    """A migrated Airflow home; yields the environment that points the CLI at it."""
    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(home, home / "artefacts")
    run_airflow(env, "db", "migrate")
    return env
