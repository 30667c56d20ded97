"""``airflow dags test nlp_sagemaker`` against moto on 127.0.0.1, the jobs really run by tests/fakes/sagemaker.py.

A first run tunes (a hyperparameter tuning job of two trials), trains with the best setting and creates the
endpoint, a second (tuning off) updates it blue/green; the exact requests SageMaker received are checked, since moto
would accept anything. Then a broken answer fails the smoke test and ``rollback`` restores the first run's config.
"""

import json

import boto3
import pytest

from tests.airflow.conftest import dags_test, model_events, run_airflow, smoke_conf, task_states
from tests.conftest import upload_folder
from tests.fakes.sagemaker import IMAGE, REGION, ROLE


@pytest.fixture
def sagemaker_env(airflow_home, s3) -> dict:
    """The Airflow side of the account: the aws_default connection on moto and the pipeline's Variables."""
    connection = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": REGION, "endpoint_url": s3["env"]["AWS_ENDPOINT_URL"]},
    }
    return (
        airflow_home
        | s3["env"]
        | {
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(connection),
            "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": f"s3://{s3['bucket']}/artefacts",
            "AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN": ROLE,
            "AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE": IMAGE,
            "NLP_SAGEMAKER_POLL_SECONDS": "1",
        }
    )


# Two short trials, one at a time per core, searching the learning rate and the weight decay; the other
# dimensions fixed to the smoke run's values, so the chosen setting trains as fast.
TUNING = {
    "tuning_trials": 2,
    "tuning_parallel_jobs": 2,
    "tuning_max_steps": 3,
    "learning_rate_range": [5e-4, 2e-3],
    "epochs_range": [1, 1],
    "batch_sizes": [16],
    "warmup_ratio_range": [0.1, 0.1],
    "weight_decay_range": [0.0, 0.05],
}


def only(requests: list[dict]) -> dict:
    assert len(requests) == 1, requests
    return requests[0]


