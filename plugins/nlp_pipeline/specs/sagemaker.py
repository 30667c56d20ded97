"""The SageMaker requests of the ``nlp_sagemaker`` pipeline, built from the run's Params and settings.

Plain functions from values to the dictionaries ``CreateProcessingJob``, ``CreateTrainingJob``,
``CreateHyperParameterTuningJob``, ``CreateModel``, ``CreateEndpointConfig`` and ``UpdateEndpoint`` take, so they
can be read and tested without AWS. Every value SageMaker wants as a string (hyper-parameters, the tuning job's
ranges) is a string here.

Names are deterministic: ``nlp-<step>-<run key>-<6 hex of the run id>`` for what belongs to a run, plus
``-t<try>`` for jobs, so a retried task finds its own job and never makes a second, and ``-<8 hex>`` of the
model's content digest for the model and endpoint config serving it, so a run whose quantize or evaluate was
cleared makes a new model. Names are at most 63 characters of ``[a-zA-Z0-9-]``, as SageMaker requires; a tuning
job's at most 32 (``tuning_job_name``), since SageMaker names its training jobs after it.

Limits and enums come from botocore's SageMaker service model (the one the amazon provider sends requests with)
and the AWS docs; tests/airflow/test_sagemaker_specs.py checks every request against that model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from nlp_pipeline.artefacts import run_hash, run_suffix
from nlp_pipeline.specs.sagemaker_api import BLUE_GREEN_DEFAULT as BLUE_GREEN_DEFAULT
from nlp_pipeline.specs.sagemaker_api import (
    BLUE_GREEN_SCHEMA,
    MAX_SEARCHED_HYPERPARAMETERS,
    MAX_TUNING_SECONDS,
    execution_timeout,
    max_categorical_values,
)
from nlp_pipeline.specs.sagemaker_api import INSTANCE_SHAPES as INSTANCE_SHAPES
from nlp_pipeline.specs.sagemaker_api import PROVISIONING_SECONDS as PROVISIONING_SECONDS
from nlp_pipeline.specs.sagemaker_api import TRAFFIC as TRAFFIC
from nlp_pipeline.specs.sagemaker_api import instance_types as instance_types
from nlp_pipeline.specs.sagemaker_api import kms_key_id_refusal as kms_key_id_refusal
from tasks.config import (
    CAPTURE_DEFAULTS,
    CAPTURE_ENV,
    ServeArguments,
    _environment_value,
    describe_range,
    flag_schema,
)
from tasks.runtime.digest import PREFIX as DIGEST_PREFIX
from tasks.runtime.sagemaker_job import PROCESSING_INPUT, PROCESSING_OUTPUT, TENSORBOARD_OUTPUT
from tasks.serving.contract import JSON_TYPES

# The task image's entrypoint runs `python -m tasks ARGS` for a processing job's ContainerArguments.
_NAME_LIMIT = 63
_DIGEST_HEX = 8  # of the model's sha256 in its model's and endpoint config's names


@dataclass(frozen=True)
class Settings:
    """Where the pipeline runs on AWS: from Airflow Variables (see sagemaker.py), never hard-coded."""

    role_arn: str
    image_uri: str
    artefact_root: str  # s3://bucket/prefix
    endpoint_name: str
    model_package_group: str
    kms_key_id: str | None = None  # encrypts what SageMaker itself writes of the endpoint (its data capture)


def _digest_hex(digest: str) -> str:
    hex_digits = digest.removeprefix(DIGEST_PREFIX)
    if not re.fullmatch(rf"[0-9a-f]{{{_DIGEST_HEX},}}", hex_digits):
        raise ValueError(f"digest {digest!r} is not {DIGEST_PREFIX}HEX (at least {_DIGEST_HEX} lowercase hex digits)")
    return hex_digits[:_DIGEST_HEX]


def resource_name(
    kind: str, run_key: str, run_id: str, try_number: int | None = None, digest: str | None = None
) -> str:
    """``nlp-KIND-RUNKEY-HASH[-tN][-DIGEST8]``: one name per run (and try, and served model), valid for every
    SageMaker resource. ``digest`` is the model's content digest (``sha256:HEX``, tasks/runtime/digest.py)."""
    name = f"nlp-{kind}-{run_suffix(run_key, run_id)}"
    name += f"-t{try_number}" if try_number is not None else ""
    name += f"-{_digest_hex(digest)}" if digest is not None else ""
    if len(name) > _NAME_LIMIT or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name):
        raise ValueError(f"{name!r} is not a valid SageMaker name (at most 63 of [a-zA-Z0-9-])")
    return name


