"""The SageMaker fake itself, talked to with boto3 as the operators talk to it: it must answer as AWS documents
(times on its clock, statuses, ExitMessage, endpoint rollouts, request checks, the model registry's pages)."""

import itertools
import json
import re
import time

import pytest

from tests.fakes.sagemaker import IMAGE, REGION, ROLE

HOUR = 3600


@pytest.fixture
def client(s3, fake_sagemaker):
    import boto3

    return boto3.client("sagemaker", endpoint_url=s3["env"]["AWS_ENDPOINT_URL"], region_name=REGION)


@pytest.fixture
def bucket(s3):
    return s3["bucket"]


def settled(fake) -> None:
    """Every job's step has exited (the fake's clock then decides the status)."""
    for thread in fake.threads:
        thread.join(timeout=120)


def succeed(fake, monkeypatch, log: str = "") -> None:
    """The steps exit 0 at once, printing ``log``: for what a job reports, not what the step does."""
    monkeypatch.setattr(fake, "_run", lambda arguments, root, environment: (0, log))


def training_request(bucket: str, name: str = "train-1", **extra) -> dict:
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data/"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/model"},
        "ResourceConfig": {"InstanceType": "ml.m7i.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 6 * HOUR},
    } | extra


def processing_request(name: str = "stage-1", arguments=("stage", "--no-such-flag"), **extra) -> dict:
    return {
        "ProcessingJobName": name,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m7i.xlarge", "VolumeSizeInGB": 10}
        },
        "AppSpecification": {"ImageUri": IMAGE, "ContainerArguments": list(arguments)},
        "RoleArn": ROLE,
        "StoppingCondition": {"MaxRuntimeInSeconds": HOUR},
    } | extra


# ---- clock and jobs ---------------------------------------------------------------------------------------------
def test_the_clock_follows_real_time_and_advances_on_demand(fake_sagemaker):
    import time

    clock = fake_sagemaker.clock
    assert abs(clock.now() - time.time()) < 1
    clock.advance(2 * HOUR)
    assert 2 * HOUR - 1 < clock.now() - time.time() < 2 * HOUR + 1


