"""Airflow homes of their own for the Airflow tests, with this repo's dags/ and plugins/ and no examples:
SQLite for ``airflow dags test`` (one process, as ``make demo``). The running stack, docker-compose.yaml's
services on PostgreSQL, belongs to the tests in stack/ alone."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
# Test artefacts CI keeps: screenshots, and the whole output of an airflow command that failed.
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", REPO / "test-artifacts"))


# The promotion policy of the tests' Airflow homes: a model trained for one epoch on a small data set passes the
# gate; a test's conf tightens it where the test is about the gate.
TEST_POLICY = {"min_accuracy": 0, "min_f1": 0, "champion_margin": 1, "max_int8_loss": 1}


@pytest.fixture(scope="session", autouse=True)
def allowed_sources(tmp_path_factory):
    """The Variable nlp_allowed_sources of every Airflow test, in this process and in the airflow commands and
    stack it starts (they copy this environment): the hub, the moto server's buckets and the tests' temporary
    folders, where their data sets are (unset, only the hub is allowed). A test of the allow-list sets its own."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # every test process's base folder is in it, and the session-wide data sets
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_VAR_NLP_ALLOWED_SOURCES", json.dumps(["hf://", "s3://", str(root)]))
        yield


def airflow_env(home: Path, artefacts: Path, **extra: str) -> dict:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # `airflow ...` subprocesses are started by name
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": str(artefacts),
        "AIRFLOW_VAR_NLP_PROMOTION_POLICY": json.dumps(TEST_POLICY),
        **extra,
    }


def smoke_conf(source, base_model, **params) -> dict:
    """A DAG run's conf that runs every step, fast, on a small data set and the tiny BERT: quick timing, one
    epoch at a high learning rate (TEST_POLICY lets its model through the gate); ``params`` add or override."""
    fast = {"timing": "quick", "epochs": 1, "batch_size": 16, "learning_rate": 1e-3}
    return {"source": str(source), "base_model": str(base_model)} | fast | params