# ---- network ------------------------------------------------------------------------------------------------------
_NETWORK_IDS = {  # field: (EC2 id pattern, botocore's count limits)
    "Subnets": (re.compile(r"subnet-[0-9a-f]+"), 1, 16),
    "SecurityGroupIds": (re.compile(r"sg-[0-9a-f]+"), 1, 5),
}
_ID_LENGTH = 32  # botocore's SubnetId and SecurityGroupId


@dataclass(frozen=True)
class Network:
    """Where jobs and the model run: the subnets and security groups of a VPC, and whether network isolation
    cuts the containers off from every network.

    An isolated container reaches nothing: only what SageMaker copies in (``s3://`` inputs and channels) and out
    (the outputs). A step that fetches a hub model or ``hf://`` data then fails; ``check_isolation`` refuses that
    before any job starts.
    """

    subnets: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    isolation: bool = False

    @classmethod
    def from_variable(cls, value: str | dict) -> Network:
        """From the Variable's JSON: ``{"Subnets": [...], "SecurityGroupIds": [...], "EnableNetworkIsolation": b}``
        (isolation optional, default false), checked against botocore's VpcConfig limits."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"the network setting is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise ValueError(f"the network setting must be an object with Subnets and SecurityGroupIds, not {value!r}")
        if unknown := sorted(set(value) - {*_NETWORK_IDS, "EnableNetworkIsolation"}):
            raise ValueError(
                f"the network setting has unknown fields {unknown}: Subnets, SecurityGroupIds and "
                "EnableNetworkIsolation are allowed"
            )
        ids = {}
        for field, (pattern, low, high) in _NETWORK_IDS.items():
            given = value.get(field)
            if not isinstance(given, list) or not low <= len(given) <= high:
                raise ValueError(f"network {field} must be a list of {low} to {high} ids, not {given!r}")
            bad = [
                item
                for item in given
                if not (isinstance(item, str) and len(item) <= _ID_LENGTH and pattern.fullmatch(item))
            ]
            if bad:
                raise ValueError(
                    f"network {field} has ids that are not {pattern.pattern} (at most {_ID_LENGTH}): {bad}"
                )
            ids[field] = tuple(given)
        isolation = value.get("EnableNetworkIsolation", False)
        if not isinstance(isolation, bool):
            raise ValueError(f"network EnableNetworkIsolation must be true or false, not {isolation!r}")
        return cls(ids["Subnets"], ids["SecurityGroupIds"], isolation)

    def vpc_config(self) -> dict:
        return {"Subnets": list(self.subnets), "SecurityGroupIds": list(self.security_group_ids)}


def check_isolation(network: Network | None, **sources: str) -> None:
    """Raise unless every source an isolated job needs comes from S3 (a hub id or ``hf://`` is downloaded by the
    step itself, which network isolation forbids)."""
    if network is None or not network.isolation:
        return
    if remote := [f"{name} {uri!r}" for name, uri in sources.items() if not uri.startswith("s3://")]:
        raise ValueError(
            f"network isolation is on, so a job cannot fetch {', '.join(remote)}: copy them to S3 and pass s3:// URIs"
        )


def check_capture(network: Network | None) -> None:
    """Raise when the endpoint's server could not write its capture: an isolated container reaches no S3, and
    SageMaker's own capture (request and answer bodies) is not what the monitor step reads."""
    if network is not None and network.isolation:
        raise ValueError(
            "capture_sample_rate asks the endpoint to capture its traffic, but the Variable nlp_sagemaker_network "
            "turns network isolation on: the server cannot write its capture records to S3, so the monitor would "
            "never see any. Set capture_sample_rate to 0, or EnableNetworkIsolation to false (the VPC then reaches "
            "S3 through its gateway endpoint)"
        )


