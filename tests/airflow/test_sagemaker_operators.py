"""The SageMaker operators of nlp_sagemaker, run in this process against moto: retries, approval, rollback.

Each operator's ``execute`` is called as a task runner would call it, with a context of this run and try;
``TaskDeferred`` is what a deferrable operator raises when it hands the wait to the triggerer.
"""

import json
import sys
from datetime import timedelta
from types import SimpleNamespace

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO
from tests.fakes.sagemaker import ACCOUNT, IMAGE, REGION, ROLE

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import sagemaker  # noqa: E402
from nlp_pipeline.operators.sagemaker import (  # noqa: E402
    RunEndpointConfigOperator,
    RunModelOperator,
    RunModelVersionOperator,
    StepProcessingOperator,
    VerifiedEndpointOperator,
    run_name,
)
from nlp_pipeline.params import pipeline_params, sagemaker_params  # noqa: E402
from nlp_pipeline.specs import sagemaker as specs  # noqa: E402

ENDPOINT = "nlp-paraphrase"


def context(task_id: str, try_number: int = 1, run_id: str = "manual__2026-04-01", **params) -> dict:
    defaults = {name: param.value for name, param in (pipeline_params() | sagemaker_params()).items()}
    return task_context(
        "nlp_sagemaker",
        task_id,
        defaults | {"source": "s3://data/mrpc/"} | params,
        logical_date=pendulum.datetime(2026, 4, 1, tz="UTC"),
        run_id=run_id,
        try_number=try_number,
    )


@pytest.fixture
def aws(s3, fake_sagemaker, monkeypatch):
    """The aws_default connection and the pipeline's Variables, for operators run in this process."""
    import boto3

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
        "AIRFLOW_VAR_NLP_TASK_IMAGE": IMAGE,
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("sagemaker", endpoint_url=s3["env"]["AWS_ENDPOINT_URL"], region_name=REGION)
    return SimpleNamespace(sagemaker=client, fake=fake_sagemaker)


def processing_jobs(client) -> list[str]:
    return sorted(job["ProcessingJobName"] for job in client.list_processing_jobs()["ProcessingJobSummaries"])


def stage_operator() -> StepProcessingOperator:
    return StepProcessingOperator(
        task_id="stage_dataset",
        kind="stage",
        build_config=sagemaker._stage_config,
        summarize=sagemaker._stage_summary,
        aws_conn_id="aws_default",
        deferrable=True,
        check_interval=1,
    )


def test_a_retry_waits_for_the_job_its_run_left_running_and_never_starts_a_second(aws):
    from airflow.sdk.exceptions import TaskDeferred

    aws.fake.hold_jobs = True  # jobs stay InProgress: a worker was lost while SageMaker ran the job
    first = context("stage_dataset", try_number=1)
    with pytest.raises(TaskDeferred) as deferred:
        stage_operator().execute(first)
    [job] = processing_jobs(aws.sagemaker)
    assert job == run_name("stage", first, 1) and deferred.value.trigger.job_name == job

    for again in (context("stage_dataset", try_number=1), context("stage_dataset", try_number=2)):
        with pytest.raises(TaskDeferred) as deferred:
            stage_operator().execute(again)
        assert deferred.value.trigger.job_name == job
    assert processing_jobs(aws.sagemaker) == [job], "the same try resumed, then a retry: still one job"

    aws.fake.backend().processing_jobs[job].processing_job_status = "Failed"
    third = context("stage_dataset", try_number=3)
    with pytest.raises(TaskDeferred):
        stage_operator().execute(third)
    assert processing_jobs(aws.sagemaker) == sorted([job, run_name("stage", third, 3)]), "a failed job is replaced"


def test_a_job_that_failed_on_bad_input_is_not_retried(aws):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    bad = {
        "status": "failed",
        "job_name": "nlp-stage-x-t1",
        "message": "AlgorithmError: SchemaError (exit 3): x: no rows",
    }
    with pytest.raises(AirflowFailException, match=r"failed on bad data, not retried: .*SchemaError \(exit 3\): x"):
        stage_operator().execute_complete(context("stage_dataset"), bad)
    lost = bad | {"message": "InternalServerError: capacity"}
    with pytest.raises(AirflowException, match="capacity") as raised:
        stage_operator().execute_complete(context("stage_dataset"), lost)
    assert not isinstance(raised.value, AirflowFailException), "other failures are retried"


def endpoint_on_a_previous_config(client) -> str:
    client.create_model(
        ModelName="nlp-model-old",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/old/model.tar.gz"},
    )
    for name in ("nlp-config-old", run_name("config", context("deploy"))):
        client.create_endpoint_config(
            **specs.endpoint_config(name, "nlp-model-old", instance_type="ml.c6i.xlarge", instance_count=1)
        )
    client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="nlp-config-old")
    return "nlp-config-old"


