"""Nothing hangs for ever: every task of every platform has a time limit covering its step's own limits, a run
may take its longest path (the approval's wait included) and no longer, and a hung local step is stopped."""

import json
import shlex
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import eks, limits, local, pipeline, sagemaker  # noqa: E402
from nlp_pipeline.operators.sagemaker import attempts  # noqa: E402
from nlp_pipeline.params import eks_params, local_params, sagemaker_params  # noqa: E402
from nlp_pipeline.specs.sagemaker_api import MAX_EXECUTION_SECONDS as BLUE_GREEN_LONGEST  # noqa: E402

PLATFORMS = {"local": (local, local_params), "sagemaker": (sagemaker, sagemaker_params), "eks": (eks, eks_params)}
# The longest way through a run: every step, the approval, the rollout, and the rollback after a failed smoke test.
LONGEST_PATH = {
    "local": ["deploy"],
    "sagemaker": ["create_model", "create_endpoint_config", "deploy"],
    "eks": ["deploy"],
}
# Each platform's tuning stage: its trials (local, eks: a mapped task through the tuning pool) or its tuning job.
TUNING = {
    "local": ["plan_trials", "trial", "choose_setting"],
    "sagemaker": ["tune", "choose_setting"],
    "eks": ["plan_trials", "trial", "choose_setting"],
}
SAGEMAKER_JOB = timedelta(hours=sagemaker_params()["max_runtime_hours"].schema["maximum"])
EKS_ROLLOUT = timedelta(minutes=eks_params()["rollout_timeout_minutes"].schema["maximum"])


def build(name: str):
    platform, params = PLATFORMS[name]
    return pipeline.build_pipeline(name, platform, params=params(), doc_md=name, tags=[])


@pytest.mark.parametrize("name", PLATFORMS)
def test_every_task_has_its_time_limit(name):
    dag, expected = build(name), limits.task_limits(name)
    missing = sorted(task.task_id for task in dag.tasks if task.execution_timeout is None)
    assert not missing, f"{name}: no execution_timeout on {missing} (add them to plugins/nlp_pipeline/limits.py)"
    for task in dag.tasks:
        assert task.execution_timeout == expected[task.task_id], task.task_id


def seconds(task) -> float:
    return task.execution_timeout.total_seconds()


def test_sagemaker_limits_cover_the_operators_waits():
    """A job's wait is its own limit plus provisioning (operators.sagemaker.attempts), as is the endpoint's."""
    dag = build("sagemaker")
    interval = dag.get_task("stage_dataset").check_interval
    for step in ("stage_dataset", "quantize", "evaluate"):  # MaxRuntimeInSeconds: the max_runtime_hours Param
        wait = attempts(SAGEMAKER_JOB.total_seconds(), interval) * interval
        assert seconds(dag.get_task(step)) > wait, step
    spot = attempts(2 * SAGEMAKER_JOB.total_seconds(), interval) * interval  # MaxWaitTimeInSeconds, twice it
    assert seconds(dag.get_task("train")) > spot
    register = dag.get_task("register")
    assert register.execution_timeout > register.approval_timeout
    deploy = dag.get_task("deploy")
    longest = attempts(BLUE_GREEN_LONGEST, deploy.check_interval) * deploy.check_interval
    assert seconds(deploy) > longest


def test_eks_limits_cover_the_pods_own():
    dag = build("eks")
    for task in dag.tasks:
        if hasattr(task, "startup_timeout_seconds"):  # a step's pod: scheduled and its image pulled first
            assert seconds(task) > task.startup_timeout_seconds, task.task_id
    train = dag.get_task("train")
    assert seconds(train) > train.job_timeout_seconds + train.startup_timeout_seconds
    assert dag.get_task("deploy").execution_timeout > 2 * EKS_ROLLOUT  # the rollout, and undoing a failed one


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_approval_waits_its_response_timeout(name):
    approve = build(name).get_task("approve")
    assert approve.execution_timeout >= approve.response_timeout == limits.APPROVAL_TIMEOUT