# ---- jobs ---------------------------------------------------------------------------------------------------------
def _cluster(instance_type: str, instance_count: int = 1, volume_gb: int = 30) -> dict:
    return {"InstanceType": instance_type, "InstanceCount": instance_count, "VolumeSizeInGB": volume_gb}


def _processing_input(name: str, s3_uri: str) -> dict:
    """A URI ending in ``/`` is a prefix (a folder): its objects land in ``LocalPath``, and a sibling sharing the
    start of its name (``model-2/``) stays out. Without it, the URI is one object (``train.tsv``). The caller
    says which: a name is no clue (``bert-v1.0/`` is a folder)."""
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": s3_uri,
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
    network: Network | None = None,
) -> dict:
    """A processing job running ``python -m tasks ARGUMENTS`` in the task image; ``PROCESSING_OUTPUT`` → ``output``.

    ``inputs`` maps an input name to an ``s3://`` URI: ending in ``/``, a prefix; else one object.
    """
    config = {
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
    if network:
        config["NetworkConfig"] = {"VpcConfig": network.vpc_config(), "EnableNetworkIsolation": network.isolation}
    return config


# Where a training job finds its channels (SageMaker copies each to TRAINING_CHANNELS/NAME), and the search's
# tuning.json's channel.
TRAINING_CHANNELS = "/opt/ml/input/data"
TUNING_CHANNEL = "tuning"


def _channel(name: str, s3_uri: str) -> dict:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": s3_uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "InputMode": "File",
    }


# What SageMaker reads from the training job's log into its metrics (and the console's curves): the lines of
# tasks/training/callbacks.py, ProgressLogger ("epoch 1/3 step 10/20: loss 0.4123 | lr 2.00e-05 | 88.0 samples/s |
# ETA ...") and ValidationScorer ("epoch 1: train loss 0.3876, validation loss 0.4012, validation accuracy 0.8000,
# F1 0.8000 ..."). The validation figures are read from that line alone (anchored on its "epoch N: train loss"):
# the run's closing line repeats the last scores. botocore: at most 40 definitions; Name 1-255 and Regex 1-500
# characters. A tuning job maximises VALIDATION_ACCURACY, read per epoch, which its early stopping compares.
_EPOCH_LINE = r"epoch [0-9]+: train loss [0-9.]+, validation loss "
VALIDATION_ACCURACY, VALIDATION_F1, VALIDATION_LOSS = "validation:accuracy", "validation:f1", "validation:loss"
METRIC_DEFINITIONS = (
    {"Name": "train:loss", "Regex": r"step [0-9]+/[0-9]+: loss ([0-9.]+)"},
    {"Name": "train:learning_rate", "Regex": r"\| lr ([0-9.]+e[-+][0-9]+) \|"},
    {"Name": "train:samples_per_second", "Regex": r"\| ([0-9.]+) samples/s"},
    {"Name": "train:epoch_loss", "Regex": r"epoch [0-9]+: train loss ([0-9.]+), validation loss"},
    {"Name": VALIDATION_LOSS, "Regex": r"epoch [0-9]+: train loss [0-9.]+, validation loss ([0-9.]+)"},
    {"Name": VALIDATION_ACCURACY, "Regex": _EPOCH_LINE + r"[0-9.]+, validation accuracy ([0-9.]+)"},
    {"Name": VALIDATION_F1, "Regex": _EPOCH_LINE + r"[0-9.]+, validation accuracy [0-9.]+, F1 ([0-9.]+)"},
)