def run_airflow(env: dict, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """``airflow ARGS`` with ``env``; its exit status checked unless ``check`` is false."""
    result = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"airflow {' '.join(args)} exited {result.returncode} (whole output: "
            f"{keep_output(result, args)}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def keep_output(result: subprocess.CompletedProcess, args) -> Path:
    """Save a command's whole output under ARTIFACTS, named after its first arguments."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / ("airflow-" + "-".join(str(arg) for arg in args[:4]).replace("/", "_") + ".log")
    path.write_text(f"$ airflow {' '.join(map(str, args))}\n{result.stdout}\n{result.stderr}")
    return path


def json_output(result: subprocess.CompletedProcess):
    """The JSON line of an ``airflow ... -o json`` command (warnings may print before it)."""
    return json.loads(next(line for line in reversed(result.stdout.splitlines()) if line.startswith("[")))


def dags_test(env: dict, dag_id: str, conf: dict, logical_date: str | None = None, state: str = "success") -> str:
    """``airflow dags test DAG_ID [LOGICAL_DATE] -c CONF``, which must end in ``state``; returns the run id."""
    result = run_airflow(env, "dags", "test", dag_id, *([logical_date] if logical_date else []), "-c", json.dumps(conf))
    finished = [line for line in result.stdout.splitlines() if "DagRun Finished" in line]
    assert finished and f"state={state}" in finished[-1], (
        f"{keep_output(result, ('dags', 'test', dag_id))}: {result.stdout[-6000:]}"
    )
    return finished[-1].split("run_id=")[1].split(",")[0]


def task_states(env: dict, dag_id: str, run_id: str) -> dict:
    result = run_airflow(env, "tasks", "states-for-dag-run", dag_id, run_id, "-o", "json")
    return {row["task_id"]: row["state"] for row in json_output(result)}


def model_events(env: dict, dag_id: str, run_id: str) -> list[tuple[str, str, dict]]:
    """The run's events on the model Assets, as Airflow's metadata database (the home's SQLite file) holds
    them: (task id, Asset name, extra), oldest first."""
    import sqlite3
    from contextlib import closing

    database = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    assert database.is_file(), f"no metadata database at {database}"
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT event.source_task_id, asset.name, event.extra FROM asset_event AS event"
            " JOIN asset ON asset.id = event.asset_id"
            " WHERE event.source_dag_id = ? AND event.source_run_id = ? AND asset.name LIKE 'nlp_model_%'"
            " ORDER BY event.id",
            (dag_id, run_id),
        ).fetchall()
    return [(task_id, name, json.loads(extra)) for task_id, name, extra in rows]


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> dict:
    """A migrated Airflow home with the pipeline's pools, as `make demo` makes one; yields the environment that
    points the CLI at it."""
    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(home, home / "artefacts")
    run_airflow(env, "db", "migrate")
    import_pools(env, home / "pools.json")
    return env


def import_pools(env: dict, path: Path) -> None:
    """``airflow pools import`` of the pools the pipeline's tasks run in (plugins/nlp_pipeline/limits.py)."""
    pools = subprocess.run(
        [str(BIN / "python"), "-c", "import json; from nlp_pipeline.limits import pools; print(json.dumps(pools()))"],
        env=env | {"PYTHONPATH": str(REPO / "plugins")},
        capture_output=True,
        text=True,
        check=True,
    )
    path.write_text(pools.stdout)
    run_airflow(env, "pools", "import", str(path))


@pytest.fixture
def fake_sagemaker(s3, tmp_path, monkeypatch):
    """SageMaker on the moto server: jobs that run the real steps (tests/fakes/sagemaker.py)."""
    from tests.fakes.sagemaker import FakeSageMaker

    fake = FakeSageMaker(s3["env"]["AWS_ENDPOINT_URL"], tmp_path / "sagemaker").install(monkeypatch)
    yield fake
    fake.close()


@pytest.fixture
def aws(s3, fake_sagemaker, monkeypatch):
    """The aws_default connection and nlp_sagemaker's Variables in this process, for SageMaker operators run
    here as a task runner would run them; ``sagemaker``: a boto3 client of the fake, ``fake``: the fake."""
    from types import SimpleNamespace

    import boto3

    from tests.fakes.sagemaker import IMAGE, REGION, ROLE

    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": REGION, "endpoint_url": s3["env"]["AWS_ENDPOINT_URL"]},
    }
    for name, value in {
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
        "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": f"s3://{s3['bucket']}/artefacts",
        "AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN": ROLE,
        "AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE": IMAGE,
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("sagemaker", endpoint_url=s3["env"]["AWS_ENDPOINT_URL"], region_name=REGION)
    return SimpleNamespace(sagemaker=client, fake=fake_sagemaker, s3=s3)


@pytest.fixture
def fake_kubernetes(tmp_path, monkeypatch):
    """A Kubernetes cluster on kmock (tests/fakes/kubernetes.py), the ``kubernetes_default`` connection to it
    and the nlp_eks Variables, in this process's environment and in ``cluster.env`` for airflow commands."""
    from tests.fakes.kubernetes import FakeKubernetes
    from tests.fakes.sagemaker import IMAGE

    cluster = FakeKubernetes(tmp_path / "cluster", poll=0.2)
    connection = {
        "conn_type": "kubernetes",
        "extra": {"kube_config_path": str(cluster.kubeconfig(tmp_path / "kubeconfig")), "namespace": "nlp"},
    }
    cluster.env = {
        "AIRFLOW_CONN_KUBERNETES_DEFAULT": json.dumps(connection),
        "AIRFLOW_VAR_NLP_TASK_IMAGE": IMAGE,
        "AIRFLOW_VAR_NLP_K8S_VOLUME_PATH": str(cluster.volume),
        # The cluster's limits allow the taint of its Intel node group, which the tests' runs tolerate.
        "AIRFLOW_VAR_NLP_K8S_LIMITS": json.dumps({"toleration_keys": ["intel"]}),
        "NLP_K8S_POLL_SECONDS": "1",
    }
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    yield cluster
    cluster.stop()
