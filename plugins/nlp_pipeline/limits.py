"""How long each task of the pipeline may run (its ``execution_timeout``), and so how long a run may take.

With ``max_active_runs=1`` one hung task would hold every later run back; each task therefore gets a limit
above the longest its step legitimately takes, and the run a ``dagrun_timeout`` (pipeline.py) of the longest
path through these limits, so a hung run ends and the next one starts. A limit is fixed when the DAG is parsed,
while some steps' own limits are Params: there the limit covers the Param's maximum.

A task's limit is the local one (``LIMITS``) unless its platform names another (``PLATFORM_LIMITS``): a
SageMaker job or a Kubernetes pod adds its own waits (instances, pod scheduling) and limits. A task waiting
deferred (a SageMaker job, an approval) holds no worker. Airflow 3 does not count a deferral against the
task's limit, so the operator bounds it itself: a SageMaker wait defers with a ``timeout`` of its polls
(operators/sagemaker.py ``wait_timeout``), the approval has its ``response_timeout``; the limit still covers
that wait, so a task never times out while the job it waits for may still finish.
tests/airflow/test_limits.py checks every task of every platform has a limit and that it covers the limits
its operator was built with.

The tuning search has one budget, ``TUNING_BUDGET``, whatever its trials and the machine: the mapped ``trial``
task counts once on a run's path with the budget as its limit (a trial never runs past the search's deadline:
local's plan_trials sets it, each trial's step gets the time left), and SageMaker's tuning job has it as its
``MaxRuntimeInSeconds``. A run's limit therefore does not depend on the cores of the host that parses the DAG.
"""

from __future__ import annotations

import os
from datetime import timedelta

from nlp_pipeline.params import MAX_RUNTIME_HOURS, eks_params
from nlp_pipeline.specs.sagemaker_api import MAX_EXECUTION_SECONDS
from tasks.runtime.cpu import available_cores

# The pool the tuning trials run in, so a search does not oversubscribe the machine (local: each trial is a
# training process on cores // slots CPUs) or the cluster; made with the Airflow home (``pools``).
TUNING_POOL = "nlp_tuning"
# How long a whole search may take, every trial included: past it no trial starts, a running one is stopped and
# counted failed (local), and SageMaker stops the tuning job.
TUNING_BUDGET = timedelta(hours=24)
TUNING_POOL_DESCRIPTION = "Tuning trials running at once (nlp_local: each on cores // slots CPUs; docs/local.md)"


GIB_PER_TRIAL = 4  # the memory a trial takes: a training process of a small model (tokenised data, TensorFlow)


