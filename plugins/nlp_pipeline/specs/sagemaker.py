"""The SageMaker requests of the ``nlp_sagemaker`` pipeline, built from the run's Params and settings.

Plain functions from values to the dictionaries ``CreateProcessingJob``, ``CreateTrainingJob``,
``CreateModel``, ``CreateEndpointConfig`` and ``UpdateEndpoint`` take, so they can be read and tested
without AWS. Every value SageMaker wants as a string (hyper-parameters) is a string here.

Names are deterministic: ``nlp-<step>-<run key>-<6 hex of the run id>`` for what belongs to a run (model,
endpoint config), plus ``-t<try>`` for jobs, so a retried task finds its own job and never makes a second.
Job names are at most 63 characters of ``[a-zA-Z0-9-]``, as SageMaker requires.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nlp_pipeline.artefacts import run_suffix
from tasks.runtime.sagemaker_job import PROCESSING_INPUT, PROCESSING_OUTPUT

# The task image's entrypoint runs `python -m tasks ARGS` for a processing job's ContainerArguments.
_NAME_LIMIT = 63


@dataclass(frozen=True)
class Settings:
    """Where the pipeline runs on AWS: from Airflow Variables (see sagemaker.py), never hard-coded."""

    role_arn: str
    image_uri: str
    artefact_root: str  # s3://bucket/prefix
    endpoint_name: str
    model_package_group: str


def resource_name(kind: str, run_key: str, run_id: str, try_number: int | None = None) -> str:
    """``nlp-KIND-RUNKEY-HASH[-tN]``: one name per run (and try), valid for every SageMaker resource."""
    name = f"nlp-{kind}-{run_suffix(run_key, run_id)}" + (f"-t{try_number}" if try_number is not None else "")
    if len(name) > _NAME_LIMIT or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name):
        raise ValueError(f"{name!r} is not a valid SageMaker name (at most 63 of [a-zA-Z0-9-])")
    return name


def _cluster(instance_type: str, instance_count: int = 1, volume_gb: int = 30) -> dict:
    return {"InstanceType": instance_type, "InstanceCount": instance_count, "VolumeSizeInGB": volume_gb}


def _processing_input(name: str, s3_uri: str) -> dict:
    """One object (a name with a suffix: ``model.tar.gz``, ``train.tsv``) or a folder. A folder's prefix gets
    a ``/``, so that its files, not the folder, land in ``LocalPath`` and a sibling sharing the start of its
    name (``model-2/``) stays out."""
    folder = "." not in s3_uri.rstrip("/").rsplit("/", 1)[-1]
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": s3_uri.rstrip("/") + "/" if folder else s3_uri,
            "LocalPath": f"{PROCESSING_INPUT}/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def processing_job(
    name: str,
    settings: Settings,
    *,
    arguments: list[str],
    inputs: dict[str, str],
    output: str,
    instance_type: str,
    max_runtime_seconds: int,
) -> dict:
    """A processing job running ``python -m tasks ARGUMENTS`` in the task image; ``PROCESSING_OUTPUT`` → ``output``."""
    return {
        "ProcessingJobName": name,
        "RoleArn": settings.role_arn,
        "AppSpecification": {"ImageUri": settings.image_uri, "ContainerArguments": arguments},
        "ProcessingInputs": [_processing_input(input_name, uri) for input_name, uri in inputs.items()],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "output",
                    "S3Output": {"S3Uri": output, "LocalPath": PROCESSING_OUTPUT, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {"ClusterConfig": _cluster(instance_type)},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
        "Environment": {"TF_USE_LEGACY_KERAS": "1"},
    }


def _channel(name: str, s3_uri: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": s3_uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "InputMode": "File",
    }


def training_job(
    name: str,
    settings: Settings,
    *,
    staged: str,
    base_model: str,
    hyperparameters: dict,
    output: str,
    checkpoints: str,
    instance_type: str,
    instance_count: int,
    max_runtime_seconds: int,
    spot: bool,
    max_wait_seconds: int,
) -> dict:
    """The ``train`` step as a training job: the staged splits as channels, the model to ``output``.

    ``base_model`` is a hub id (a hyper-parameter) or an ``s3://`` folder (the ``model`` channel). With
    ``instance_count`` > 1 each host gets ``resourceconfig.json`` and the step trains multi-worker.
    Checkpoints sync to ``checkpoints`` on S3, so a restarted or Spot-interrupted job resumes.
    """
    channels = {
        "train": f"{staged}/train/",
        "validation": f"{staged}/validation/",
        "manifest": f"{staged}/manifest.json",
        "tokenizer": f"{staged}/tokenizer/",
    }
    parameters = {key: str(value) for key, value in hyperparameters.items()}
    if base_model.startswith("s3://"):
        channels["model"] = base_model.rstrip("/") + "/"
    else:
        parameters["model"] = base_model
    config = {
        "TrainingJobName": name,
        "RoleArn": settings.role_arn,
        "AlgorithmSpecification": {"TrainingImage": settings.image_uri, "TrainingInputMode": "File"},
        "HyperParameters": parameters,
        "InputDataConfig": [_channel(channel, uri) for channel, uri in channels.items()],
        "OutputDataConfig": {"S3OutputPath": output},
        "CheckpointConfig": {"S3Uri": checkpoints, "LocalPath": "/opt/ml/checkpoints"},
        "ResourceConfig": _cluster(instance_type, instance_count),
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
        "Environment": {"TF_USE_LEGACY_KERAS": "1"},
        "EnableManagedSpotTraining": spot,
    }
    if spot:
        config["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_wait_seconds
    return config


def container(image_uri: str, model_data: str) -> dict:
    """The serving container: a training job's model.tar.gz, or a processing job's uncompressed prefix."""
    if model_data.endswith(".tar.gz"):
        return {"Image": image_uri, "ModelDataUrl": model_data}
    source = {"S3Uri": model_data.rstrip("/") + "/", "S3DataType": "S3Prefix", "CompressionType": "None"}
    return {"Image": image_uri, "ModelDataSource": {"S3DataSource": source}}


# What a model was trained from, kept in its container's environment (the server ignores it): the endpoint's
# model then tells the training cache what production was trained on. Beside it, the digest the server verifies
# the model's files against before loading them (tasks.config.MODEL_DIGEST_ENV).
DATA_FINGERPRINT_ENV = "NLP_DATA_FINGERPRINT"
TRAINING_CONFIG_ENV = "NLP_TRAINING_CONFIG"


def model(name: str, settings: Settings, model_data: str, lineage: dict[str, str] | None = None) -> dict:
    """A SageMaker model: the task image serving ``model_data`` with ``serve``; ``lineage`` goes into its
    environment (``DATA_FINGERPRINT_ENV``, ``TRAINING_CONFIG_ENV``, ``MODEL_DIGEST_ENV``)."""
    primary = container(settings.image_uri, model_data) | {"Mode": "SingleModel"}
    if lineage:
        primary["Environment"] = lineage
    return {"ModelName": name, "ExecutionRoleArn": settings.role_arn, "PrimaryContainer": primary}


def model_package(settings: Settings, evaluation: dict, lineage: dict[str, str]) -> dict:
    """``CreateModelPackage`` fields beyond the group and status: what serves it, its metrics, its lineage."""
    return {
        "InferenceSpecification": {
            "Containers": [container(settings.image_uri, evaluation["model"])],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelMetrics": {
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": evaluation["evaluation"]}}
        },
        "CustomerMetadataProperties": {
            key: str(value)
            for key, value in {
                **lineage,
                "accuracy": evaluation["accuracy"],
                "f1": evaluation["f1"],
                "decision": evaluation["decision"],
                "model_digest": evaluation.get("model_digest"),  # of the files the gate judged (.digest)
            }.items()
            if value is not None
        },
    }


def endpoint_config(name: str, model_name: str, *, instance_type: str, instance_count: int) -> dict:
    return {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InstanceType": instance_type,
                "InitialInstanceCount": instance_count,
                "InitialVariantWeight": 1.0,
            }
        ],
    }


def deployment_config(*, traffic: str, step_percent: int, baking_minutes: int, alarms: list[str]) -> dict:
    """A blue/green ``DeploymentConfig``: all at once, canary or linear traffic shifting, with auto-rollback.

    The baking period is both the wait after each traffic step and the wait before the old fleet goes
    (SageMaker's WaitIntervalInSeconds and TerminationWaitInSeconds); an alarm in ALARM during any of
    them sends all traffic back to the old fleet.
    """
    baking = baking_minutes * 60
    routing: dict = {"Type": {"all_at_once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}[traffic]}
    routing["WaitIntervalInSeconds"] = baking
    steps = 1
    if traffic == "canary":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": step_percent}
        steps = 2
    elif traffic == "linear":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": step_percent}
        steps = -(-100 // step_percent)
    config: dict = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": min(baking, 3600),
            # SageMaker's bounds: at least 600 s, at most 8 h, and longer than all the waits together.
            "MaximumExecutionTimeoutInSeconds": min(max(600, steps * baking + min(baking, 3600) + 1800), 28800),
        }
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": alarm} for alarm in alarms]}
    return config
