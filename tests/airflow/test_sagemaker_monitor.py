"""nlp_monitor_sagemaker's ``monitor`` task: the monitor step as a processing job on the fake, run as a task runner
runs it (``execute`` hands the wait to the triggerer; ``run_trigger`` runs it on the fake's clock).

The job reads the capture (the nlp_sagemaker endpoint's capture root) and the production model's card, inside its
model.tar.gz, from S3 itself, and writes monitoring.json under the monitor run's prefix.
"""

import io
import json
import sys
import tarfile
from datetime import UTC, datetime, timedelta

import numpy as np
import pendulum
import pytest

from tests.airflow.sagemaker_context import run_trigger
from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import sagemaker  # noqa: E402

WINDOW_END = pendulum.datetime(2026, 12, 3, 17, tz="UTC")  # the run's logical date: a manual run
LENGTHS = np.tile(np.arange(10, 60), 4)  # the train split's pair lengths: 10 to 59, each 4 times


def production_model_tar(aws) -> str:
    """A model.tar.gz whose card holds a traffic baseline (as train writes it), on S3: the production model."""
    from tasks.monitoring import baseline
    from tasks.runtime import model_card

    figures = baseline.of_training_data(LENGTHS, 0, np.arange(len(LENGTHS)) % 2)
    predictions = baseline.of_predictions(np.full(100, 0.9), np.arange(100) % 2, 0.6)
    card = json.dumps({model_card.TRAFFIC_BASELINE: baseline.with_validation(figures, predictions, 100, 0.6)})
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo(model_card.JSON_CARD)
        info.size = len(card)
        tar.addfile(info, io.BytesIO(card.encode()))
    key = "artefacts/nlp_sagemaker/20261201T000000Z/model/nlp-train-x/output/model.tar.gz"
    aws.s3["client"].put_object(Bucket=aws.s3["bucket"], Key=key, Body=archive.getvalue())
    return f"s3://{aws.s3['bucket']}/{key}"


def capture(aws, start: datetime, count: int) -> None:
    """``count`` records a minute apart from ``start``, written as the server writes them, under the capture root."""
    from tasks.monitoring import records

    root = sagemaker.capture_root().removeprefix(f"s3://{aws.s3['bucket']}/")
    lines = {}
    for index in range(count):
        moment = start + timedelta(minutes=index * 50 / count)
        length = 10 + index % 50  # as the train split's
        record = {"time": records.stamp(moment), "model_version": "v1", "request_id": f"r{index}"}
        record |= {"tokens": [length // 2, length - length // 2], "truncated": False, "unknown_tokens": 0}
        record |= {"label": index % 2, "probability": 0.9}
        assert tuple(record) == records.FIELDS
        lines.setdefault(records.hour_folder(moment), []).append(json.dumps(record))
    for hour, hour_lines in lines.items():
        name = records.file_name(start, "host", 1, 1)
        body = ("\n".join(hour_lines) + "\n").encode()
        aws.s3["client"].put_object(Bucket=aws.s3["bucket"], Key=f"{root}/{hour}/{name}", Body=body)


def monitor_operator():
    """``monitor`` as build_monitor adds it, after a ``production_model`` task."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    with DAG("nlp_monitor_sagemaker", schedule=None):
        result = sagemaker.monitor(EmptyOperator(task_id="production_model").output)
    return result.operator


def monitor_context(production: dict, **params) -> dict:
    from nlp_pipeline.params import monitor_params

    values = {name: param.value for name, param in monitor_params().items()} | params
    xcom = {("production_model", "return_value"): production}
    return task_context(
        "nlp_monitor_sagemaker", "monitor", values, logical_date=WINDOW_END, run_id="manual__2026-12-03", xcom=xcom
    )


def test_the_monitor_job_reads_the_windows_capture_and_the_models_card_from_s3_and_reports(aws, monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    production = {"model": production_model_tar(aws), "version": "nlp-model-v1"}
    capture(aws, WINDOW_END - timedelta(hours=1), 120)  # the window: the hour before the run
    capture(aws, WINDOW_END, 30)  # after the window's end: left out
    operator, run = monitor_operator(), monitor_context(production, min_records=100)
    with pytest.raises(TaskDeferred) as raised:
        operator.execute(run)
    aws.fake.close()  # the job has run
    event = run_trigger(raised.value.trigger, aws.fake, monkeypatch)
    result = operator.execute_complete(run, event)

    job = raised.value.trigger.job_name
    assert job.startswith("nlp-monitor-20261203t170000z-")
    assert result["uri"] == f"s3://{aws.s3['bucket']}/artefacts/nlp_monitor_sagemaker/20261203T170000Z/monitoring/{job}"
    assert (result["status"], result["records"], result["drifted"]) == ("ok", 120, [])
    assert result["window"]["end"].startswith("2026-12-03T17:00:00")
    bucket, key = result["uri"].removeprefix("s3://").split("/", 1)
    report = json.loads(aws.s3["client"].get_object(Bucket=bucket, Key=f"{key}/monitoring.json")["Body"].read())
    assert (report["capture"], report["baseline"]) == (sagemaker.capture_root(), production["model"])
    request = aws.fake.requests_of("create_processing_job")[-1]
    assert request["ProcessingInputs"] == [], "the step reads only the window's files and the model's card"
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 3600
    arguments = request["AppSpecification"]["ContainerArguments"]
    assert arguments[0] == "monitor" and arguments[arguments.index("--min-records") + 1] == "100"


def test_under_network_isolation_the_monitor_is_skipped_saying_why_not_failed_every_hour(aws, monkeypatch, caplog):
    """Isolation refuses capture (the training DAG's check_capture), so there is nothing to monitor: the task is
    skipped with the reason in its log, not failed (a failure notice every hour), and no job starts."""
    import logging

    from airflow.sdk.exceptions import AirflowSkipException

    network = {"Subnets": ["subnet-1a"], "SecurityGroupIds": ["sg-1a"], "EnableNetworkIsolation": True}
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_NETWORK", json.dumps(network))
    run = monitor_context({"model": "s3://b/model.tar.gz"})
    with caplog.at_level(logging.INFO), pytest.raises(AirflowSkipException, match="network isolation is on"):
        monitor_operator().execute(run)
    assert "the endpoint captures nothing under network isolation" in caplog.text
    assert not aws.fake.requests_of("create_processing_job")


def test_the_monitor_window_ends_at_the_runs_logical_date(aws):
    """Not at its data interval's end, which a run triggered with a logical date gets from its trigger time."""
    run = monitor_context({"model": "s3://b/model.tar.gz"})
    run["data_interval_end"] = datetime(2026, 12, 3, 16, tzinfo=UTC)
    request = sagemaker._monitor_config(run, "nlp-monitor-x", production_task="production_model")
    arguments = request["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--window-end") + 1].startswith(WINDOW_END.isoformat()[:19])