def total_memory_gib() -> int:
    """This machine's memory in whole GiB."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**30


def tuning_pool_slots(cores: int | None = None, memory_gib: int | None = None) -> int:
    """Trials at once: half the cores (``cores``, else this machine's usable ones), so each trial trains on 2 or more
    threads rather than many trials on one each, and no more than the memory (``memory_gib``, else this machine's)
    holds at ``GIB_PER_TRIAL`` each; at least 1."""
    cores = cores or available_cores()
    memory_gib = total_memory_gib() if memory_gib is None else memory_gib
    return max(1, min(cores // 2, memory_gib // GIB_PER_TRIAL))


def pools() -> dict:
    """The pools the pipeline's tasks run in, as ``airflow pools import`` reads them: what the Makefile,
    docker-compose.yaml's airflow-init and the tests create with each Airflow home."""
    return {
        TUNING_POOL: {"slots": tuning_pool_slots(), "description": TUNING_POOL_DESCRIPTION, "include_deferred": False}
    }


# How long a person has to approve a rollout (the approval task's response_timeout, and SageMaker's model
# registry approval): a weekend and a day.
APPROVAL_TIMEOUT = timedelta(days=2)

GC_LIMIT = timedelta(hours=1)  # the maintenance DAG's gc: listing and deleting files takes minutes unless a store hangs
_QUICK = timedelta(minutes=10)  # a decision, a Variable read, a registry row: seconds of work, or something hangs
_POD_START = timedelta(minutes=15)  # eks: a step pod's startup_timeout_seconds (an image pull, a node scaling up)
JOB_START = timedelta(hours=1)  # sagemaker: instances provisioned and the image pulled before the job's clock runs

# The sagemaker jobs' MaxRuntimeInSeconds is the max_runtime_hours Param; with Spot, training may wait as long
# again for capacity (MaxWaitTimeInSeconds is twice it).
_SAGEMAKER_JOB = timedelta(hours=MAX_RUNTIME_HOURS)
# sagemaker: the operators wait for a job JOB_START plus its own limit, for an endpoint update JOB_START plus the
# blue/green's MaximumExecutionTimeoutInSeconds (operators/sagemaker.py); the task's limit adds a margin.
_SAGEMAKER_DEPLOY = timedelta(seconds=MAX_EXECUTION_SECONDS) + JOB_START + _QUICK
# eks: deploy waits rollout_timeout_minutes for the rollout, and for the previous revision again when undoing it.
_EKS_ROLLOUT = timedelta(minutes=eks_params()["rollout_timeout_minutes"].schema["maximum"])

# How long the monitor step may take: reading a window of capture (a week at most) and computing its statistics;
# a SageMaker monitoring job's MaxRuntimeInSeconds, an EKS monitor pod's activeDeadlineSeconds.
MONITOR_LIMIT = timedelta(hours=1)

# The local platform's limits, and every platform's unless PLATFORM_LIMITS says otherwise.
LIMITS: dict[str, timedelta] = {
    "policy": _QUICK,
    "stage_dataset": timedelta(hours=2),  # a hub download and tokenisation; MRPC takes a minute
    "plan_trials": _QUICK,  # draws the trials' settings
    "trial": TUNING_BUDGET,  # the whole search: each trial's step runs at most until the search's deadline
    "choose_setting": _QUICK,  # reads the trials' scores
    "train": timedelta(hours=24),  # fine-tuning on CPU; eks's multi-worker training job allows 24 h as well
    "quantize": timedelta(hours=6),  # INC's trials (about 70 s each on MiniLM) and the timing runs
    "evaluate": timedelta(hours=2),
    "gate": _QUICK,
    "register": _QUICK,
    "reject": _QUICK,
    "choose_rollout": _QUICK,
    "approve": APPROVAL_TIMEOUT,  # the wait for a person: its response_timeout
    "deploy": timedelta(minutes=30),  # the local server loads the model and swaps it in
    "smoke_test": _QUICK,
    "mark_production": _QUICK,
    "rollback": timedelta(minutes=30),  # a swap back, as deploy
    # The monitor DAGs (monitoring.py).
    "production_model": _QUICK,
    "monitor": MONITOR_LIMIT,
    "detect_drift": _QUICK,
    "signal_drift": _QUICK,
    "notify_drift": _QUICK,
    "no_drift": _QUICK,
}
PLATFORM_LIMITS: dict[str, dict[str, timedelta]] = {
    "local": {},
    "sagemaker": {
        "stage_dataset": JOB_START + _SAGEMAKER_JOB + _QUICK,
        # The tuning job's MaxRuntimeInSeconds: at most the search's budget.
        "tune": JOB_START + TUNING_BUDGET + _QUICK,
        "train": JOB_START + 2 * _SAGEMAKER_JOB + _QUICK,  # Spot: MaxWaitTimeInSeconds
        "quantize": JOB_START + _SAGEMAKER_JOB + _QUICK,
        "evaluate": JOB_START + _SAGEMAKER_JOB + _QUICK,
        # A PendingManualApproval package waits for a person in SageMaker's model registry.
        "register": _QUICK + APPROVAL_TIMEOUT,
        "create_model": _QUICK,
        "create_endpoint_config": _QUICK,
        "deploy": _SAGEMAKER_DEPLOY,
        # A blue/green deploy gave up on settling first, then the update back (all at once), in the worker.
        "rollback": _SAGEMAKER_DEPLOY + JOB_START,
        "monitor": JOB_START + MONITOR_LIMIT + _QUICK,
    },
    "eks": {
        "stage_dataset": _POD_START + LIMITS["stage_dataset"],
        "plan_trials": _POD_START + _QUICK,
        "trial": _POD_START + LIMITS["trial"],
        "choose_setting": _POD_START + _QUICK,
        "train": _POD_START + LIMITS["train"] + timedelta(minutes=30),  # the training job's 24 h, its pods' startup
        "quantize": _POD_START + LIMITS["quantize"],
        "evaluate": _POD_START + LIMITS["evaluate"],
        "register": _POD_START + _QUICK,
        "reject": _POD_START + _QUICK,
        "mark_production": _POD_START + _QUICK,
        "deploy": 2 * _EKS_ROLLOUT + _QUICK,  # the rollout, and undoing a failed one
        "smoke_test": _POD_START + _QUICK,  # a pod in the cluster: scheduled, then a few requests
        # An earlier try's restore still rolling out is waited for, then the previous revision applied again.
        "rollback": 2 * _EKS_ROLLOUT + _QUICK,
        "monitor": _POD_START + MONITOR_LIMIT,
    },
}


def task_limits(platform: str) -> dict[str, timedelta]:
    """Each task's limit on ``platform`` (``local``, ``sagemaker``, ``eks``: the platform module's name)."""
    if platform not in PLATFORM_LIMITS:
        raise ValueError(
            f"no time limits for platform {platform!r}: limits.PLATFORM_LIMITS has {sorted(PLATFORM_LIMITS)}"
        )
    return LIMITS | PLATFORM_LIMITS[platform]


def apply(dag, platform: str) -> None:
    """Each task's time limit on ``platform``, and the run's: its longest path, so a hung run ends."""
    each_limit = task_limits(platform)
    for each in dag.tasks:
        each.execution_timeout = each_limit.get(each.task_id)
    dag.dagrun_timeout = run_limit(dag)


def run_limit(dag) -> timedelta:
    """The longest path through the DAG, each task taking its whole limit: what a run may take.

    The approval's wait is on it, so a run waiting for a person is not ended early. A retry fits when the
    tries before it ran under their limits, as almost all do; a run hung for longer is ended. A mapped task (the
    tuning trials) counts once: its limit is the whole search's budget, not one instance's.
    """
    finish: dict[str, timedelta] = {}

    def finished(task) -> timedelta:
        if task.task_id not in finish:
            start = max((finished(upstream) for upstream in task.upstream_list), default=timedelta(0))
            finish[task.task_id] = start + (task.execution_timeout or timedelta(0))
        return finish[task.task_id]

    return max((finished(task) for task in dag.tasks), default=timedelta(0))