def test_a_two_hour_training_job_is_in_progress_through_its_phases_until_two_hours_passed(
    client, fake_sagemaker, bucket, monkeypatch
):
    succeed(fake_sagemaker, monkeypatch)
    fake_sagemaker.job_seconds["training"] = 2 * HOUR
    created = fake_sagemaker.clock.now()
    client.create_training_job(**training_request(bucket))
    settled(fake_sagemaker)
    seen = []
    for _ in range(4):
        job = client.describe_training_job(TrainingJobName="train-1")
        seen.append((job["TrainingJobStatus"], job["SecondaryStatus"]))
        fake_sagemaker.clock.advance(0.3 * 2 * HOUR)
    assert seen == [
        ("InProgress", "Starting"),
        ("InProgress", "Training"),
        ("InProgress", "Training"),
        ("InProgress", "Training"),
    ]
    fake_sagemaker.clock.advance(HOUR)
    job = client.describe_training_job(TrainingJobName="train-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Completed", "Completed")
    assert [transition["Status"] for transition in job["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    creation = job["CreationTime"].timestamp()
    assert created - 1 <= creation <= created + 30, "the create call's own time passes on a busy machine"
    assert job["TrainingEndTime"].timestamp() == pytest.approx(creation + 2 * HOUR, abs=1)
    training = (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()
    assert job["BillableTimeInSeconds"] == job["TrainingTimeInSeconds"] == pytest.approx(training, abs=1)
    assert 0 < training < 2 * HOUR, "TrainingStartTime comes after provisioning and download"


def test_tensorboard_events_are_uploaded_even_from_a_failed_job(client, fake_sagemaker, bucket, s3, monkeypatch):
    def run(arguments, root, environment):
        events = root / "output" / "tensorboard" / "train"
        events.mkdir(parents=True)
        (events / "events.out.tfevents.1.algo-1").write_bytes(b"events")
        return 1, "Traceback: killed"

    monkeypatch.setattr(fake_sagemaker, "_run", run)
    config = {"S3OutputPath": f"s3://{bucket}/run/tensorboard"}
    client.create_training_job(**training_request(bucket, TensorBoardOutputConfig=config))
    settled(fake_sagemaker)
    job = client.describe_training_job(TrainingJobName="train-1")
    assert job["TensorBoardOutputConfig"] == config
    uploaded = s3["client"].get_object(Bucket=bucket, Key="run/tensorboard/train/events.out.tfevents.1.algo-1")
    assert uploaded["Body"].read() == b"events"


def test_a_training_job_past_its_max_runtime_stops_with_max_runtime_exceeded(
    client, fake_sagemaker, bucket, monkeypatch
):
    succeed(fake_sagemaker, monkeypatch)
    fake_sagemaker.job_seconds["training"] = 8 * HOUR
    client.create_training_job(**training_request(bucket))
    settled(fake_sagemaker)
    fake_sagemaker.clock.advance(6 * HOUR - 60)
    assert client.describe_training_job(TrainingJobName="train-1")["TrainingJobStatus"] == "InProgress"
    fake_sagemaker.clock.advance(120)
    job = client.describe_training_job(TrainingJobName="train-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert job["TrainingEndTime"].timestamp() == pytest.approx(job["CreationTime"].timestamp() + 6 * HOUR, abs=1)


def test_a_spot_training_job_is_bounded_by_max_wait_and_must_declare_it(client, fake_sagemaker, bucket, monkeypatch):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="Invalid MaxWaitTimeInSeconds"):
        client.create_training_job(**training_request(bucket, EnableManagedSpotTraining=True))
    succeed(fake_sagemaker, monkeypatch)
    fake_sagemaker.job_seconds["training"] = 2 * HOUR
    fake_sagemaker.spot_wait_seconds = 1.5 * HOUR  # waiting for Spot capacity
    spot = training_request(
        bucket,
        EnableManagedSpotTraining=True,
        StoppingCondition={"MaxRuntimeInSeconds": 3 * HOUR, "MaxWaitTimeInSeconds": 3 * HOUR},
    )
    client.create_training_job(**spot)
    settled(fake_sagemaker)
    fake_sagemaker.clock.advance(HOUR)
    assert client.describe_training_job(TrainingJobName="train-1")["SecondaryStatus"] == "Starting"
    fake_sagemaker.clock.advance(2 * HOUR)
    job = client.describe_training_job(TrainingJobName="train-1")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxWaitTimeExceeded")


def test_a_failed_training_job_gives_algorithm_error_and_its_failure_file(client, fake_sagemaker, bucket):
    request = training_request(bucket, HyperParameters={"no_such_flag": "1"})
    client.create_training_job(**request)
    settled(fake_sagemaker)
    job = client.describe_training_job(TrainingJobName="train-1")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: ConfigError (exit 2): ")
    assert "--no-such-flag" in job["FailureReason"]


def test_training_keeps_its_metric_definitions_and_reports_their_last_values(
    client, fake_sagemaker, bucket, monkeypatch
):
    succeed(fake_sagemaker, monkeypatch, log="epoch 1 loss=0.70\nepoch 2 loss=0.35 eval_f1=0.81\n")
    definitions = [
        {"Name": "train:loss", "Regex": r"loss=([0-9.]+)"},
        {"Name": "eval:f1", "Regex": r"eval_f1=([0-9.]+)"},
    ]
    request = training_request(bucket)
    request["AlgorithmSpecification"]["MetricDefinitions"] = definitions
    client.create_training_job(**request, Environment={"TF_USE_LEGACY_KERAS": "1"})
    settled(fake_sagemaker)
    job = client.describe_training_job(TrainingJobName="train-1")
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == definitions
    assert {metric["MetricName"]: metric["Value"] for metric in job["FinalMetricDataList"]} == {
        "train:loss": 0.35,
        "eval:f1": 0.81,
    }
    assert job["Environment"] == {"TF_USE_LEGACY_KERAS": "1"}


def test_a_processing_job_keeps_its_exit_message_apart_from_its_failure_reason(client, fake_sagemaker):
    client.create_processing_job(**processing_request())
    settled(fake_sagemaker)
    job = client.describe_processing_job(ProcessingJobName="stage-1")
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: See job logs for more information"
    assert job["ExitMessage"].startswith("ConfigError (exit 2): python -m tasks stage: ")
    assert job["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m7i.xlarge"


def test_a_processing_job_shows_the_first_kilobyte_of_its_message_only_once_it_ended(
    client, fake_sagemaker, monkeypatch
):
    def long_message(arguments, root, environment):
        (root / "output").mkdir(parents=True, exist_ok=True)
        (root / "output" / "message").write_text("x" * 3000)
        return 1, ""

    monkeypatch.setattr(fake_sagemaker, "_run", long_message)
    fake_sagemaker.job_seconds["processing"] = 600
    client.create_processing_job(**processing_request())
    settled(fake_sagemaker)
    running = client.describe_processing_job(ProcessingJobName="stage-1")
    assert running["ProcessingJobStatus"] == "InProgress" and "ExitMessage" not in running
    assert "ProcessingEndTime" not in running
    fake_sagemaker.clock.advance(600)
    ended = client.describe_processing_job(ProcessingJobName="stage-1")
    assert ended["ProcessingJobStatus"] == "Failed" and ended["ExitMessage"] == "x" * 1024


def test_a_processing_job_past_its_max_runtime_is_stopped(client, fake_sagemaker, monkeypatch):
    succeed(fake_sagemaker, monkeypatch)
    fake_sagemaker.job_seconds["processing"] = 2 * HOUR
    client.create_processing_job(**processing_request())
    settled(fake_sagemaker)
    fake_sagemaker.clock.advance(HOUR)
    [summary] = client.list_processing_jobs()["ProcessingJobSummaries"]
    assert summary["ProcessingJobStatus"] == "Stopped"


def test_a_held_job_stays_in_progress_and_a_status_a_test_sets_stays(client, fake_sagemaker):
    fake_sagemaker.hold_jobs = True
    client.create_processing_job(**processing_request())
    assert client.describe_processing_job(ProcessingJobName="stage-1")["ProcessingJobStatus"] == "InProgress"
    fake_sagemaker.backend().processing_jobs["stage-1"].processing_job_status = "Failed"
    assert client.describe_processing_job(ProcessingJobName="stage-1")["ProcessingJobStatus"] == "Failed"


def test_a_held_job_runs_when_released_and_its_time_counts_from_then(client, fake_sagemaker, monkeypatch):
    succeed(fake_sagemaker, monkeypatch)
    fake_sagemaker.hold_jobs = True
    fake_sagemaker.job_seconds["processing"] = 600
    client.create_processing_job(**processing_request())
    fake_sagemaker.clock.advance(HOUR - 60)  # held: nearly its MaxRuntime passes unrun
    fake_sagemaker.finish_held(fake_sagemaker.backend().processing_jobs["stage-1"])
    settled(fake_sagemaker)
    assert client.describe_processing_job(ProcessingJobName="stage-1")["ProcessingJobStatus"] == "InProgress"
    fake_sagemaker.clock.advance(600)
    assert client.describe_processing_job(ProcessingJobName="stage-1")["ProcessingJobStatus"] == "Completed"


def test_jobs_keep_their_network_settings_and_refuse_too_many_security_groups(
    client, fake_sagemaker, bucket, monkeypatch
):
    from botocore.exceptions import ClientError

    succeed(fake_sagemaker, monkeypatch)
    vpc = {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1", "subnet-2"]}
    client.create_training_job(**training_request(bucket, VpcConfig=vpc, EnableNetworkIsolation=True))
    network = {"EnableNetworkIsolation": True, "VpcConfig": vpc}
    client.create_processing_job(**processing_request(NetworkConfig=network))
    client.create_model(
        ModelName="m",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE},
        VpcConfig=vpc,
        EnableNetworkIsolation=True,
    )
    training = client.describe_training_job(TrainingJobName="train-1")
    assert training["VpcConfig"] == vpc and training["EnableNetworkIsolation"] is True
    assert client.describe_processing_job(ProcessingJobName="stage-1")["NetworkConfig"] == network
    model = client.describe_model(ModelName="m")
    assert model["VpcConfig"] == vpc and model["EnableNetworkIsolation"] is True
    too_many = {"SecurityGroupIds": [f"sg-{index}" for index in range(6)], "Subnets": ["subnet-1"]}
    with pytest.raises(ClientError, match="vpcConfig.securityGroupIds.*less than or equal to 5"):
        client.create_training_job(**training_request(bucket, name="train-2", VpcConfig=too_many))


# ---- instance types ---------------------------------------------------------------------------------------------
def test_instance_types_are_checked_against_botocores_enum_for_their_use(client, fake_sagemaker, bucket, monkeypatch):
    from botocore.exceptions import ClientError

    succeed(fake_sagemaker, monkeypatch)
    request = training_request(bucket)
    request["ResourceConfig"]["InstanceType"] = "ml.c6i.large"  # a hosting type; training starts at xlarge
    with pytest.raises(ClientError, match=r"Value 'ml.c6i.large' at 'resourceConfig.instanceType'"):
        client.create_training_job(**request)
    processing = processing_request()
    processing["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "ml.c6i.large"
    with pytest.raises(ClientError, match=r"Value 'ml.c6i.large' at 'processingResources.clusterConfig"):
        client.create_processing_job(**processing)
    client.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    endpoint_config(client, "ok", "ml.c6i.large")
    with pytest.raises(ClientError, match=r"Value 'ml.c6i.huge' at 'productionVariants.1.member.instanceType'"):
        endpoint_config(client, "bad", "ml.c6i.huge")
    assert not client.list_training_jobs()["TrainingJobSummaries"]


# ---- endpoints --------------------------------------------------------------------------------------------------
def endpoint_config(client, name: str, instance_type: str = "ml.c6i.xlarge", count: int = 4) -> None:
    client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "main", "ModelName": "m", "InstanceType": instance_type, "InitialInstanceCount": count}
        ],
    )


@pytest.fixture
def endpoint(client, fake_sagemaker):
    """Endpoint ``e`` InService on config ``old``; config ``new`` exists; rollouts take 10 minutes."""
    client.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    for name in ("old", "new"):
        endpoint_config(client, name)
    fake_sagemaker.endpoint_seconds = 600
    client.create_endpoint(EndpointName="e", EndpointConfigName="old")
    assert client.describe_endpoint(EndpointName="e")["EndpointStatus"] == "Creating"
    fake_sagemaker.clock.advance(600)
    assert client.describe_endpoint(EndpointName="e")["EndpointStatus"] == "InService"
    return "e"


CANARY = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 600,
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        },
        "TerminationWaitInSeconds": 120,
        "MaximumExecutionTimeoutInSeconds": 1800,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "nlp-5xx"}]},
}