def training_job(
    name: str,
    settings: Settings,
    *,
    staged: str,
    base_model: str,
    hyperparameters: dict,
    output: str,
    checkpoints: str,
    tensorboard: str,
    instance_type: str,
    instance_count: int,
    max_runtime_seconds: int,
    spot: bool,
    max_wait_seconds: int,
    network: Network | None = None,
    tuning: str | None = None,
) -> dict:
    """The ``train`` step as a training job: the staged splits as channels, the model to ``output``.

    ``tuning`` is the search's tuning.json on S3 (train's ``--tuning``): an isolated job (``network``) cannot read
    S3 itself, so there it comes as the ``tuning`` channel and train reads SageMaker's copy of it.

    ``base_model`` is a hub id (a hyper-parameter) or an ``s3://`` folder (the ``model`` channel). With
    ``instance_count`` > 1 each host gets ``resourceconfig.json`` and the step trains multi-worker.
    Checkpoints sync to ``checkpoints`` on S3, so a restarted or Spot-interrupted job resumes. The step's
    TensorBoard events go to ``tensorboard``/``name`` on S3 while it trains: each job (a retry is another) its
    own folder, as a resumed job starts with no events locally, and TensorBoard shows each as a run. SageMaker
    records loss, learning rate, throughput, validation loss, accuracy and F1 from the log (``METRIC_DEFINITIONS``).
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
    if tuning and network and network.isolation:
        channels[TUNING_CHANNEL] = tuning
        parameters["tuning"] = f"{TRAINING_CHANNELS}/{TUNING_CHANNEL}/{tuning.rsplit('/', 1)[1]}"
    elif tuning:
        parameters["tuning"] = tuning
    config = {
        "TrainingJobName": name,
        "RoleArn": settings.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": settings.image_uri,
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(definition) for definition in METRIC_DEFINITIONS],
        },
        "HyperParameters": parameters,
        "InputDataConfig": [_channel(channel, uri) for channel, uri in channels.items()],
        "OutputDataConfig": {"S3OutputPath": output},
        "CheckpointConfig": {"S3Uri": checkpoints, "LocalPath": "/opt/ml/checkpoints"},
        "TensorBoardOutputConfig": {
            "S3OutputPath": f"{tensorboard.rstrip('/')}/{name}",
            "LocalPath": TENSORBOARD_OUTPUT,
        },
        "ResourceConfig": _cluster(instance_type, instance_count),
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
        "Environment": {"TF_USE_LEGACY_KERAS": "1"},
        "EnableManagedSpotTraining": spot,
    }
    if spot:
        config["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_wait_seconds
    if network:
        config |= {"VpcConfig": network.vpc_config(), "EnableNetworkIsolation": network.isolation}
    return config


# ---- hyperparameter tuning ----------------------------------------------------------------------------------------
# botocore HyperParameterTuningJobName: 1-32 of [a-zA-Z0-9-]; SageMaker names the tuning job's training jobs
# NAME-NNN-HEX8, within their 63.
_TUNING_NAME_LIMIT = 32
# How SageMaker searches each kind of dimension of the tuning space (the ``space`` of tasks/tuning's plan.json):
# the ParameterRanges list and its ScalingType. The learning rate is searched on a log scale, as the local search
# draws it; a choice (the batch size) is categorical.
_RANGES = {
    "log": ("ContinuousParameterRanges", "Logarithmic"),
    "linear": ("ContinuousParameterRanges", "Linear"),
    "integer": ("IntegerParameterRanges", "Linear"),
}
_CHOICE = ("CategoricalParameterRanges", "choice")
# What a tuning job's TrainingJobDefinition does not take of a training job's request: its name and hyperparameters
# (each trial's own), its TensorBoard upload (no such field), and its CheckpointConfig: every trial would get the
# same S3 prefix, and a trial restarted on it would resume from another trial's checkpoint. Trials are short.
_NOT_IN_DEFINITION = ("TrainingJobName", "HyperParameters", "TensorBoardOutputConfig", "CheckpointConfig")


def tuning_job_name(run_key: str, run_id: str, try_number: int) -> str:
    """``nlp-tune-YYYYMMDD-HASH-tN``: the run's day, the run's hash (``artefacts.run_hash``) and the try, within the
    32 characters of a tuning job's name."""
    name = f"nlp-tune-{run_key[:8].lower()}-{run_hash(run_id)}-t{try_number}"
    if len(name) > _TUNING_NAME_LIMIT or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name):
        raise ValueError(f"{name!r} is not a valid tuning job name (at most {_TUNING_NAME_LIMIT} of [a-zA-Z0-9-])")
    return name


class SearchError(ValueError):
    """A search SageMaker refuses: the ``dimensions`` at fault (none: the search as a whole) and whether the number
    of trials is (``trials``), so a caller names its own inputs for them."""

    def __init__(self, message: str, *, dimensions: tuple[str, ...] = (), trials: bool = False):
        super().__init__(message)
        self.dimensions, self.trials = dimensions, trials