def deploy_operator() -> VerifiedEndpointOperator:
    return VerifiedEndpointOperator(
        task_id="deploy",
        build_config=sagemaker._deployment,
        aws_conn_id="aws_default",
        deferrable=False,
        check_interval=1,
    )


def test_an_update_rolled_back_by_sagemaker_fails_the_deploy_loudly(aws):
    from airflow.sdk.exceptions import AirflowException

    old = endpoint_on_a_previous_config(aws.sagemaker)
    aws.fake.roll_back_updates = True  # an alarm fired while baking: InService, on the OLD config
    run = context("deploy", rollback_alarms=["nlp-5xx"])
    with pytest.raises(
        AirflowException,
        match=rf"endpoint {ENDPOINT} is InService on {old}, not on the new "
        rf"{run_name('config', run)}: SageMaker rolled the update back",
    ):
        deploy_operator().execute(run)
    [update] = aws.fake.requests_of("update_endpoint")
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "nlp-5xx"}]}
    assert update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 600,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
    }
    assert run["ti"].xcom_pull(task_ids="deploy", key="previous_config") == old


def test_an_update_that_takes_reports_the_config_before_it(aws):
    old = endpoint_on_a_previous_config(aws.sagemaker)
    run = context("deploy")
    assert deploy_operator().execute(run) == {
        "endpoint": ENDPOINT,
        "config": run_name("config", run),
        "previous_config": old,
    }
    retried = deploy_operator().execute(context("deploy", try_number=2))
    assert retried["config"] == run_name("config", run) and len(aws.fake.requests_of("update_endpoint")) == 1


def test_a_retried_rollout_step_reuses_the_model_and_config_of_its_run(aws):
    run = context("create_model")
    run["ti"].xcom[("evaluate", "return_value")] = {"model": "s3://b/run/model/job/output/model.tar.gz"}
    run["ti"].xcom[("stage_dataset", "return_value")] = {"fingerprint": "sha256:0f"}
    for _try in (1, 2):
        model = RunModelOperator(
            task_id="create_model", build_config=sagemaker._model_config, aws_conn_id="aws_default"
        )
        assert model.execute(run)["Model"]["ModelName"] == run_name("model", run)
        config = RunEndpointConfigOperator(
            task_id="create_endpoint_config", build_config=sagemaker._endpoint_config, aws_conn_id="aws_default"
        )
        assert config.execute(run)["EndpointConfig"]["EndpointConfigName"] == run_name("config", run)
    assert len(aws.fake.requests_of("create_model")) == len(aws.fake.requests_of("create_endpoint_config")) == 1
    [request] = aws.fake.requests_of("create_model")
    environment = request["PrimaryContainer"].pop("Environment")
    assert request["PrimaryContainer"] == {
        "Image": IMAGE,
        "Mode": "SingleModel",
        "ModelDataUrl": "s3://b/run/model/job/output/model.tar.gz",
    }
    assert environment["NLP_DATA_FINGERPRINT"] == "sha256:0f", "what the training cache compares with"
    described = aws.sagemaker.describe_model(ModelName=run_name("model", run))["PrimaryContainer"]
    assert described["Environment"] == environment


def register_operator() -> RunModelVersionOperator:
    evaluation = {
        "model": "s3://b/run/quantized/job/",
        "evaluation": "s3://b/run/evaluation/job/evaluation.json",
        "accuracy": 0.86,
        "f1": 0.89,
        "decision": "promote",
    }
    settings = specs.Settings(ROLE, IMAGE, "s3://b", ENDPOINT, "nlp-paraphrase")
    return RunModelVersionOperator(
        task_id="register",
        approval=None,
        package_group_name="nlp-paraphrase",
        aws_conn_id="aws_default",
        build_extras=lambda _: specs.model_package(settings, evaluation, {"run_id": "r"}),
        approval_poll=timedelta(minutes=1),
        approval_timeout=timedelta(minutes=2),
    )