def test_an_update_is_pending_on_the_new_config_until_it_is_done(client, fake_sagemaker, endpoint):
    from botocore.exceptions import ClientError

    client.update_endpoint(EndpointName=endpoint, EndpointConfigName="new", DeploymentConfig=CANARY)
    updating = client.describe_endpoint(EndpointName=endpoint)
    assert (updating["EndpointStatus"], updating["EndpointConfigName"]) == ("Updating", "old")
    pending = updating["PendingDeploymentSummary"]
    assert pending["EndpointConfigName"] == "new" and pending["ProductionVariants"][0]["VariantName"] == "main"
    assert pending["ProductionVariants"][0]["VariantStatus"][0]["Status"] == "Creating"
    with pytest.raises(ClientError, match="Cannot update in-progress endpoint"):
        client.update_endpoint(EndpointName=endpoint, EndpointConfigName="new")
    fake_sagemaker.clock.advance(600)
    done = client.describe_endpoint(EndpointName=endpoint)
    assert (done["EndpointStatus"], done["EndpointConfigName"]) == ("InService", "new")
    assert "PendingDeploymentSummary" not in done and "FailureReason" not in done
    assert [body["EndpointConfigName"] for body in fake_sagemaker.requests_of("update_endpoint")] == ["new", "new"]


def test_an_update_an_alarm_rolls_back_returns_to_the_old_config_naming_the_alarm(client, fake_sagemaker, endpoint):
    fake_sagemaker.roll_back_updates = True
    client.update_endpoint(EndpointName=endpoint, EndpointConfigName="new", DeploymentConfig=CANARY)
    statuses = []
    for _ in range(3):
        described = client.describe_endpoint(EndpointName=endpoint)
        statuses.append((described["EndpointStatus"], described["EndpointConfigName"]))
        fake_sagemaker.clock.advance(600)
    assert statuses == [("Updating", "old"), ("RollingBack", "old"), ("InService", "old")]
    assert "nlp-5xx" in described["FailureReason"]


def test_a_rollback_that_fails_ends_update_rollback_failed(client, fake_sagemaker, endpoint):
    fake_sagemaker.roll_back_updates = fake_sagemaker.rollback_fails = True
    client.update_endpoint(EndpointName=endpoint, EndpointConfigName="new", DeploymentConfig=CANARY)
    fake_sagemaker.clock.advance(1200)
    described = client.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "UpdateRollbackFailed" and "rollback" in described["FailureReason"]


def routing(kind: str, size: dict | None = None, wait: int = 600, **policy) -> dict:
    traffic = {"Type": kind, "WaitIntervalInSeconds": wait}
    if size is not None:
        traffic["CanarySize" if kind == "CANARY" else "LinearStepSize"] = size
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": traffic, **policy}}


@pytest.mark.parametrize(
    ("deployment", "refusal"),
    [
        (routing("CANARY", {"Type": "CAPACITY_PERCENT", "Value": 60}), "at most 50 %"),
        (routing("CANARY", {"Type": "INSTANCE_COUNT", "Value": 3}), "at most 50 %"),  # 3 of 4 instances
        (routing("CANARY"), "requires CanarySize"),
        (routing("LINEAR", {"Type": "CAPACITY_PERCENT", "Value": 5}), "10-50 %"),
        (routing("LINEAR", {"Type": "CAPACITY_PERCENT", "Value": 60}), "10-50 %"),
        (routing("LINEAR"), "requires LinearStepSize"),
        (routing("ALL_AT_ONCE", {"Type": "CAPACITY_PERCENT", "Value": 10}), "only valid for"),
        (routing("BLUE"), "enum value set"),
        (routing("ALL_AT_ONCE", wait=3601), "less than or equal to 3600"),
        (routing("ALL_AT_ONCE", TerminationWaitInSeconds=3601), "less than or equal to 3600"),
        (routing("ALL_AT_ONCE", MaximumExecutionTimeoutInSeconds=28801), "less than or equal to 28800"),
        (  # linear 10 % baked 60 min: 10 bakes and the termination wait, 39600 s, beyond the 28800 s cap
            routing(
                "LINEAR",
                {"Type": "CAPACITY_PERCENT", "Value": 10},
                wait=3600,
                TerminationWaitInSeconds=3600,
                MaximumExecutionTimeoutInSeconds=28800,
            ),
            "larger than the total waiting time 39600",
        ),
        (
            routing("CANARY", {"Type": "CAPACITY_PERCENT", "Value": 10}, MaximumExecutionTimeoutInSeconds=600),
            "larger than the total waiting time 600",
        ),
        (
            CANARY | {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": f"a{index}"} for index in range(11)]}},
            "length between 1 and 10",
        ),
    ],
)
def test_update_endpoint_refuses_a_deployment_config_sagemaker_refuses(client, endpoint, deployment, refusal):
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match=refusal) as refused:
        client.update_endpoint(EndpointName=endpoint, EndpointConfigName="new", DeploymentConfig=deployment)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"