def _value(number) -> str:
    """A ParameterValue: SageMaker reads it as a number (1e-05 included)."""
    return repr(number)


def search_space(space: dict) -> tuple[dict, dict]:
    """(the ``ParameterRanges`` of ``space``, the hyperparameters it fixes).

    ``space`` maps a hyperparameter to ``{"type": "log" | "linear" | "integer", "range": [min, max]}`` or
    ``{"type": "choice", "values": [...]}``. A range of one value (min = max) or a choice of one is no search
    SageMaker accepts: it is fixed, a static hyperparameter. A choice's repeated values count once. Raises
    SearchError naming the hyperparameter for a range SageMaker refuses: min above max, a logarithmic one from 0 or
    below, an integer one of fractions, a choice of none or of more than SageMaker takes.
    """
    ranges: dict[str, list] = {}
    fixed: dict = {}
    for name, dimension in space.items():
        kind = dimension["type"]
        if kind == _CHOICE[1]:
            values = list(dict.fromkeys(dimension["values"]))
            most = max_categorical_values()
            if not 1 <= len(values) <= most:
                raise SearchError(
                    f"the search of {name} needs 1 to {most} different values, not {values}",
                    dimensions=(name,),
                )
            if len(values) == 1:
                fixed[name] = values[0]
            else:
                ranges.setdefault(_CHOICE[0], []).append({"Name": name, "Values": [str(value) for value in values]})
            continue
        if kind not in _RANGES:
            raise SearchError(
                f"the search of {name} is of type {kind!r}: one of {', '.join([*_RANGES, _CHOICE[1]])}",
                dimensions=(name,),
            )
        low, high = dimension["range"]
        if low > high:
            raise SearchError(
                f"the search range of {name} [{low}, {high}] has its minimum above its maximum", dimensions=(name,)
            )
        if kind == "integer" and not all(isinstance(bound, int) for bound in (low, high)):
            raise SearchError(f"the search range of {name} [{low}, {high}] must be whole numbers", dimensions=(name,))
        if kind == "log" and low <= 0:
            raise SearchError(
                f"the search range of {name} [{low}, {high}] is logarithmic: its minimum must be above 0",
                dimensions=(name,),
            )
        if low == high:
            fixed[name] = low
            continue
        key, scaling = _RANGES[kind]
        kind_of = int if kind == "integer" else float
        ranges.setdefault(key, []).append(
            {"Name": name, "MinValue": _value(kind_of(low)), "MaxValue": _value(kind_of(high)), "ScalingType": scaling}
        )
    searched = sum(len(each) for each in ranges.values())
    if searched > MAX_SEARCHED_HYPERPARAMETERS:
        raise SearchError(
            f"{searched} hyperparameters to search: SageMaker searches at most {MAX_SEARCHED_HYPERPARAMETERS}",
            dimensions=tuple(each["Name"] for kind in ranges.values() for each in kind),
        )
    return ranges, fixed


def _combinations(ranges: dict) -> int | None:
    """How many settings ``ranges`` hold, or None for endlessly many (a continuous range)."""
    if ranges.get("ContinuousParameterRanges"):
        return None
    integers = [int(each["MaxValue"]) - int(each["MinValue"]) + 1 for each in ranges.get("IntegerParameterRanges", [])]
    return math.prod([*integers, *(len(each["Values"]) for each in ranges.get("CategoricalParameterRanges", []))])


def check_search(space: dict, trials: int) -> tuple[dict, dict]:
    """``search_space(space)``, raising SearchError also for what SageMaker refuses of a whole search: fewer than 1
    trial, nothing to search, or fewer settings than ``trials`` (all dimensions whole numbers or choices)."""
    if trials < 1:
        raise SearchError(f"a tuning job runs at least 1 trial, not {trials}", trials=True)
    ranges, fixed = search_space(space)
    searched = [each["Name"] for kinds in ranges.values() for each in kinds]
    if not searched:
        raise SearchError(
            f"nothing to search: every dimension of the tuning space is one value ({fixed})", dimensions=tuple(fixed)
        )
    if (settings := _combinations(ranges)) is not None and settings < trials:
        raise SearchError(
            f"the tuning space holds {settings} setting(s) of {', '.join(searched)}, fewer than the {trials} trials: "
            f"SageMaker refuses that; widen a range or ask for fewer trials",
            dimensions=tuple(searched),
            trials=True,
        )
    return ranges, fixed


