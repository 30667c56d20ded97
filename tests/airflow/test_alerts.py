"""A failed run is told: the DAG's failure callback, run as Airflow's DAG processor runs it, publishes to the SNS
topic the Variable nlp_alerts names (SNS and an SQS subscriber on the moto server), or only logs it when unset."""

import json
import logging
import sys
import uuid
from types import SimpleNamespace

import pendulum
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import alerts, local, pipeline  # noqa: E402
from nlp_pipeline.params import local_params  # noqa: E402

RUN_ID = "scheduled__2026-04-01T00:00:00+00:00"
REGION = "us-east-1"


@pytest.fixture
def topic(s3, monkeypatch):
    """An SNS topic on the moto server with an SQS queue subscribed, and the aws_default connection to it."""
    import boto3

    endpoint = s3["env"]["AWS_ENDPOINT_URL"]
    sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    arn = sns.create_topic(Name=f"nlp-alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": REGION, "endpoint_url": endpoint},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))

    def received() -> list[dict]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        return [json.loads(message["Body"]) for message in messages]

    return SimpleNamespace(arn=arn, received=received)


def run_failure_callbacks(task_id: str, reason: str = "task_failure") -> None:
    """What Airflow's DAG processor does when a run of nlp_local failed, ``task_id`` blamed for it."""
    from airflow.api_fastapi.execution_api.datamodels.taskinstance import DagRun, TaskInstance
    from airflow.callbacks.callback_requests import DagCallbackRequest, DagRunContext
    from airflow.dag_processing.processor import _execute_dag_callbacks

    dag = pipeline.build_pipeline("nlp_local", local, params=local_params(), doc_md="nlp_local", tags=[])
    when = pendulum.datetime(2026, 4, 1, tz="UTC")
    run = DagRun(
        dag_id=dag.dag_id,
        run_id=RUN_ID,
        logical_date=when,
        data_interval_start=when,
        data_interval_end=when,
        run_after=when,
        start_date=when,
        end_date=when.add(hours=1),
        run_type="scheduled",
        state="failed",
        consumed_asset_events=[],
        partition_key=None,
    )
    last_ti = TaskInstance(
        id=uuid.uuid4(), task_id=task_id, dag_id=dag.dag_id, run_id=RUN_ID, try_number=3, dag_version_id=uuid.uuid4()
    )
    request = DagCallbackRequest(
        filepath="nlp_local.py",
        bundle_name="dags-folder",
        bundle_version=None,
        dag_id=dag.dag_id,
        run_id=RUN_ID,
        context_from_server=DagRunContext(dag_run=run, last_ti=last_ti),
        is_failure_callback=True,
        msg=reason,
    )
    failures = []
    log = SimpleNamespace(info=lambda *args, **kwargs: None, warning=lambda *args, **kwargs: None)
    log.exception = lambda message, **kwargs: failures.append(sys.exc_info()[1])
    _execute_dag_callbacks(SimpleNamespace(dags={dag.dag_id: dag}), request, log)
    if failures:
        raise failures[0]


def test_a_failed_run_is_published_to_the_configured_topic(topic, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ALERTS", json.dumps({"sns_topic_arn": topic.arn}))
    run_failure_callbacks("train")
    [published] = topic.received()
    assert published["Subject"] == "nlp_local run failed (task_failure)"
    message = published["Message"]
    assert f"DAG nlp_local, run {RUN_ID}: failed (task_failure)" in message
    assert "Task train (try 3)" in message
    assert "/dags/nlp_local/runs/scheduled__2026-04-01T00%3A00%3A00%2B00%3A00/tasks/train?try_number=3" in message


def test_a_timed_out_run_names_the_task_still_running(topic, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ALERTS", json.dumps({"sns_topic_arn": topic.arn, "aws_conn_id": "aws_default"}))
    run_failure_callbacks("approve", reason="timed_out")
    [published] = topic.received()
    assert "failed (timed_out)" in published["Message"] and "Task approve" in published["Message"]


def test_without_the_variable_the_failure_is_only_logged(caplog, monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_NLP_ALERTS", raising=False)
    caplog.set_level(logging.INFO, logger="nlp_pipeline.alerts")
    run_failure_callbacks("quantize")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"DAG nlp_local, run {RUN_ID}: failed (task_failure)" in logged
    assert "set the Variable nlp_alerts" in logged


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("arn:aws:sns:us-east-1:1:x", r"nlp_alerts is not JSON"),
        ('{"topic": "arn:aws:sns:us-east-1:1:x"}', r"nlp_alerts must be a JSON object with a string sns_topic_arn"),
        ('{"sns_topic_arn": "arn:aws:sns:us-east-1:1:x", "smtp_to": ["a@b"]}', r"unknown key\(s\) \['smtp_to'\]"),
    ],
)
def test_a_bad_alerts_variable_is_a_clear_error(monkeypatch, value, error):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ALERTS", value)
    with pytest.raises(alerts.AlertsConfigError, match=error):
        run_failure_callbacks("train")