@pytest.mark.parametrize(
    "deployment",
    [
        CANARY,
        routing("CANARY", {"Type": "INSTANCE_COUNT", "Value": 2}),
        routing("LINEAR", {"Type": "CAPACITY_PERCENT", "Value": 25}, MaximumExecutionTimeoutInSeconds=3000),
        routing("ALL_AT_ONCE", wait=0),
        {},
    ],
)
def test_update_endpoint_takes_the_deployment_configs_sagemaker_takes(client, endpoint, deployment):
    client.update_endpoint(EndpointName=endpoint, EndpointConfigName="new", DeploymentConfig=deployment)
    assert client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating"


def test_a_step_moves_whole_instances_at_most_half_the_new_fleet(client, endpoint):
    from botocore.exceptions import ClientError

    for name, count in (("one", 1), ("three", 3)):
        endpoint_config(client, name, count=count)
    half_of_three = routing("CANARY", {"Type": "CAPACITY_PERCENT", "Value": 50})
    for config, deployment in (("one", CANARY), ("three", half_of_three)):
        with pytest.raises(ClientError, match="at most 50 % .canary and linear need at least 2 instances"):
            client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config, DeploymentConfig=deployment)
    client.update_endpoint(EndpointName=endpoint, EndpointConfigName="three", DeploymentConfig=CANARY)


def test_a_second_group_of_a_name_is_refused_as_the_provider_expects(client, fake_sagemaker):
    from botocore.exceptions import ClientError

    client.create_model_package_group(ModelPackageGroupName="g", ModelPackageGroupDescription="first")
    with pytest.raises(ClientError, match="Model Package Group already exists: arn:aws:sagemaker:"):
        client.create_model_package_group(ModelPackageGroupName="g", ModelPackageGroupDescription="second")
    assert client.describe_model_package_group(ModelPackageGroupName="g")["ModelPackageGroupDescription"] == "first"


# ---- data capture -----------------------------------------------------------------------------------------------
def capture(bucket: str, **changes) -> dict:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/capture/sagemaker",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    } | changes


def test_data_capture_is_kept_in_the_config_and_summarised_by_the_endpoint_serving_it(client, fake_sagemaker, bucket):
    asked = capture(bucket, KmsKeyId="alias/nlp-capture")
    client.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    endpoint_config(client, "quiet")
    variants = [{"VariantName": "main", "ModelName": "m", "InstanceType": "ml.c6i.xlarge", "InitialInstanceCount": 2}]
    client.create_endpoint_config(EndpointConfigName="watched", ProductionVariants=variants, DataCaptureConfig=asked)
    assert client.describe_endpoint_config(EndpointConfigName="watched")["DataCaptureConfig"] == asked
    assert "DataCaptureConfig" not in client.describe_endpoint_config(EndpointConfigName="quiet")

    fake_sagemaker.endpoint_seconds = 600
    client.create_endpoint(EndpointName="e", EndpointConfigName="watched")
    summary = {
        "EnableCapture": True,
        "CaptureStatus": "Stopped",  # not serving yet
        "CurrentSamplingPercentage": 100,
        "DestinationS3Uri": asked["DestinationS3Uri"],
        "KmsKeyId": "alias/nlp-capture",
    }
    assert client.describe_endpoint(EndpointName="e")["DataCaptureConfig"] == summary
    fake_sagemaker.clock.advance(600)
    assert client.describe_endpoint(EndpointName="e")["DataCaptureConfig"] == summary | {"CaptureStatus": "Started"}

    client.update_endpoint(EndpointName="e", EndpointConfigName="quiet")
    assert client.describe_endpoint(EndpointName="e")["DataCaptureConfig"]["CaptureStatus"] == "Started", "updating"
    fake_sagemaker.clock.advance(600)
    assert "DataCaptureConfig" not in client.describe_endpoint(EndpointName="e")


