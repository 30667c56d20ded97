"""The one pipeline definition every platform DAG is built from.

    policy >> stage_dataset >> [tuning ... >> choose_setting] >> train >> quantize >> evaluate >> gate ─┬─► register
                                                                                                        └─► reject
    register >> choose_rollout ─┬─► approve ─┐
                                └───────────┴► deploy >> smoke_test >> mark_production
    deploy/smoke_test failed ──► rollback

The graph shows the stages as TaskGroups (``STAGES``: data, tuning, training, compression, evaluation, rollout;
the ``policy`` task runs first, above them); a group adds no prefix, so task ids are the same on every platform
and in every XCom pull. The tuning stage's tasks are the platform's own (local: trials mapped through a pool;
SageMaker: a hyperparameter tuning job; EKS: trial pods); its last, ``choose_setting``, hands ``train`` the
chosen setting, or None when the run's ``tuning_trials`` is 0 and the trials were skipped. ``register`` and
``reject`` update the Asset ``nlp_model_candidates`` and ``mark_production`` the Asset ``nlp_model_production``,
with the model's figures (assets.py).

A platform (platform.Platform) supplies the steps: how each runs and where artefacts live. The decisions
are the same on every platform (decisions.py): ``gate`` follows the evaluate step's decision,
``choose_rollout`` never deploys from a backfill nor when the run's ``deploy`` Param is off, and waits for a
person's approval in the UI when the promotion policy or the run requires it. The approvers and the gate's
thresholds are the promotion policy's (policy.py), which the ``policy`` task fixes for the run, once it refused
what no Param schema can (a search range whose LO is above its HI). The platforms' train and quantize tasks
apply the training cache (of the tuned setting) and "quantisation off". Small JSON (artefact locations,
metrics, the decision, the chosen setting) travels by XCom; artefacts stay in storage.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, TaskGroup, task

from nlp_pipeline import decisions, limits, policy
from nlp_pipeline.alerts import RunFailureNotifier
from nlp_pipeline.assets import SOURCE_DATA, drift_detected
from nlp_pipeline.operators.approval import PolicyApprovalOperator
from nlp_pipeline.params import pipeline_params
from nlp_pipeline.platform import Platform

DEFAULT_ARGS = {
    "owner": "mlops",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}
APPROVAL_TIMEOUT = limits.APPROVAL_TIMEOUT
# The stages of the graph, in order: each a TaskGroup holding its step's tasks (and those a platform adds to it).
STAGES = {
    "data": "Stage the data set: tokenised splits and their fingerprint",
    "tuning": "Search learning rate, epochs, batch size, warm-up and weight decay with short trials scored on the "
    "validation split, and choose the best setting (skipped when tuning_trials is 0)",
    "training": "Fine-tune the base model",
    "compression": "Compress to the fastest precision within tolerance on the serving CPU (INT8, BF16 or FP32)",
    "evaluation": "Measure the candidate, gate it, record it in the registry",
    "rollout": "Roll the approved model out, smoke-test it, mark it production or roll back",
}


@task.branch
def gate(evaluation: dict) -> str:
    """Register a promoted candidate; record a rejected one with the gate's reasons."""
    return decisions.gate(evaluation)


@task(task_id=policy.TASK_ID)
def promotion_policy(**context) -> dict:
    """Refuse the run's Params no schema can check (policy.check_params), then fix the run's promotion policy
    (policy.py): the reviewed one, tightened by the run's conf if it asks."""
    policy.check_params(context["params"])
    return policy.for_run(context["params"])


@task.branch
def choose_rollout(entry: dict, rollout_start: str, **context) -> str | None:
    params = {**context["params"], "require_approval": policy.requires_approval(context)}
    target, why = decisions.rollout(params, context["dag_run"].run_type, rollout_start)
    print(f"{entry['version']} registered; {why}")
    return target


def build_pipeline(
    dag_id: str, platform: Platform, *, doc_md: str, tags: list[str], params: dict[str, Param] | None = None
) -> DAG:
    """The DAG for ``platform`` (a module with the step tasks and ``ROLLOUT_START``, the first task of its
    rollout); ``params`` adds the platform's own Params to the shared ones.

    Scheduled on ``NLP_RETRAIN_SCHEDULE`` (weekly), or when the source data is updated or the platform's monitor DAG
    finds the endpoint's traffic drifted (either Asset: ``|``)."""
    platform_name = platform.__name__.rpartition(".")[2]
    schedule = AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(os.environ.get("NLP_RETRAIN_SCHEDULE", "@weekly"), timezone="UTC"),
        assets=SOURCE_DATA | drift_detected(platform_name),
    )
    with DAG(
        dag_id,
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        params=pipeline_params() | (params or {}),
        tags=["nlp", "bert", "int8", *tags],
        doc_md=doc_md,
        on_failure_callback=RunFailureNotifier(),
    ) as dag:
        policy_task = promotion_policy()
        with _stage("data"):
            staged = platform.stage_dataset()
        policy_task >> staged
        with _stage("tuning"):
            tuned = platform.tune(staged)
        with _stage("training"):
            trained = platform.train(staged, tuned)
        with _stage("compression"):
            candidate = platform.quantize(staged, trained)
        with _stage("evaluation"):
            evaluation = platform.evaluate(staged, candidate)
            entry = platform.register(evaluation)
            gate(evaluation) >> [entry, platform.reject(evaluation)]
        with _stage("rollout"):
            approve = PolicyApprovalOperator(
                task_id="approve",
                subject="Roll out {{ ti.xcom_pull(task_ids='register')['version'] }} to the endpoint?",
                body="Accuracy {{ ti.xcom_pull(task_ids='evaluate')['accuracy'] }}, "
                "F1 {{ ti.xcom_pull(task_ids='evaluate')['f1'] }}; gate: promote.",
                response_timeout=APPROVAL_TIMEOUT,
                retries=1,  # once: Airflow 3.3.2 can lose a try answered within a second (docs/local.md, Approval)
            )
            deployed = platform.deploy(entry)
            rollout = dag.get_task(platform.ROLLOUT_START)
            choose_rollout(entry, platform.ROLLOUT_START) >> [approve, rollout]
            approve >> rollout
            smoke = platform.smoke_test(deployed)
            platform.mark_production(entry, smoke)
            [deployed, smoke] >> platform.rollback()
    limits.apply(dag, platform_name)
    return dag


def _stage(group_id: str) -> TaskGroup:
    """The stage's TaskGroup; without a prefix, so its tasks keep their ids."""
    return TaskGroup(group_id, tooltip=STAGES[group_id], prefix_group_id=False)