def test_create_then_blue_green_update_then_rollback(sagemaker_env, fake_sagemaker, s3, raw_data, tiny_model):
    client, bucket, env = s3["client"], s3["bucket"], sagemaker_env
    source, base = upload_folder(client, raw_data, bucket, "raw"), upload_folder(client, tiny_model, bucket, "base")
    conf = smoke_conf(f"{source}/", base)

    first = dags_test(env, "nlp_sagemaker", conf | {"quantize": True} | TUNING, "2026-03-01")
    states = task_states(env, "nlp_sagemaker", first)
    assert {task: states[task] for task in ("reject", "approve", "rollback")} == dict.fromkeys(
        ("reject", "approve", "rollback"), "skipped"
    )
    assert all(states[task] == "success" for task in states if task not in ("reject", "approve", "rollback")), states

    stage, quantize, evaluate = fake_sagemaker.requests_of("create_processing_job")
    assert [job["AppSpecification"]["ContainerArguments"][0] for job in (stage, quantize, evaluate)] == [
        "stage",
        "quantize",
        "evaluate",
    ]
    assert {job["AppSpecification"]["ImageUri"] for job in (stage, quantize, evaluate)} == {IMAGE}
    stage_flags = stage["AppSpecification"]["ContainerArguments"][1:]
    assert dict(zip(stage_flags[::2], stage_flags[1::2], strict=True)) == {
        "--source": "/opt/ml/processing/input/source",
        "--tokenizer": "/opt/ml/processing/input/tokenizer",
        "--max-seq-length": "128",
        "--allowed-sources": "/opt/ml/processing/input/source",  # the job may read its input only
        "--output": "/opt/ml/processing/output",
    }
    assert {i["InputName"]: i["S3Input"]["S3Uri"] for i in stage["ProcessingInputs"]} == {
        "source": f"{source}/",
        "tokenizer": f"{base}/",
    }
    assert [i["InputName"] for i in evaluate["ProcessingInputs"]] == ["model", "data"], "no champion yet"
    # quantize measures on the endpoint's instance type, and its decision says so; stage and evaluate do not.
    [endpoint_config] = fake_sagemaker.requests_of("create_endpoint_config")
    endpoint_type = endpoint_config["ProductionVariants"][0]["InstanceType"]
    assert [job["ProcessingResources"]["ClusterConfig"]["InstanceType"] for job in (stage, quantize, evaluate)] == [
        "ml.c6i.2xlarge",
        endpoint_type,
        "ml.c6i.2xlarge",
    ]
    quantized = quantize["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    record = client.get_object(Bucket=bucket, Key=f"{quantized.split('/', 3)[3]}/quantization.json")["Body"].read()
    assert json.loads(record)["hardware"]["target"] == f"SageMaker {endpoint_type} (the endpoint's)"
    # The tuning job ran its two trials; choose_setting wrote tuning.json beside them; train took its best setting.
    tuning = only(fake_sagemaker.requests_of("create_hyper_parameter_tuning_job"))
    job = tuning["HyperParameterTuningJobName"]
    limits = tuning["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert (limits["MaxNumberOfTrainingJobs"], limits["MaxParallelTrainingJobs"]) == (2, 2)
    static = tuning["TrainingJobDefinition"]["StaticHyperParameters"]
    assert (static["score_only"], static["max_steps"], static["epochs"], static["batch_size"]) == (
        "True",
        "3",
        "1",
        "16",
    )
    trials = {name: trial for name, trial in fake_sagemaker.backend().training_jobs.items() if name.startswith(job)}
    assert [trial.training_job_status for trial in trials.values()] == ["Completed", "Completed"], trials
    described = fake_sagemaker.backend().hyper_parameter_tuning_jobs[job]
    assert described.hyper_parameter_tuning_job_status == "Completed"
    key = f"artefacts/nlp_sagemaker/20260301T000000Z/tuning/{job}/tuning.json"
    searched = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert sorted(trial["name"] for trial in searched["trials"]) == sorted(trials)
    best = searched["best"]
    assert best["name"] == described.best_training_job["TrainingJobName"], "SageMaker's best is tuning.json's"
    training = only(fake_sagemaker.requests_of("create_training_job"))
    assert training["HyperParameters"] == {
        "epochs": "1",
        "batch_size": "16",
        "learning_rate": str(best["setting"]["learning_rate"]),
        "precision": "auto",
        "warmup_ratio": "0.1",
        "weight_decay": str(best["setting"]["weight_decay"]),
        "seed": "42",
        "tuning": f"s3://{bucket}/{key}",
    }
    assert 5e-4 <= best["setting"]["learning_rate"] <= 2e-3
    algorithm = training["AlgorithmSpecification"]
    assert (algorithm["TrainingImage"], algorithm["TrainingInputMode"]) == (IMAGE, "File")
    assert {metric["Name"] for metric in algorithm["MetricDefinitions"]} >= {"validation:accuracy", "validation:f1"}
    channels = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in training["InputDataConfig"]
    }
    staged = stage["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert channels == {
        "train": f"{staged}/train/",
        "validation": f"{staged}/validation/",
        "manifest": f"{staged}/manifest.json",
        "tokenizer": f"{staged}/tokenizer/",
        "model": f"{base}/",
    }
    assert training["ResourceConfig"] == {"InstanceType": "ml.c7i.4xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    assert training["EnableManagedSpotTraining"] is False and training["RoleArn"] == ROLE
    assert training["CheckpointConfig"]["S3Uri"].endswith("/nlp_sagemaker/20260301T000000Z/checkpoints")
    # The train step's TensorBoard events, uploaded from the job's LocalPath while it ran.
    tensorboard = training["TensorBoardOutputConfig"]["S3OutputPath"]
    assert tensorboard.endswith(f"/nlp_sagemaker/20260301T000000Z/tensorboard/{training['TrainingJobName']}")
    uploaded = client.list_objects_v2(Bucket=bucket, Prefix=tensorboard.split("/", 3)[3] + "/")["Contents"]
    events = [item["Key"] for item in uploaded if ".tfevents." in item["Key"]]
    assert {key.rsplit("/", 2)[1] for key in events} == {"train", "validation"}, [item["Key"] for item in uploaded]
    created = only(fake_sagemaker.requests_of("create_endpoint"))
    assert created["EndpointName"] == "nlp-paraphrase" and not fake_sagemaker.requests_of("update_endpoint")
    package = only(fake_sagemaker.requests_of("create_model_package"))
    assert package["ModelApprovalStatus"] == "Approved" and package["ModelPackageGroupName"] == "nlp-paraphrase"
    metrics = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    assert client.get_object(Bucket=bucket, Key=metrics.split("/", 3)[3])["ContentLength"] > 0
    first_config = created["EndpointConfigName"]
    events = model_events(env, "nlp_sagemaker", first)
    assert [(task, asset, extra["status"]) for task, asset, extra in events] == [
        ("register", "nlp_model_candidates", "approved"),
        ("mark_production", "nlp_model_production", "production"),
    ]
    [(_, _, candidate), (_, _, production)] = events
    assert production == candidate | {"status": "production"} and candidate["version"].startswith("nlp-paraphrase/")
    folder = quantized.rstrip("/")
    assert (candidate["uri"], candidate["model_card"]) == (f"{folder}/", f"{folder}/README.md")
    assert candidate["precision"] == json.loads(record)["chosen_precision"] and 0 <= candidate["accuracy"] <= 1
    assert candidate["data_fingerprint"].startswith("sha256:") and candidate["run_id"] == first

    second_conf = conf | {
        "quantize": False,
        "spot_training": True,
        "blue_green": {"traffic": "linear", "step_percent": 25, "baking_minutes": 5, "alarms": ["nlp-5xx"]},
        "endpoint_instance_count": 2,  # a linear step moves whole instances, at most half the fleet
    }
    second = dags_test(env, "nlp_sagemaker", second_conf, "2026-03-08")
    states = task_states(env, "nlp_sagemaker", second)
    assert states["quantize"] == "success" and states["mark_production"] == "success", states
    jobs = [
        job["AppSpecification"]["ContainerArguments"][0] for job in fake_sagemaker.requests_of("create_processing_job")
    ]
    assert jobs.count("quantize") == 1, "quantisation off: the trained model is the candidate, no job runs"
    assert states["tune"] == "skipped" and states["choose_setting"] == "success", "tuning off"
    assert len(fake_sagemaker.requests_of("create_hyper_parameter_tuning_job")) == 1
    training = fake_sagemaker.requests_of("create_training_job")[-1]
    assert "tuning" not in training["HyperParameters"] and training["HyperParameters"]["learning_rate"] == "0.001"
    assert training["EnableManagedSpotTraining"] is True
    assert training["StoppingCondition"] == {"MaxRuntimeInSeconds": 6 * 3600, "MaxWaitTimeInSeconds": 12 * 3600}
    evaluate = fake_sagemaker.requests_of("create_processing_job")[-1]
    assert [i["InputName"] for i in evaluate["ProcessingInputs"]] == ["model", "data", "champion"]
    [(_, _, candidate), (_, _, production)] = model_events(env, "nlp_sagemaker", second)
    assert candidate["uri"].endswith("/model.tar.gz") and candidate["model_card"] is None, "the card is inside"
    assert (candidate["precision"], production["status"]) == ("fp32", "production")
    update = only(fake_sagemaker.requests_of("update_endpoint"))
    assert update["EndpointName"] == "nlp-paraphrase" and update["EndpointConfigName"] != first_config
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 300,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    assert policy["TerminationWaitInSeconds"] == 300
    assert 4 * 300 + 300 < policy["MaximumExecutionTimeoutInSeconds"] <= 28800, "it covers every bake"
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "nlp-5xx"}]}
    second_config = update["EndpointConfigName"]
    sagemaker = boto3.client("sagemaker", endpoint_url=s3["env"]["AWS_ENDPOINT_URL"], region_name=REGION)
    packages = sagemaker.list_model_packages(ModelPackageGroupName="nlp-paraphrase")["ModelPackageSummaryList"]
    described = [sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in packages]
    stages = [(p["ModelPackageVersion"], p["ModelApprovalStatus"], p["ModelLifeCycle"]["Stage"]) for p in described]
    assert stages == [(1, "Approved", "Archived"), (2, "Approved", "Production")]
    served = fake_sagemaker.backend().endpoints["nlp-paraphrase"]
    assert (served.endpoint_status, served.endpoint_config_name) == ("InService", second_config)

    fake_sagemaker.broken_answers = True
    failed = run_airflow(env, "tasks", "test", "nlp_sagemaker", "smoke_test", "2026-03-08", check=False)
    assert "smoke test of endpoint nlp-paraphrase failed" in failed.stdout + failed.stderr
    run_airflow(env, "tasks", "test", "nlp_sagemaker", "rollback", "2026-03-08")
    rolled_back = fake_sagemaker.requests_of("update_endpoint")[-1]
    assert rolled_back == {"EndpointName": "nlp-paraphrase", "EndpointConfigName": first_config}
    assert fake_sagemaker.backend().endpoints["nlp-paraphrase"].endpoint_config_name == first_config