def test_an_endpoints_capture_summary_has_every_member_botocore_requires_with_or_without_a_key(
    client, fake_sagemaker, bucket
):
    """DataCaptureConfigSummary requires KmsKeyId (botocore); a config without a key is summarised with the
    shape's empty value, which its pattern and minimum length (0) allow."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = botocore.session.get_session().get_service_model("sagemaker").shape_for("DataCaptureConfigSummary")
    client.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variants = [{"VariantName": "main", "ModelName": "m", "InstanceType": "ml.c6i.xlarge", "InitialInstanceCount": 1}]
    for name, config in (("keyed", capture(bucket, KmsKeyId="alias/nlp-capture")), ("plain", capture(bucket))):
        client.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants, DataCaptureConfig=config)
        client.create_endpoint(EndpointName=name, EndpointConfigName=name)
        summary = client.describe_endpoint(EndpointName=name)["DataCaptureConfig"]
        assert set(shape.required_members) <= set(summary), name
        assert not ParamValidator().validate(summary, shape).has_errors(), name
    assert client.describe_endpoint(EndpointName="plain")["DataCaptureConfig"]["KmsKeyId"] == ""


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            {"InitialSamplingPercentage": 101},
            "Value '101' at 'dataCaptureConfig.initialSamplingPercentage' failed to satisfy constraint: Member must "
            "have value less than or equal to 100",
        ),
        (
            {"CaptureOptions": [{"CaptureMode": "Both"}]},
            "at 'dataCaptureConfig.captureOptions.1.member.captureMode' failed to satisfy constraint: Member must "
            "satisfy enum value set: [Input, Output, InputAndOutput]",
        ),
        ({"DestinationS3Uri": "ftp://b/capture"}, "dataCaptureConfig.destinationS3Uri' failed to satisfy constraint"),
        ({"KmsKeyId": "my key"}, "dataCaptureConfig.kmsKeyId' failed to satisfy constraint: Member must satisfy"),
        (
            {"CaptureContentTypeHeader": {"JsonContentTypes": [f"application/x{n}" for n in range(11)]}},
            "dataCaptureConfig.captureContentTypeHeader.jsonContentTypes' failed to satisfy constraint: Member must "
            "have length less than or equal to 10",
        ),
        (
            {"CaptureContentTypeHeader": {"JsonContentTypes": ["json"]}},
            "captureContentTypeHeader.jsonContentTypes.1.member' failed to satisfy constraint: Member must satisfy",
        ),
    ],
    ids=["percent", "mode", "destination", "kms", "types", "type"],
)
def test_a_data_capture_config_sagemaker_refuses_is_refused(client, fake_sagemaker, bucket, change, refusal):
    from botocore.exceptions import ClientError

    client.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variants = [{"VariantName": "main", "ModelName": "m", "InstanceType": "ml.c6i.xlarge", "InitialInstanceCount": 1}]
    with pytest.raises(ClientError, match=re.escape(refusal)):
        client.create_endpoint_config(
            EndpointConfigName="c", ProductionVariants=variants, DataCaptureConfig=capture(bucket, **change)
        )
    assert not client.list_endpoint_configs()["EndpointConfigs"]


def test_an_invocation_is_captured_by_sagemaker_and_by_the_server_its_models_environment_configures(
    client, fake_sagemaker, bucket, s3, trained_tiny
):
    """SageMaker starts the serving container without flags: the fake starts it with the model's Environment, so
    the server's own capture (NLP_CAPTURE_DIR) lands in S3 beside SageMaker's, which the config's DataCaptureConfig
    asks for (answers only here)."""
    import boto3

    from tasks.config import CAPTURE_ENV
    from tasks.monitoring import records
    from tasks.serving.contract import LABELS, SMOKE_REQUEST
    from tests.conftest import upload_folder

    model = upload_folder(s3["client"], trained_tiny, bucket, "models/tiny") + "/"
    root = f"s3://{bucket}/capture/nlp_sagemaker"
    environment = {CAPTURE_ENV["capture_dir"]: root, CAPTURE_ENV["capture_sample_rate"]: "1.0"}
    source = {"S3DataSource": {"S3Uri": model, "S3DataType": "S3Prefix", "CompressionType": "None"}}
    container = {"Image": IMAGE, "ModelDataSource": source, "Environment": environment}
    client.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer=container)
    variants = [{"VariantName": "main", "ModelName": "m", "InstanceType": "ml.c6i.xlarge", "InitialInstanceCount": 1}]
    answers_only = capture(bucket, DestinationS3Uri=f"{root}/sagemaker", CaptureOptions=[{"CaptureMode": "Output"}])
    client.create_endpoint_config(EndpointConfigName="c", ProductionVariants=variants, DataCaptureConfig=answers_only)
    client.create_endpoint(EndpointName="e", EndpointConfigName="c")
    runtime = boto3.client("sagemaker-runtime", endpoint_url=s3["env"]["AWS_ENDPOINT_URL"], region_name=REGION)
    answer = runtime.invoke_endpoint(EndpointName="e", ContentType="application/json", Body=json.dumps(SMOKE_REQUEST))[
        "Body"
    ].read()
    for server in fake_sagemaker.servers.values():
        server.stop()  # SIGTERM: the server closes (uploads) its capture file
    keys = [item["Key"] for item in s3["client"].list_objects_v2(Bucket=bucket, Prefix="capture/")["Contents"]]

    def read(key: str) -> list[dict]:
        body = s3["client"].get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        return [json.loads(line) for line in body.splitlines()]

    hour = r"\d{4}/\d{2}/\d{2}/\d{2}"
    [sagemakers] = [
        key for key in keys if re.fullmatch(rf"capture/nlp_sagemaker/sagemaker/e/main/{hour}/.+\.jsonl", key)
    ]
    [event] = read(sagemakers)
    assert set(event["captureData"]) == {"endpointOutput"}, "no request bodies (raw text) unless asked"
    output = event["captureData"]["endpointOutput"]
    assert (output["encoding"], output["mode"], json.loads(output["data"])) == ("JSON", "OUTPUT", json.loads(answer))
    [servers] = [key for key in keys if re.fullmatch(rf"capture/nlp_sagemaker/{hour}/[^.].*\{records.SUFFIX}", key)]
    captured = read(servers)
    assert len(captured) == len(SMOKE_REQUEST["instances"])
    assert [LABELS[each["label"]] for each in captured] == json.loads(answer)["labels"]
    assert all(set(records.FIELDS) <= set(each) and records.TEXT not in each for each in captured)


# ---- model registry ---------------------------------------------------------------------------------------------
def register(client, token: str | None = None, description: str = "v", **extra) -> str:
    request = {
        "ModelPackageGroupName": "g",
        "ModelPackageDescription": description,
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelApprovalStatus": "Approved",
    } | extra
    if token:
        request["ClientToken"] = token
    return client.create_model_package(**request)["ModelPackageArn"]


def test_the_package_group_keeps_its_description(client, fake_sagemaker):
    client.create_model_package_group(ModelPackageGroupName="g", ModelPackageGroupDescription="paraphrase models")
    assert client.describe_model_package_group(ModelPackageGroupName="g")["ModelPackageGroupDescription"] == (
        "paraphrase models"
    )


def test_list_model_packages_answers_small_pages_oldest_first_unless_asked(client, fake_sagemaker):
    client.create_model_package_group(ModelPackageGroupName="g")
    created = []
    for _ in range(23):
        created.append(register(client))
        fake_sagemaker.clock.advance(60)
    first = client.list_model_packages(ModelPackageGroupName="g")
    assert len(first["ModelPackageSummaryList"]) == 10 and first["NextToken"]
    pages = client.get_paginator("list_model_packages").paginate(ModelPackageGroupName="g")
    listed = [summary["ModelPackageArn"] for page in pages for summary in page["ModelPackageSummaryList"]]
    assert listed == created, "every version, oldest first, over three pages"
    newest = client.list_model_packages(ModelPackageGroupName="g", SortOrder="Descending", MaxResults=3)
    assert [summary["ModelPackageArn"] for summary in newest["ModelPackageSummaryList"]] == created[::-1][:3]


def test_create_model_package_with_the_same_client_token_creates_one_version(client, fake_sagemaker):
    from botocore.exceptions import ClientError

    client.create_model_package_group(ModelPackageGroupName="g")
    arn = register(client, token="run-1")
    assert register(client, token="run-1") == arn
    with pytest.raises(ClientError, match="different parameters") as conflict:
        register(client, token="run-1", description="another model")
    assert conflict.value.response["Error"]["Code"] == "ConflictException"
    assert register(client, token="run-2") != arn
    listed = client.list_model_packages(ModelPackageGroupName="g")["ModelPackageSummaryList"]
    assert len(listed) == 2
    fake_sagemaker.clock.advance(9 * HOUR)  # an idempotency token expires
    assert register(client, token="run-1") not in (arn, listed[1]["ModelPackageArn"])


def test_model_life_cycle_and_metadata_are_kept_and_updates_change_only_what_they_name(client, fake_sagemaker):
    client.create_model_package_group(ModelPackageGroupName="g")
    stage = {"Stage": "staging", "StageStatus": "Approved", "StageDescription": "passed the gate"}
    arn = register(client, ModelLifeCycle=stage, CustomerMetadataProperties={"run_id": "r1"})
    assert client.describe_model_package(ModelPackageName=arn)["ModelLifeCycle"] == stage
    production = {"Stage": "production", "StageStatus": "Approved"}
    client.update_model_package(ModelPackageArn=arn, ModelLifeCycle=production)
    client.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={"stage": "production"})
    described = client.describe_model_package(ModelPackageName=arn)
    assert described["ModelLifeCycle"] == production and described["ModelApprovalStatus"] == "Approved"
    assert described["CustomerMetadataProperties"] == {"run_id": "r1", "stage": "production"}
    client.update_model_package(ModelPackageArn=arn, CustomerMetadataPropertiesToRemove=["stage"])
    assert client.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"] == {"run_id": "r1"}
    [summary] = client.list_model_packages(ModelPackageGroupName="g")["ModelPackageSummaryList"]
    assert summary["ModelLifeCycle"] == production


# ---- hyperparameter tuning ----------------------------------------------------------------------------------------
ACCURACY = {"Name": "validation:accuracy", "Regex": r"validation accuracy ([0-9.]+)"}
RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "learning_rate", "MinValue": "1e-05", "MaxValue": "0.001", "ScalingType": "Logarithmic"}
    ],
    "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "1", "MaxValue": "3", "ScalingType": "Linear"}],
    "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ["16", "32"]}],
}


def tuning_request(bucket: str, name: str = "tune-1", trials: int = 5, parallel: int = 2, **config) -> dict:
    definition = {key: value for key, value in training_request(bucket).items() if key != "TrainingJobName"}
    definition["AlgorithmSpecification"]["MetricDefinitions"] = [ACCURACY]
    definition["StaticHyperParameters"] = {"seed": "42", "score_only": "True"}
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": ACCURACY["Name"]},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": RANGES,
            "TrainingJobEarlyStoppingType": "Auto",
            "RandomSeed": 7,
        }
        | config,
        "TrainingJobDefinition": definition,
    }


def scored_by_learning_rate(fake, monkeypatch, code: int = 0) -> None:
    """Each trial's step logs one epoch whose validation accuracy grows with its learning rate, and exits ``code``."""

    def run(arguments, root, environment):
        learning_rate = float(json.loads((root / "input/config/hyperparameters.json").read_text())["learning_rate"])
        return (
            code,
            f"epoch 1: train loss 0.5, validation loss 0.4, validation accuracy {0.5 + learning_rate * 100:.6f}",
        )

    monkeypatch.setattr(fake, "_run", run)