# Each platform's longest run, summed by hand from limits.py's table: policy, plan_trials, choose_setting, gate,
# register, choose_rollout and smoke_test 10 min each; the search (trial) its budget, 24 h; the approval 2 days.
RUN_LIMITS = {
    # + stage_dataset 2 h, train 24 h, quantize 6 h, evaluate 2 h, deploy and rollback 30 min each
    "local": timedelta(days=2) + timedelta(hours=24 + 2 + 24 + 6 + 2 + 1) + 7 * timedelta(minutes=10),
    # + stage_dataset, quantize and evaluate 120 h, train 240 h (Spot), the tuning job its budget 24 h, each 1 h to
    # start and 10 min; register 10 min more and 2 days (the model registry's approval); deploy 8 h (blue/green's longest) + 1 h + 10 min; rollback that and 1 h more
    "sagemaker": timedelta(days=4)
    + timedelta(hours=3 * 120 + 240 + 24)
    + 5 * timedelta(hours=1, minutes=10)
    + timedelta(minutes=10)
    + 2 * timedelta(hours=8 + 1, minutes=10)
    + timedelta(hours=1)
    + 7 * timedelta(minutes=10),
}


@pytest.mark.parametrize("name", PLATFORMS)
def test_a_run_may_take_its_longest_path_approval_included(name):
    dag = build(name)
    path = [
        "policy",
        "stage_dataset",
        *TUNING[name],
        "train",
        "quantize",
        "evaluate",
        "gate",
        "register",
        "choose_rollout",
        "approve",
        *LONGEST_PATH[name],
        "smoke_test",
        "rollback",
    ]
    longest = sum((dag.get_task(task_id).execution_timeout for task_id in path), timedelta(0))
    assert dag.dagrun_timeout == longest, "the whole search (the mapped trial) counts once, its budget"
    assert dag.dagrun_timeout > limits.APPROVAL_TIMEOUT + dag.get_task("train").execution_timeout


@pytest.mark.parametrize("name", sorted(RUN_LIMITS))
def test_a_runs_limit_is_its_tables_sum(name):
    assert build(name).dagrun_timeout == RUN_LIMITS[name]


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_run_limit_is_the_same_on_every_host(name, monkeypatch):
    """The DAG parsed on a 2-core and a 96-core host is one serialized version: no limit depends on the cores."""
    timeouts = set()
    for cores in (2, 96):
        monkeypatch.setattr(limits, "available_cores", lambda cores=cores: cores)
        timeouts.add(build(name).dagrun_timeout)
    assert len(timeouts) == 1, timeouts


@pytest.mark.parametrize("name", ["local", "eks"])
def test_the_trials_run_in_the_tuning_pool_within_the_searchs_budget(name):
    trial = build(name).get_task("trial")
    assert trial.is_mapped and trial.pool == limits.TUNING_POOL == "nlp_tuning"
    assert limits.TUNING_BUDGET == timedelta(hours=24)
    assert trial.execution_timeout >= limits.TUNING_BUDGET, "the whole search: no trial outlives it"


def test_the_tuning_jobs_limit_is_the_searchs_budget_and_its_provisioning():
    tune = build("sagemaker").get_task("tune")
    assert tune.execution_timeout == limits.TUNING_BUDGET + limits.JOB_START + timedelta(minutes=10)


@pytest.mark.parametrize(("cores", "slots"), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (16, 8), (96, 48)])
def test_the_tuning_pool_runs_a_trial_per_two_cores(cores, slots):
    assert limits.tuning_pool_slots(cores, memory_gib=1024) == slots
    assert cores // slots >= min(cores, 2), "each trial trains on 2 threads or more (all of a 1-core machine's)"


@pytest.mark.parametrize(
    ("cores", "memory_gib", "slots"), [(16, 64, 8), (16, 16, 4), (16, 7, 1), (16, 2, 1), (96, 8, 2)]
)
def test_the_tuning_pool_runs_no_more_trials_than_memory_holds(cores, memory_gib, slots):
    """A trial (a training process) takes about 4 GiB (limits.GIB_PER_TRIAL)."""
    assert limits.GIB_PER_TRIAL == 4
    assert limits.tuning_pool_slots(cores, memory_gib=memory_gib) == slots


def pools_written_by(line: str, home) -> dict:
    """The pools JSON a setup line's ``python -c`` prints, run here (with this repo's plugins)."""
    words = shlex.split(line)
    code = words[words.index("-c") + 1]
    printed = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(home)},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(printed.stdout)


