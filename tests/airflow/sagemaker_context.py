"""What the nlp_sagemaker operator tests share: a task's context, a trigger run on the fake's clock, and the
register operator."""

import asyncio
import sys
from datetime import timedelta

import pendulum

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import sagemaker  # noqa: E402
from nlp_pipeline.operators.sagemaker import RunModelVersionOperator  # noqa: E402
from nlp_pipeline.params import pipeline_params, sagemaker_params  # noqa: E402


def context(task_id: str, try_number: int = 1, run_id: str = "manual__2026-04-01", xcom=None, **params) -> dict:
    """The context of ``task_id``'s try ``try_number`` in a run, its XCom as Airflow 3 leaves it for a new
    try: only the other tasks' (a task's own XCom is cleared when its next try starts)."""
    defaults = {name: param.value for name, param in (pipeline_params() | sagemaker_params()).items()}
    return task_context(
        "nlp_sagemaker",
        task_id,
        defaults | {"source": "s3://data/mrpc/"} | params,
        logical_date=pendulum.datetime(2026, 4, 1, tz="UTC"),
        run_id=run_id,
        try_number=try_number,
        xcom=xcom,
    )


def run_trigger(trigger, fake, monkeypatch) -> dict:
    """The event ``trigger`` yields, run as the triggerer runs it; its waits pass on the fake's clock, not
    the wall clock (a wait of hours takes a second)."""
    from airflow.providers.amazon.aws.utils import waiter_with_logging

    polls = []

    async def sleep(seconds):
        polls.append(seconds)
        fake.clock.advance(seconds)

    async def first_event():
        async for event in trigger.run():
            return event.payload

    with monkeypatch.context() as patch:
        patch.setattr(waiter_with_logging.asyncio, "sleep", sleep)
        event = asyncio.run(first_event())
    return event | {"polls": len(polls)}


def register_operator(task_id: str = "register") -> RunModelVersionOperator:
    """register (or reject) as nlp_sagemaker builds it, but for a short approval wait."""
    return RunModelVersionOperator(
        task_id=task_id,
        approval="Rejected" if task_id == "reject" else None,
        package_group_name="nlp-paraphrase",
        package_group_desc="Paraphrase classifiers",
        aws_conn_id="aws_default",
        build_extras=sagemaker._package,
        approval_poll=timedelta(minutes=1),
        approval_timeout=timedelta(minutes=2),
    )