def tuning_job(client, name: str = "tune-1") -> dict:
    return client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)


def trials_of(client, name: str = "tune-1", **arguments) -> list[dict]:
    pages = client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=name, **arguments
    )
    return [summary for page in pages for summary in page["TrainingJobSummaries"]]


def test_a_tuning_job_runs_its_trials_a_few_at_a_time_and_completes_with_the_best(
    client, fake_sagemaker, bucket, monkeypatch
):
    scored_by_learning_rate(fake_sagemaker, monkeypatch)
    fake_sagemaker.job_seconds["training"] = HOUR
    client.create_hyper_parameter_tuning_job(**tuning_request(bucket, trials=5, parallel=2))
    seen = []
    for _ in range(4):
        settled(fake_sagemaker)
        job = tuning_job(client)
        seen.append((job["HyperParameterTuningJobStatus"], job["TrainingJobStatusCounters"]))
        fake_sagemaker.clock.advance(HOUR)
    assert [(status, counters["Completed"], counters["InProgress"]) for status, counters in seen] == [
        ("InProgress", 0, 2),
        ("InProgress", 2, 2),
        ("InProgress", 4, 1),
        ("Completed", 5, 0),
    ], "at most MaxParallelTrainingJobs at a time, MaxNumberOfTrainingJobs in all"
    job = tuning_job(client)
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 5, "Pending": 0, "Failed": 0}
    assert job["HyperParameterTuningEndTime"] >= job["CreationTime"]
    trials = trials_of(client)
    assert all(re.fullmatch(r"tune-1-00[1-5]-[0-9a-f]{8}", trial["TrainingJobName"]) for trial in trials)
    best = max(trials, key=lambda trial: float(trial["TunedHyperParameters"]["learning_rate"]))
    assert job["BestTrainingJob"]["TrainingJobName"] == best["TrainingJobName"]
    objective = job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]
    described = client.describe_training_job(TrainingJobName=best["TrainingJobName"])
    final = {metric["MetricName"]: metric["Value"] for metric in described["FinalMetricDataList"]}
    assert objective == {"Type": "Maximize", "MetricName": "validation:accuracy", "Value": final["validation:accuracy"]}
    assert objective["Value"] == pytest.approx(0.5 + float(best["TunedHyperParameters"]["learning_rate"]) * 100)
    # Each trial: the static hyperparameters, SageMaker's own key and a setting within the ranges.
    assert described["HyperParameters"] == {"seed": "42", "score_only": "True"} | best["TunedHyperParameters"] | {
        "_tuning_objective_metric": "validation:accuracy"
    }
    assert described["TuningJobArn"] == job["HyperParameterTuningJobArn"]
    assert described["AlgorithmSpecification"]["MetricDefinitions"] == [ACCURACY]
    for trial in trials:
        setting = trial["TunedHyperParameters"]
        assert 1e-5 <= float(setting["learning_rate"]) <= 1e-3 and setting["epochs"] in ("1", "2", "3")
        assert setting["batch_size"] in ("16", "32") and trial["ObjectiveStatus"] == "Succeeded"