def test_every_airflow_home_gets_the_tuning_pool_from_limits_pools(tmp_path, monkeypatch):
    """`make demo` and `make airflow`, docker-compose's airflow-init and the tests' Airflow home (conftest) import the
    pools limits.pools() gives: nlp_tuning, half the cores."""
    from tests.airflow import conftest
    from tests.docker import compose

    for target in ("demo", "airflow"):
        make = subprocess.run(
            ["make", "-n", target, f"DEMO={tmp_path}"], cwd=REPO, capture_output=True, text=True, check=True
        )
        lines = make.stdout.splitlines()
        [writer] = [line for line in lines if "nlp_pipeline.limits import pools" in line]
        [importer] = [line for line in lines if " pools import " in line]
        assert pools_written_by(writer, tmp_path) == limits.pools(), target
        assert shlex.split(writer)[-1] == shlex.split(importer)[-3], "the file written is the file imported"
        migrate = next(index for index, line in enumerate(lines) if "airflow db migrate" in line)
        assert migrate < lines.index(importer), f"make {target} imports the pools into a migrated database"
    script = compose.load()["services"]["airflow-init"]["command"][1].replace("\\\n", " ")
    [writer] = [line for line in script.splitlines() if "nlp_pipeline.limits import pools" in line]
    assert pools_written_by(writer, tmp_path) == limits.pools()
    assert "airflow pools import /opt/airflow/config/pools.json" in script
    imported = []
    monkeypatch.setattr(conftest, "run_airflow", lambda env, *words: imported.append(words))
    conftest.import_pools({"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path)}, tmp_path / "pools.json")
    assert imported == [("pools", "import", str(tmp_path / "pools.json"))], "the tests' Airflow home imports it"
    assert json.loads((tmp_path / "pools.json").read_text()) == limits.pools()


def test_the_pools_are_the_tuning_pool_of_this_machines_size(monkeypatch):
    """8 usable cores and 64 GiB: 4 trials at once; 8 cores and 8 GiB: 2 (4 GiB each)."""
    monkeypatch.setattr(limits, "available_cores", lambda: 8)
    monkeypatch.setattr(limits, "total_memory_gib", lambda: 64)
    described = {"description": limits.TUNING_POOL_DESCRIPTION, "include_deferred": False}
    assert limits.pools() == {"nlp_tuning": {"slots": 4} | described}
    monkeypatch.setattr(limits, "total_memory_gib", lambda: 8)
    assert limits.pools() == {"nlp_tuning": {"slots": 2} | described}


def test_an_unknown_platform_has_no_limits():
    with pytest.raises(ValueError, match=r"no time limits for platform 'nowhere': .*'eks', 'local', 'sagemaker'"):
        limits.task_limits("nowhere")


@pytest.fixture(params=["hangs", "ignores SIGTERM"])
def hung_step(request, tmp_path, monkeypatch):
    """``python -m tasks`` as a step that hangs (its pid in ``step.pid``), or hangs and ignores SIGTERM: a
    ``tasks`` package in the working directory, which ``-m`` finds first."""
    from nlp_pipeline.operators import local

    package = tmp_path / "tasks"
    package.mkdir()
    stubborn = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if request.param == "ignores SIGTERM" else ""
    (package / "__main__.py").write_text(
        f"import os, signal, time\n{stubborn}open({str(tmp_path / 'step.pid')!r}, 'w').write(str(os.getpid()))\n"
        "print('started', flush=True)\ntime.sleep(600)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(local, "STOP_GRACE_SECONDS", 1)
    return tmp_path / "step.pid"


def test_a_hung_local_step_is_stopped_at_its_time_limit(hung_step):
    """Airflow's own timeout (the task runner's) stops the task, and the local operator stops the step with it."""
    from airflow.sdk import task
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.task_runner import _run_execute_callable
    from nlp_pipeline.operators.local import run_step

    @task(execution_timeout=timedelta(seconds=2))
    def train():
        run_step("train", "--epochs", "1")

    operator = train().operator
    started = time.monotonic()
    with pytest.raises(AirflowTaskTimeout):
        _run_execute_callable({}, lambda context: operator.execute(context), operator)
    assert time.monotonic() - started < 10
    pid = int(hung_step.read_text())
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0, "the step still runs"


@pytest.mark.parametrize("name", PLATFORMS)
def test_every_task_of_the_monitor_dags_has_its_time_limit_and_the_run_its_longest_path(name):
    from nlp_pipeline import monitoring

    dag, expected = monitoring.build_monitor(PLATFORMS[name][0]), limits.task_limits(name)
    missing = sorted(task.task_id for task in dag.tasks if task.execution_timeout is None)
    assert not missing, f"{name}: no execution_timeout on {missing} (add them to plugins/nlp_pipeline/limits.py)"
    for task in dag.tasks:
        assert task.execution_timeout == expected[task.task_id], task.task_id
    assert dag.get_task("monitor").execution_timeout >= limits.MONITOR_LIMIT, "the step's own limit fits"
    path = ["production_model", "monitor", "detect_drift", "signal_drift", "notify_drift"]
    assert dag.dagrun_timeout == sum((dag.get_task(task_id).execution_timeout for task_id in path), timedelta(0))