def tuning_job(
    name: str,
    training: dict,
    *,
    space: dict,
    trials: int,
    parallel: int,
    seed: int,
    early_stopping: bool,
    provisioning_seconds: int,
    budget_seconds: int,
) -> dict:
    """``training`` (a ``training_job`` request, its hyperparameters those of a trial) as a hyperparameter tuning job.

    SageMaker runs ``trials`` training jobs, at most ``parallel`` at a time, each with a setting its Bayesian search
    draws from ``space`` (``search_space``) and the rest of the request's hyperparameters, and maximises their
    ``VALIDATION_ACCURACY``. With ``early_stopping`` (Auto) SageMaker stops a trial whose accuracy after an epoch is
    below the median of the earlier trials' running averages up to that epoch. ``seed`` makes its choices repeatable. The whole search may take as
    long as its waves of trials (each its own limit, with Spot its wait, plus ``provisioning_seconds``), at most
    the search's budget (``budget_seconds``) and SageMaker's 30 days. Raises ValueError for a search SageMaker refuses (``check_search``).
    """
    if parallel < 1:
        raise ValueError(f"a tuning job runs at least 1 training job at a time, not {parallel}")
    ranges, fixed = check_search(space, trials)
    searched = [each["Name"] for kinds in ranges.values() for each in kinds]
    definition = {key: value for key, value in training.items() if key not in _NOT_IN_DEFINITION}
    static = {key: value for key, value in training["HyperParameters"].items() if key not in searched}
    definition["StaticHyperParameters"] = static | {key: str(value) for key, value in fixed.items()}
    stopping = training["StoppingCondition"]
    trial_seconds = stopping.get("MaxWaitTimeInSeconds", stopping["MaxRuntimeInSeconds"]) + provisioning_seconds
    at_once = min(parallel, trials)  # no more at a time than there are trials
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": VALIDATION_ACCURACY},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": trials,
                "MaxParallelTrainingJobs": at_once,
                "MaxRuntimeInSeconds": min(
                    math.ceil(trials / at_once) * trial_seconds, budget_seconds, MAX_TUNING_SECONDS
                ),
            },
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": "Auto" if early_stopping else "Off",
            "RandomSeed": seed,
        },
        "TrainingJobDefinition": definition,
    }


# ---- models, the registry, the endpoint ---------------------------------------------------------------------------
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


def capture_environment(flags: Mapping) -> dict[str, str]:
    """The server's capture settings (``serve`` flag values, as commands.capture_flags gives them; empty when
    capture is off) as the environment variables ``serve`` reads when started without flags
    (tasks.config.CAPTURE_ENV), as SageMaker starts it."""
    if unknown := sorted(set(flags) - set(CAPTURE_ENV)):
        raise ValueError(f"serve reads only {', '.join(CAPTURE_ENV)} from its environment, not {', '.join(unknown)}")
    rendered = {bool: lambda value: "true" if value else "false", float: repr, int: str, str: str}
    return {CAPTURE_ENV[name]: rendered[type(value)](value) for name, value in flags.items()}


def environment_capture(environment: Mapping[str, str]) -> dict:
    """The capture settings a model's Environment starts its server with, read as ``serve`` reads them
    (tasks.config.CAPTURE_ENV, a variable not set takes CAPTURE_DEFAULTS'): the inverse of
    ``capture_environment``; empty when the server captures nothing (no capture dir)."""
    fields = {spec.name: spec for spec in dataclasses.fields(ServeArguments)}
    flags = {}
    for name, variable in CAPTURE_ENV.items():
        default, given = CAPTURE_DEFAULTS[name], environment.get(variable)
        flags[name] = (
            default if given is None else _environment_value(variable, given.strip(), fields[name], type(default))
        )
    return flags if flags["capture_dir"] else {}