def test_a_tuning_jobs_settings_are_drawn_again_from_its_random_seed(client, fake_sagemaker, bucket, monkeypatch):
    scored_by_learning_rate(fake_sagemaker, monkeypatch)
    for name, seed in (("tune-1", 7), ("tune-2", 7), ("tune-3", 8)):
        client.create_hyper_parameter_tuning_job(**tuning_request(bucket, name, trials=3, parallel=3, RandomSeed=seed))
    settled(fake_sagemaker)
    drawn = {
        name: [trial["TunedHyperParameters"] for trial in trials_of(client, name)]
        for name in ("tune-1", "tune-2", "tune-3")
    }
    assert drawn["tune-1"] == drawn["tune-2"] != drawn["tune-3"]
    assert len({setting["learning_rate"] for setting in drawn["tune-1"]}) == 3


def test_a_tuning_job_whose_every_trial_failed_fails(client, fake_sagemaker, bucket, monkeypatch):
    scored_by_learning_rate(fake_sagemaker, monkeypatch, code=1)
    client.create_hyper_parameter_tuning_job(**tuning_request(bucket, trials=2, parallel=2))
    settled(fake_sagemaker)
    job = tuning_job(client)
    assert job["HyperParameterTuningJobStatus"] == "Failed" and "2 training jobs failed" in job["FailureReason"]
    assert job["TrainingJobStatusCounters"]["NonRetryableError"] == 2 and "BestTrainingJob" not in job
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 0, "Pending": 0, "Failed": 2}
    assert {trial["ObjectiveStatus"] for trial in trials_of(client)} == {"Failed"}


def test_a_stopped_tuning_job_stops_its_trials_and_starts_no_more(client, fake_sagemaker, bucket, monkeypatch):
    import threading

    exit_now = threading.Event()

    def run(arguments, root, environment):
        exit_now.wait(60)
        return 0, "epoch 1: train loss 0.5, validation loss 0.4, validation accuracy 0.6"

    monkeypatch.setattr(fake_sagemaker, "_run", run)
    fake_sagemaker.hold_jobs = True  # one trial's step runs (until exit_now), the other's is not started yet
    client.create_hyper_parameter_tuning_job(**tuning_request(bucket, trials=5, parallel=2))
    first = [trial["TrainingJobName"] for trial in trials_of(client)]
    fake_sagemaker.finish_held(fake_sagemaker.backend().training_jobs[first[0]])
    client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-1")
    job = tuning_job(client)
    assert job["HyperParameterTuningJobStatus"] == "Stopping", "a trial's step still runs"
    assert [trial["TrainingJobStatus"] for trial in trials_of(client)] == ["Stopping", "Stopped"]
    exit_now.set()
    settled(fake_sagemaker)
    job = tuning_job(client)
    assert job["HyperParameterTuningJobStatus"] == "Stopped"
    assert [trial["TrainingJobStatus"] for trial in trials_of(client)] == ["Stopped", "Stopped"]
    assert job["TrainingJobStatusCounters"]["Stopped"] == 2
    stopped = client.describe_training_job(TrainingJobName=first[0])
    assert stopped["SecondaryStatus"] == "Stopped" and "TrainingEndTime" in stopped
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="is Stopped, not InProgress"):
        client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-1")


def test_a_stopped_training_job_is_stopping_until_its_step_exits(client, fake_sagemaker, bucket, monkeypatch):
    import threading

    from botocore.exceptions import ClientError

    exit_now = threading.Event()

    def run(arguments, root, environment):
        exit_now.wait(60)
        return 0, ""

    monkeypatch.setattr(fake_sagemaker, "_run", run)
    client.create_training_job(**training_request(bucket))
    client.stop_training_job(TrainingJobName="train-1")
    assert client.describe_training_job(TrainingJobName="train-1")["TrainingJobStatus"] == "Stopping"
    exit_now.set()
    settled(fake_sagemaker)
    assert client.describe_training_job(TrainingJobName="train-1")["TrainingJobStatus"] == "Stopped"
    with pytest.raises(ClientError, match="status Stopped"):
        client.stop_training_job(TrainingJobName="train-1")