def test_a_package_pending_manual_approval_holds_the_rollout_until_a_person_decides(aws):
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException, TaskDeferred

    run = context("register", model_approval="PendingManualApproval")
    for _attempt in (1, 2):  # a retried register adds no second version
        with pytest.raises(TaskDeferred) as deferred:
            register_operator().execute(run)
    arn = deferred.value.kwargs["arn"]
    packages = aws.sagemaker.list_model_packages(ModelPackageGroupName="nlp-paraphrase")["ModelPackageSummaryList"]
    assert [package["ModelPackageArn"] for package in packages] == [arn]
    assert (
        type(deferred.value.trigger).__name__ == "TimeDeltaTrigger" and deferred.value.method_name == "check_approval"
    )
    [request] = aws.fake.requests_of("create_model_package")
    assert request["ModelApprovalStatus"] == "PendingManualApproval"
    assert request["InferenceSpecification"]["Containers"] == [
        {
            "Image": IMAGE,
            "ModelDataSource": {
                "S3DataSource": {
                    "S3Uri": "s3://b/run/quantized/job/",
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            },
        }
    ]

    with pytest.raises(TaskDeferred):  # still pending after a minute: waits on, holding no worker
        register_operator().check_approval(run, arn=arn, waited_seconds=60)
    with pytest.raises(AirflowException, match="still waits for approval after 0:02:00"):
        register_operator().check_approval(run, arn=arn, waited_seconds=120)

    aws.sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    entry = register_operator().check_approval(run, arn=arn, waited_seconds=60)
    assert entry == {"arn": arn, "version": "nlp-paraphrase/1", "status": "Approved"}

    rejected_run = context("register", run_id="manual__2026-04-02", model_approval="PendingManualApproval")
    with pytest.raises(TaskDeferred) as deferred:
        register_operator().execute(rejected_run)
    aws.sagemaker.update_model_package(ModelPackageArn=deferred.value.kwargs["arn"], ModelApprovalStatus="Rejected")
    with pytest.raises(AirflowSkipException, match="nlp-paraphrase/2 was rejected in the model registry: no rollout"):
        register_operator().check_approval(rejected_run, arn=deferred.value.kwargs["arn"], waited_seconds=60)


def test_settings_name_what_is_missing(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    with pytest.raises(AirflowFailException, match=r"nlp_artefact_root on S3 \(s3://bucket/prefix\), got '/"):
        sagemaker.settings()
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/artefacts")
    with pytest.raises(
        AirflowFailException,
        match=r"Variable\(s\) nlp_sagemaker_role_arn, nlp_sagemaker_image "
        r"\(or nlp_task_image\): the IAM role",
    ):
        sagemaker.settings()
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE)
    with pytest.raises(
        AirflowFailException, match="needs the Airflow Variable.s. nlp_sagemaker_role_arn: the IAM role"
    ):
        sagemaker.settings()


def test_sagemaker_jobs_run_the_images_root_tag_when_one_is_set(monkeypatch):
    """SageMaker writes /opt/ml only as root (docker/task/Dockerfile, target task-sagemaker)."""
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/artefacts")
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN", ROLE)
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE)
    assert sagemaker.settings().image_uri == IMAGE
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE", f"{IMAGE}-sagemaker")
    assert sagemaker.settings().image_uri == f"{IMAGE}-sagemaker"


def test_names_are_valid_sagemaker_names_per_run_and_try():
    run = context("train")
    names = {
        run_name(kind, run, try_number)
        for kind in ("stage", "quantize", "evaluate", "train")
        for try_number in (1, 2, 99)
    }
    assert len(names) == 12 and all(len(name) <= 63 for name in names)
    assert run_name("train", run, 1) == run_name("train", context("train"), 1), "deterministic"
    assert run_name("train", run, 1) != run_name("train", context("train", run_id="manual__other"), 1)
    with pytest.raises(ValueError, match="not a valid SageMaker name"):
        specs.resource_name("x" * 60, "20260401T000000Z", "run")


@pytest.mark.parametrize(
    ("traffic", "routing"),
    [
        ("all_at_once", {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 120}),
        (
            "canary",
            {"Type": "CANARY", "WaitIntervalInSeconds": 120, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20}},
        ),
        (
            "linear",
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 120,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 20},
            },
        ),
    ],
)
def test_deployment_config_per_traffic_shifting(traffic, routing):
    config = specs.deployment_config(traffic=traffic, step_percent=20, baking_minutes=2, alarms=[])
    policy = config["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == routing and "AutoRollbackConfiguration" not in config
    assert 600 <= policy["MaximumExecutionTimeoutInSeconds"] <= 28800 and policy["TerminationWaitInSeconds"] == 120


def test_the_training_job_carries_hyperparameters_as_strings_and_a_hub_model_as_one():
    settings = specs.Settings(ROLE, IMAGE, "s3://b", ENDPOINT, "nlp-paraphrase")
    job = specs.training_job(
        "nlp-train-x-t1",
        settings,
        staged="s3://b/staged/job",
        base_model="bert-base-uncased",
        hyperparameters={"epochs": 3, "learning_rate": 3e-5},
        output="s3://b/model",
        checkpoints="s3://b/ckpt",
        instance_type="ml.m7i.8xlarge",
        instance_count=4,
        max_runtime_seconds=3600,
        spot=False,
        max_wait_seconds=7200,
    )
    assert job["HyperParameters"] == {"epochs": "3", "learning_rate": "3e-05", "model": "bert-base-uncased"}
    assert "model" not in [channel["ChannelName"] for channel in job["InputDataConfig"]]
    assert job["ResourceConfig"]["InstanceCount"] == 4 and "MaxWaitTimeInSeconds" not in job["StoppingCondition"]
    assert job["RoleArn"] == ROLE and ACCOUNT in job["AlgorithmSpecification"]["TrainingImage"]
