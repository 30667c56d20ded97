"""The allow-list of data sources on the Airflow side: the Variable nlp_allowed_sources (the hub only when unset)
decides what a run's ``source`` may name; every platform refuses anything else before a step starts, not retried,
and hands the list to the step, which refuses it too."""

import json
import sys

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import AirflowFailException  # noqa: E402
from nlp_pipeline import local, sagemaker  # noqa: E402
from nlp_pipeline.params import pipeline_params, sagemaker_params  # noqa: E402
from nlp_pipeline.sources import DEFAULT_ALLOWED_SOURCES, VARIABLE, allowed_sources  # noqa: E402

from tasks import cli  # noqa: E402

ENV = f"AIRFLOW_VAR_{VARIABLE.upper()}"


class Ran(Exception):
    """Raised by a stand-in runner: a step was about to start."""


def params(source: str, extra: dict | None = None) -> dict:
    return {name: param.value for name, param in (pipeline_params() | (extra or {})).items()} | {"source": source}


def context(dag_id: str, source: str, extra: dict | None = None) -> dict:
    return task_context(
        dag_id,
        "stage_dataset",
        params(source, extra),
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id="manual__x",
    )


def stage_locally(monkeypatch, tmp_path, source: str) -> list[list[str]]:
    """nlp_local's stage_dataset up to the step it runs; returns the commands it started (none when refused)."""
    started = []

    def run_step(*command):
        started.append([str(part) for part in command])
        raise Ran

    monkeypatch.setattr(local, "run_step", run_step)
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "artefacts"))
    with pytest.raises((Ran, AirflowFailException)) as caught:
        local.stage_dataset.function(**context("nlp_local", source))
    if caught.type is AirflowFailException:
        started.append(str(caught.value))
    return started


def test_unset_the_hub_alone_is_allowed(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV)
    assert allowed_sources() == list(DEFAULT_ALLOWED_SOURCES) == ["hf://"]
    (secret := tmp_path / "secret").mkdir()
    [refusal] = stage_locally(monkeypatch, tmp_path, str(secret))
    assert refusal == (
        f"source '{secret}' is outside the allowed sources: hf://; stage from a location under one of them, or "
        f"have the allow-list extended (the Airflow Variable {VARIABLE})"
    )
    [command] = stage_locally(monkeypatch, tmp_path, "hf://nyu-mll/glue/mrpc")
    assert command[command.index("--allowed-sources") + 1 :][:1] == ["hf://"]


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("{data}", True),
        ("{data}/mrpc", True),
        ("{data}/../secret", False),
        ("{data}2", False),
        ("/etc", False),
        ("s3://my-bucket/data/mrpc/", True),
        ("s3://my-bucket-other/data/mrpc/", False),
        ("s3://my-bucket/database/", False),
        ("hf://nyu-mll/glue/mrpc", True),
        ("hf://someone/else", False),
    ],
)
def test_nlp_local_stages_only_what_the_variable_allows(monkeypatch, tmp_path, source, allowed):
    data = tmp_path / "data"
    (data / "mrpc").mkdir(parents=True)
    prefixes = [str(data), "s3://my-bucket/data/", "hf://nyu-mll/glue"]
    monkeypatch.setenv(ENV, json.dumps(prefixes))
    [started] = stage_locally(monkeypatch, tmp_path, source.format(data=data))
    if allowed:
        step, *flags = started
        arguments = cli.parse(step, flags)
        assert arguments.allowed_sources == prefixes, "the step gets the allow-list and refuses too"
    else:
        assert isinstance(started, str) and "is outside the allowed sources" in started


def test_a_link_out_of_an_allowed_folder_is_refused(monkeypatch, tmp_path):
    (data := tmp_path / "data").mkdir()
    (secret := tmp_path / "secret").mkdir()
    (data / "link").symlink_to(secret)
    monkeypatch.setenv(ENV, json.dumps([str(data)]))
    [refusal] = stage_locally(monkeypatch, tmp_path, str(data / "link"))
    assert f"source '{data}/link' (which resolves to {secret}) is outside the allowed sources: {data}" in refusal


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("hf://", f"the Airflow Variable {VARIABLE} is not JSON"),
        ('"hf://"', f"the Airflow Variable {VARIABLE} must be a list of non-empty prefixes, got 'hf://'"),
        ('["data/raw"]', f"the Airflow Variable {VARIABLE}: 'data/raw' is a relative path"),
        ("[]", f"the Airflow Variable {VARIABLE} is an empty list: no source may be staged"),
    ],
)
def test_a_bad_variable_fails_the_task_naming_it(monkeypatch, tmp_path, value, message):
    monkeypatch.setenv(ENV, value)
    [refusal] = stage_locally(monkeypatch, tmp_path, "hf://nyu-mll/glue/mrpc")
    assert message in refusal


def test_every_platform_builds_its_stage_step_through_the_check(monkeypatch):
    """The SageMaker stage job and the EKS pod are built with commands.command too: a refused source never
    becomes a job or a pod."""
    from tests.airflow.test_kubernetes_manifests import eks_context

    monkeypatch.setenv(ENV, json.dumps(["s3://my-bucket/data/"]))
    with pytest.raises(AirflowFailException, match="'s3://my-bucket-other/x/' is outside the allowed sources"):
        sagemaker._stage_config(context("nlp_sagemaker", "s3://my-bucket-other/x/", sagemaker_params()), "job")
    from nlp_pipeline import eks

    eks_run = eks_context(monkeypatch, source="/etc")
    with pytest.raises(AirflowFailException, match="'/etc' is outside the allowed sources"):
        eks._stage_arguments(eks_run)


def test_a_sagemaker_stage_job_may_read_only_its_input(monkeypatch):
    for name, value in {
        ENV: json.dumps(["s3://my-bucket/data/", "hf://"]),
        "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": "s3://bucket/artefacts",
        "AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/nlp",
        "AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-tasks:test-sagemaker",
    }.items():
        monkeypatch.setenv(name, value)
    job = sagemaker._stage_config(context("nlp_sagemaker", "s3://my-bucket/data/mrpc/", sagemaker_params()), "job")
    step, *flags = job["AppSpecification"]["ContainerArguments"]
    arguments = cli.parse(step, flags)
    assert arguments.source == arguments.allowed_sources[0] == "/opt/ml/processing/input/source"
    assert arguments.allowed_sources == [arguments.source]
    job = sagemaker._stage_config(context("nlp_sagemaker", "hf://nyu-mll/glue/mrpc", sagemaker_params()), "job")
    step, *flags = job["AppSpecification"]["ContainerArguments"]
    assert cli.parse(step, flags).allowed_sources == ["s3://my-bucket/data/", "hf://"]