def test_the_trials_are_listed_in_pages_filtered_and_sorted(client, fake_sagemaker, bucket, monkeypatch):
    from botocore.exceptions import ClientError

    scored_by_learning_rate(fake_sagemaker, monkeypatch)
    fake_sagemaker.page_size = 2
    client.create_hyper_parameter_tuning_job(**tuning_request(bucket, trials=5, parallel=5))
    settled(fake_sagemaker)
    first = client.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-1")
    assert len(first["TrainingJobSummaries"]) == 2 and first["NextToken"], "callers must follow NextToken"
    names = [trial["TrainingJobName"] for trial in trials_of(client)]
    assert names == sorted(names) and len(names) == 5
    best_first = trials_of(client, SortBy="FinalObjectiveMetricValue", SortOrder="Descending")
    values = [trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for trial in best_first]
    assert (
        values == sorted(values, reverse=True)
        and best_first[0]["TrainingJobName"] == tuning_job(client)["BestTrainingJob"]["TrainingJobName"]
    )
    assert trials_of(client, StatusEquals="Failed") == [] and len(trials_of(client, StatusEquals="Completed")) == 5
    with pytest.raises(ClientError, match="less than or equal to 100"):
        client.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-1", MaxResults=101)
    with pytest.raises(ClientError, match="Invalid pagination token"):
        client.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-1", NextToken="x")
    with pytest.raises(ClientError, match="ResourceNotFound|Could not find"):
        client.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-9")


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"HyperParameterTuningJobName": "t" * 33}, "length less than or equal to 32"),
        ({"objective": "validation:f1"}, r"objective metric \[validation:f1\] is not defined"),
        ({"parallel": 11}, "ResourceLimitExceeded"),
        ({"instance": "ml.c6i.large"}, "Member must satisfy enum value set"),
        (
            {"ranges": {"ContinuousParameterRanges": [RANGES["ContinuousParameterRanges"][0] | {"MinValue": "0"}]}},
            "Logarithmic scaling needs MinValue above 0",
        ),
        (
            {"ranges": {"IntegerParameterRanges": [RANGES["IntegerParameterRanges"][0] | {"MaxValue": "1"}]}},
            "MinValue 1 must be less than MaxValue 1",
        ),
        ({"ranges": {"CategoricalParameterRanges": [{"Name": "batch_size", "Values": ["16", "16"]}]}}, "distinct"),
        ({"static": {"learning_rate": "0.001"}}, r"\['learning_rate'\] are both static and tunable"),
        (
            {"ranges": {key: value for key, value in RANGES.items() if key != "ContinuousParameterRanges"}},
            r"combinations for the provided ranges \[6\] must be equal or greater than the value of MaxNumberOfJobs, \[8\]",
        ),
    ],
)
def test_a_tuning_job_sagemaker_would_refuse_is_refused(client, fake_sagemaker, bucket, change, refusal):
    from botocore.exceptions import ClientError

    request = tuning_request(bucket, trials=8)
    config, definition = request["HyperParameterTuningJobConfig"], request["TrainingJobDefinition"]
    request["HyperParameterTuningJobName"] = change.get("HyperParameterTuningJobName", "tune-1")
    config["HyperParameterTuningJobObjective"]["MetricName"] = change.get("objective", ACCURACY["Name"])
    config["ResourceLimits"]["MaxParallelTrainingJobs"] = change.get("parallel", 2)
    config["ParameterRanges"] = change.get("ranges", RANGES)
    definition["ResourceConfig"]["InstanceType"] = change.get("instance", "ml.m7i.xlarge")
    definition["StaticHyperParameters"] |= change.get("static", {})
    with pytest.raises(ClientError, match=refusal):
        client.create_hyper_parameter_tuning_job(**request)
    assert client.list_training_jobs()["TrainingJobSummaries"] == [], "no trial started"


def test_a_second_tuning_job_of_a_name_in_use_is_refused(client, fake_sagemaker, bucket, monkeypatch):
    """SageMaker's names are case-insensitive: ResourceInUse, whatever the case."""
    from botocore.exceptions import ClientError

    scored_by_learning_rate(fake_sagemaker, monkeypatch)
    client.create_hyper_parameter_tuning_job(**tuning_request(bucket, trials=2, parallel=2))
    for name in ("tune-1", "TUNE-1"):
        with pytest.raises(ClientError, match="ResourceInUse") as refused:
            client.create_hyper_parameter_tuning_job(**tuning_request(bucket, name, trials=2, parallel=2))
        assert refused.value.response["Error"]["Code"] == "ResourceInUse"
    settled(fake_sagemaker)
    assert len(trials_of(client)) == 2, "the first job's trials only"


def test_trials_without_an_objective_are_left_out_when_sorted_by_it(client, fake_sagemaker, bucket, monkeypatch):
    """ListTrainingJobsForHyperParameterTuningJob, SortBy FinalObjectiveMetricValue: "any training jobs that did not
    return an objective metric are not listed" (botocore's doc of SortBy)."""
    started = itertools.count()

    def run(arguments, root, environment):
        first = next(started) == 0  # atomic: the trials run in parallel threads
        learning_rate = float(json.loads((root / "input/config/hyperparameters.json").read_text())["learning_rate"])
        scored = f"epoch 1: train loss 0.5, validation loss 0.4, validation accuracy {0.5 + learning_rate * 100:.6f}"
        return 0, "" if first else scored

    monkeypatch.setattr(fake_sagemaker, "_run", run)
    client.create_hyper_parameter_tuning_job(**tuning_request(bucket, trials=3, parallel=3))
    settled(fake_sagemaker)
    every = trials_of(client)
    assert [trial["ObjectiveStatus"] for trial in every].count("Failed") == 1
    for order in ("Ascending", "Descending"):
        listed = trials_of(client, SortBy="FinalObjectiveMetricValue", SortOrder=order)
        assert len(listed) == 2 and all("FinalHyperParameterTuningJobObjectiveMetric" in each for each in listed)


def test_the_best_training_job_is_the_best_of_those_whose_objective_succeeded(
    client, fake_sagemaker, bucket, monkeypatch
):
    """A trial stopped after it reported its objective (ObjectiveStatus Succeeded) may be the best, as in
    SageMaker: one rule for BestTrainingJob and the counters, the objective's status."""
    import threading

    release, calls, lock = threading.Event(), [], threading.Lock()

    def run(arguments, root, environment):
        with lock:  # the trials run in parallel threads: exactly one of them is the first
            calls.append(json.loads((root / "input/config/hyperparameters.json").read_text())["learning_rate"])
            first = len(calls) == 1
        if first:  # the first trial to run scores best, and is stopped before it ends
            release.wait(60)
            return 0, "epoch 1: train loss 0.5, validation loss 0.4, validation accuracy 0.990000"
        return 0, "epoch 1: train loss 0.5, validation loss 0.4, validation accuracy 0.600000"

    monkeypatch.setattr(fake_sagemaker, "_run", run)
    client.create_hyper_parameter_tuning_job(**tuning_request(bucket, trials=2, parallel=2))
    for _ in range(600):
        if calls:
            break
        time.sleep(0.1)
    [first] = [
        each["TrainingJobName"]
        for each in trials_of(client)
        if each["TunedHyperParameters"]["learning_rate"] == calls[0]
    ]
    client.stop_training_job(TrainingJobName=first)
    release.set()
    settled(fake_sagemaker)
    summaries = {trial["TrainingJobName"]: trial for trial in trials_of(client)}
    assert (summaries[first]["TrainingJobStatus"], summaries[first]["ObjectiveStatus"]) == ("Stopped", "Succeeded")
    assert tuning_job(client)["BestTrainingJob"]["TrainingJobName"] == first