def model(
    name: str,
    settings: Settings,
    model_data: str,
    lineage: dict[str, str] | None = None,
    network: Network | None = None,
    capture: Mapping | None = None,
) -> dict:
    """A SageMaker model: the task image serving ``model_data`` with ``serve``; ``lineage`` goes into its
    environment (``DATA_FINGERPRINT_ENV``, ``TRAINING_CONFIG_ENV``, ``MODEL_DIGEST_ENV``), and ``capture``, the
    server's capture settings (``capture_environment``); ``network`` places the endpoint's containers in a VPC,
    isolated if asked (then the server cannot write its capture: ``check_capture``)."""
    primary = container(settings.image_uri, model_data) | {"Mode": "SingleModel"}
    environment = dict(lineage or {}) | capture_environment(capture or {})
    if environment:
        primary["Environment"] = environment
    config = {"ModelName": name, "ExecutionRoleArn": settings.role_arn, "PrimaryContainer": primary}
    if network:
        config |= {"VpcConfig": network.vpc_config(), "EnableNetworkIsolation": network.isolation}
    return config


_TOKEN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "nlp-pipeline/sagemaker/client-token")


def client_token(*parts: str) -> str:
    """A ``ClientToken`` (botocore: 1-36 of ``[a-zA-Z0-9-]``) for the same request retried: a UUID derived from
    ``parts``, e.g. (dag_id, run_id, task_id), so a retried task's CreateModelPackage makes no second version."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, json.dumps(parts)))


def model_package(settings: Settings, evaluation: dict, lineage: dict[str, str], *, client_token: str) -> dict:
    """``CreateModelPackage`` fields beyond the group and status: what serves it, its metrics, its lineage, and the
    idempotency token (``client_token(...)``) SageMaker answers a repeated request with the first version for."""
    return {
        "ClientToken": client_token,
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


# A model package's stage in SageMaker's ModelLifeCycle (Stage, StageStatus: 1-63 of [a-zA-Z0-9-]), in the names of
# the Model Registry's predefined stage constructs ("Set up Staging Construct Examples"), which Studio shows.
LIFE_CYCLE = {
    "production": ("Production", "Approved"),  # the version the endpoint serves
    "archived": ("Archived", "Retired"),  # served before; kept Approved, so a rollback can use it
}


def life_cycle(stage: str, description: str | None = None) -> dict:
    """``ModelLifeCycle`` of UpdateModelPackage for ``stage`` (production or archived)."""
    if stage not in LIFE_CYCLE:
        raise ValueError(f"no model life cycle stage {stage!r}: one of {', '.join(LIFE_CYCLE)}")
    name, status = LIFE_CYCLE[stage]
    return {"Stage": name, "StageStatus": status} | ({"StageDescription": description[:1024]} if description else {})


def endpoint_config(
    name: str, model_name: str, *, instance_type: str, instance_count: int, data_capture: dict | None = None
) -> dict:
    """``CreateEndpointConfig`` of one variant serving ``model_name``; ``data_capture``: its DataCaptureConfig
    (``data_capture_config``), none when capture is off."""
    config = {
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
    if data_capture:
        config["DataCaptureConfig"] = data_capture
    return config


# ---- data capture -------------------------------------------------------------------------------------------------
# Two captures run side by side under the run's capture root (artefacts.capture_uri). The server's own records
# (tasks/monitoring/records.py: token lengths, label, confidence; text only if asked), which the monitor step
# reads, go to ROOT/YYYY/MM/DD/HH/, set through the model's environment (tasks.config.CAPTURE_ENV), since SageMaker
# starts the container without flags. SageMaker's DataCaptureConfig keeps the request and answer bodies under
# ROOT/SAGEMAKER_CAPTURE/ENDPOINT/VARIANT/YYYY/MM/DD/HH/, apart from the hour folders the monitor reads.
SAGEMAKER_CAPTURE = "sagemaker"


def sampling_percentage(rate: float) -> int:
    """SageMaker's InitialSamplingPercentage (a whole percent, 0-100) of the server's ``--capture-sample-rate``
    (in its range, ServeArguments'): the nearest percent, at least 1, so a small rate still captures."""
    bounds = flag_schema(ServeArguments, "capture_sample_rate")
    if not bounds["exclusiveMinimum"] < rate <= bounds["maximum"]:
        allowed = describe_range({key: bounds[key] for key in ("exclusiveMinimum", "maximum")}, integer=False)
        raise ValueError(f"a capture sample rate is {allowed}, got {rate!r}")
    return max(1, min(100, round(rate * 100)))


def data_capture_config(capture_root: str, *, sample_rate: float, text: bool, kms_key_id: str | None = None) -> dict:
    """The endpoint config's DataCaptureConfig: SageMaker keeps ``sample_rate`` of the requests under
    ``capture_root``/SAGEMAKER_CAPTURE. It keeps bodies whole, so the requests (raw sentences) only when ``text``
    (the ``capture_text`` Param, the server's ``--capture-text``); else only the answers (labels and
    probabilities). ``kms_key_id`` encrypts them (SSE-KMS)."""
    modes = ["Input", "Output"] if text else ["Output"]
    config = {
        "EnableCapture": True,
        "InitialSamplingPercentage": sampling_percentage(sample_rate),
        "DestinationS3Uri": f"{capture_root.rstrip('/')}/{SAGEMAKER_CAPTURE}",
        "CaptureOptions": [{"CaptureMode": mode} for mode in modes],
        "CaptureContentTypeHeader": {"JsonContentTypes": list(JSON_TYPES)},  # kept as text, not base64
    }
    if kms_key_id:
        config["KmsKeyId"] = kms_key_id
    return config


# ---- blue/green ---------------------------------------------------------------------------------------------------
_ROUTING = {"all_at_once": "ALL_AT_ONCE", "canary": "CANARY", "linear": "LINEAR"}


def _check_blue_green(blue_green: dict) -> None:
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    error = best_match(validator_for(BLUE_GREEN_SCHEMA)(BLUE_GREEN_SCHEMA).iter_errors(blue_green))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "(the object)"
        raise ValueError(f"blue_green {where}: {error.message} (given {blue_green!r})")


def _deployment_config(blue_green: dict) -> dict:
    traffic, step, alarms = blue_green["traffic"], blue_green["step_percent"], blue_green["alarms"]
    baking = blue_green["baking_minutes"] * 60
    routing: dict = {"Type": _ROUTING[traffic], "WaitIntervalInSeconds": baking}
    if traffic == "canary":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": step}
    elif traffic == "linear":
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": step}
    config: dict = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": baking,
            "MaximumExecutionTimeoutInSeconds": execution_timeout(traffic, step, baking),
        }
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": alarm} for alarm in alarms]}
    return config


def check_fleet(blue_green: dict, instance_count: int) -> None:
    """Raise ValueError unless ``blue_green``'s steps fit a new fleet of ``instance_count`` instances.

    A canary or linear step moves whole instances, at most half the new fleet at a time (TrafficRoutingConfig:
    "less than or equal to 50% of the variant's total instance count"): a fleet of one cannot shift in steps,
    and 50 % of three is two instances. The two Params are apart, so their schemas cannot check this together.
    """
    traffic, step = blue_green["traffic"], blue_green["step_percent"]
    if traffic == "all_at_once":
        return
    moved = max(1, math.ceil(instance_count * step / 100))
    if 2 * moved > instance_count:
        raise ValueError(
            f"blue_green {traffic} at {step} % moves {moved} of endpoint_instance_count {instance_count} instance(s) "
            f"at a time, over the half SageMaker allows: use at least 2 instances and a step of at most half "
            f"of them, or traffic all_at_once"
        )


def deployment_config(blue_green: dict) -> dict:
    """UpdateEndpoint's blue/green ``DeploymentConfig`` from the ``blue_green`` Param (``BLUE_GREEN_SCHEMA``).

    The bake is both the wait after each traffic step and the wait before the old fleet goes (SageMaker's
    WaitIntervalInSeconds and TerminationWaitInSeconds); an alarm in ALARM during it sends all traffic back to
    the old fleet. The timeout covers provisioning and every wait. A value the schema refuses raises ValueError
    naming the field, though the Param already refused it at trigger time.
    """
    _check_blue_green(blue_green)
    return _deployment_config(blue_green)
