"""SageMaker's part, played on the in-process moto server: jobs that really run the steps, on a clock, and
endpoints, a model registry and request checks that behave as AWS documents them.

moto 5.2.5 records SageMaker jobs and marks them Completed without running anything, has no UpdateEndpoint,
and answers at once where SageMaker takes hours. Installed with ``FakeSageMaker(...).install(monkeypatch)``:

- ``clock``: SageMaker's time. It follows real time plus what a test ``advance``s, so a DAG run with a real
  triggerer progresses, and a test can make two hours pass in a call. Every time the fake reports comes from it.
- jobs run what the task image runs: ``python -m tasks ARGS`` from this checkout, ``/opt/ml`` mapped to a folder
  of the test, in a thread (``hold_jobs`` keeps them unrun until ``finish_held``). Training: ``/opt/ml`` laid out as SageMaker does
  (``input/config/hyperparameters.json`` with string values, ``resourceconfig.json``, a folder per channel,
  checkpoints from S3), ``model/`` uploaded as ``S3OutputPath/JOB/output/model.tar.gz``, the output in CloudWatch
  Logs, ``output/failure`` in FailureReason, the ``MetricDefinitions`` regexes applied to the log for
  FinalMetricDataList, the TensorBoardOutputConfig's LocalPath uploaded to its S3OutputPath. Processing: inputs downloaded to their ``LocalPath``, outputs uploaded,
  ``output/message`` as ExitMessage, apart from FailureReason.
- a job is ``InProgress`` until its step has exited AND ``job_seconds[kind]`` simulated seconds have passed;
  one that would outlast its StoppingCondition ends ``Stopped`` (training: SecondaryStatus
  ``MaxRuntimeExceeded``, or ``MaxWaitTimeExceeded`` for Spot, whose capacity wait is ``spot_wait_seconds``).
  StopTrainingJob: ``Stopping`` until its step exits (the fake sends it no SIGTERM), then ``Stopped``.
- hyperparameter tuning jobs run their training jobs through the same machinery (``Tuning``): named
  ``TUNINGJOB-NNN-HEX8``, at most MaxParallelTrainingJobs at a time, MaxNumberOfTrainingJobs in all, each with the
  StaticHyperParameters, SageMaker's ``_tuning_objective_metric`` and a setting drawn within the ranges from
  RandomSeed. The fake does not search as SageMaker does (Bayesian: it draws at random, uniformly, log-uniformly for
  Logarithmic) and does not stop trials early (TrainingJobEarlyStoppingType is checked, not applied), nor apply
  ResourceLimits.MaxRuntimeInSeconds. ``InProgress`` -> ``Completed`` (``Failed`` when every trial failed),
  StopHyperParameterTuningJob ``Stopping`` -> ``Stopped``; TrainingJobStatusCounters, ObjectiveStatusCounters and
  BestTrainingJob (the best of the trials whose ObjectiveStatus is Succeeded: a Completed or Stopped trial whose
  log gave the objective through its MetricDefinitions regex) follow the trials;
  ListTrainingJobsForHyperParameterTuningJob answers pages of ``page_size``; a second tuning job of a name in use
  (in any case) is ResourceInUse.
- endpoints go ``Creating`` -> ``InService``; UpdateEndpoint ``Updating`` (the new config only in
  ``PendingDeploymentSummary``) -> ``InService`` on the new config, each for ``endpoint_seconds``. With
  ``roll_back_updates`` (an alarm fired while baking) ``Updating`` -> ``RollingBack`` -> ``InService`` on the old
  config with a FailureReason naming the alarm; with ``rollback_fails`` too it ends ``UpdateRollbackFailed``.
  UpdateEndpoint is refused unless the endpoint is InService, and its DeploymentConfig is checked.
- instance types are checked against botocore's enum for their use (processing, training, hosting).
- ListModelPackages answers pages of ``page_size`` (a small default, so callers must follow NextToken);
  CreateModelPackage honours ClientToken; ModelLifeCycle is kept; UpdateModelPackage changes only what it names.
- InvokeEndpoint answers with the served model: ``python -m tasks serve`` on the endpoint's model data, started
  as SageMaker starts the container: no flags, the model's Environment (so the server's own capture, configured
  there, lands in moto's S3); ``broken_answers`` makes it answer what no model would.
- DataCaptureConfig: CreateEndpointConfig checks it against botocore's shapes (required members, enums, lengths,
  ranges, patterns; AWS's wording), DescribeEndpointConfig returns it as asked (and leaves it out when not asked,
  where moto answers ``{}``), DescribeEndpoint summarises the served config's (DataCaptureConfigSummary: Stopped
  until the endpoint serves, Started after; it follows an update). Each invocation is captured as SageMaker does
  it: at InitialSamplingPercentage, CaptureOptions' bodies (JSON text for JsonContentTypes, else base64) in a
  JSON Lines record under ``DestinationS3Uri/ENDPOINT/VARIANT/YYYY/MM/DD/HH/`` (SSE-KMS with KmsKeyId); one file
  per invocation, where SageMaker gathers a few minutes of records into one.

Every request is kept as received (``requests``: action, JSON body) for tests to assert on. A status a test
sets on moto's objects directly (``backend().processing_jobs[name].processing_job_status = ...``) stays.
What it does not simulate: multi-instance training, Spot interruptions, RollingUpdatePolicy, traffic shares
during a rollout (InvokeEndpoint serves the config the endpoint reports), UpdateEndpointWeightsAndCapacities, a
tuning job's search strategy, early stopping and warm start.
"""

from __future__ import annotations

import base64
import copy
import datetime
import functools
import hashlib
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO, ServerProcess

ACCOUNT, REGION = "123456789012", "us-east-1"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/nlp-tasks:test"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/nlp-sagemaker"
_RECORDED = (
    "create_processing_job",
    "create_training_job",
    "create_model",
    "create_endpoint_config",
    "create_endpoint",
    "update_endpoint",
    "create_model_package",
    "update_model_package",
    "create_hyper_parameter_tuning_job",
    "stop_hyper_parameter_tuning_job",
    "stop_training_job",
)
# What a job reports when it failed without a message of its own; SageMaker's wording in DescribeProcessingJob.
_SEE_LOGS = "AlgorithmError: See job logs for more information"
# "SageMaker returns the first 1024 characters from this file as FailureReason" (How Amazon SageMaker Processes
# Training Output); ExitMessage is "the first 1 KB" of output/message (Save and Access Metadata Information
# About Your Processing Job); both shapes (FailureReason, ExitMessage) have max 1024.
_REASON_LIMIT = 1024
# StoppingCondition.MaxRuntimeInSeconds: "The default value is 1 day."
_DEFAULT_MAX_RUNTIME = 86400
# TensorBoardOutputConfig.LocalPath when a request leaves it out (the SageMaker API reference).
_TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"
# Idempotency tokens of other AWS APIs are active for 8 hours; SageMaker's CreateModelPackage docs give no
# lifetime, so the fake assumes the same: past it, the same token creates a new version.
_TOKEN_LIFETIME = 8 * 3600
# "Resource limits for automatic model tuning": 10 parallel training jobs per tuning job (a default quota), 750
# training jobs (Bayesian), 30 hyperparameters searched, 20 metrics defined. A categorical range's values, a tuning
# job's name and the scaling types are botocore's (``_shape``).
_TUNING_LIMITS = {"parallel": 10, "jobs": 750, "ranges": 30, "metrics": 20}
_RUNNING = ("InProgress", "Stopping")


class SimulatedClock:
    """SageMaker's time as the fake reports it: real time plus what tests ``advance``."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


def _stamp(seconds: float) -> datetime.datetime:
    """A clock reading as moto keeps times: naive UTC."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(tzinfo=None)


@functools.cache
def _shape(name: str):
    """botocore's shape ``name`` of the SageMaker service model (its enum, pattern, min and max)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker").shape_for(name)


def _instance_types(shape: str) -> tuple[str, ...]:
    return tuple(_shape(shape).enum)


def _constraint(value, where: str, constraint: str):
    """AWS's request-validation answer (the same wording for every service behind its API front end)."""
    from moto.sagemaker.exceptions import ValidationError

    return ValidationError(
        f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy constraint: {constraint}"
    )


def _check_instance_type(instance_type: str | None, shape: str, where: str) -> None:
    """SageMaker takes an instance type only from the enum for its use (botocore: ProcessingInstanceType,
    TrainingInstanceType, ProductionVariantInstanceType); ``ml.c6i.large`` is a hosting type only."""
    allowed = _instance_types(shape)
    if instance_type is not None and instance_type not in allowed:
        raise _constraint(instance_type, where, f"Member must satisfy enum value set: [{', '.join(allowed)}]")


def _limit_exceeded(message: str):
    """SageMaker's ResourceLimitExceeded: a request over an account quota."""
    from moto.sagemaker.exceptions import SagemakerClientError

    class ResourceLimitExceeded(SagemakerClientError):
        code = "ResourceLimitExceeded"

    return ResourceLimitExceeded(message)


def _in_use(message: str):
    """SageMaker's ResourceInUse: a name another resource of its kind has."""
    from moto.sagemaker.exceptions import ResourceInUseException

    return ResourceInUseException(message)


def _not_found(what: str):
    from moto.sagemaker.exceptions import ResourceNotFound

    return ResourceNotFound(f"Could not find {what}.")


def _check_vpc(vpc: dict | None, where: str) -> None:
    """VpcConfig: SecurityGroupIds 1-5, Subnets 1-16 (botocore shape VpcConfig)."""
    for key, most in (("SecurityGroupIds", 5), ("Subnets", 16)):
        values = (vpc or {}).get(key)
        if vpc is not None and not values:
            raise _constraint(values, f"{where}.{key[0].lower()}{key[1:]}", "Member must have length >= 1")
        if values and len(values) > most:
            raise _constraint(
                values, f"{where}.{key[0].lower()}{key[1:]}", f"Member must have length less than or equal to {most}"
            )


def _member(name: str) -> str:
    return name[0].lower() + name[1:]


def _check_shape(value, shape, where: str) -> None:
    """Refuse ``value`` as SageMaker's front end refuses what its service model does not allow (botocore's
    ``shape``: required members, enums, lengths, ranges, patterns, which Java reads and ``regex`` too), with its
    wording: ``where`` in camelCase, list items as ``name.N.member``."""
    import regex

    if shape.type_name == "structure":
        for name in shape.required_members:
            if value.get(name) is None:
                raise _constraint(None, f"{where}.{_member(name)}", "Member must not be null")
        for name, member in value.items():  # botocore refuses unknown members before sending
            _check_shape(member, shape.members[name], f"{where}.{_member(name)}")
        return
    limits, size = shape.metadata, value
    if shape.type_name == "list":
        for index, item in enumerate(value, 1):
            _check_shape(item, shape.member, f"{where}.{index}.member")
    if shape.type_name in ("string", "list"):
        size, kind = len(value), "length"
    else:
        kind = "value"
    if "min" in limits and size < limits["min"]:
        raise _constraint(value, where, f"Member must have {kind} greater than or equal to {limits['min']}")
    if "max" in limits and size > limits["max"]:
        raise _constraint(value, where, f"Member must have {kind} less than or equal to {limits['max']}")
    if (enum := getattr(shape, "enum", None)) and value not in enum:
        raise _constraint(value, where, f"Member must satisfy enum value set: [{', '.join(enum)}]")
    if "pattern" in limits and not regex.fullmatch(limits["pattern"], value):
        raise _constraint(value, where, f"Member must satisfy regular expression pattern: {limits['pattern']}")


def _capture_summary(config: dict | None, endpoint_status: str) -> dict | None:
    """DescribeEndpoint's DataCaptureConfigSummary of the served config's DataCaptureConfig (EnableCapture
    defaults to true): capture is Started once the endpoint serves with it on, else Stopped.

    botocore's DataCaptureConfigSummary requires KmsKeyId, and AWS documents no value for a config without a key.
    The fake answers "" then: the one value the KmsKeyId shape (pattern ``[a-zA-Z0-9:/_-]*``, length 0-2048) allows
    that names no key. This is a guess at the real service, chosen so the answer has every required member."""
    if not config:
        return None
    enabled = config.get("EnableCapture", True)
    serving = endpoint_status not in ("Creating", "Failed", "OutOfService")
    summary = {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled and serving else "Stopped",
        "CurrentSamplingPercentage": config["InitialSamplingPercentage"],
        "DestinationS3Uri": config["DestinationS3Uri"],
    }
    return summary | {"KmsKeyId": config.get("KmsKeyId") or ""}


@dataclass
class _Job:
    """A job as SageMaker tracks it: when it was created, its limits, and what its container did."""

    kind: str  # "training" or "processing"
    created: float
    max_runtime: float
    max_wait: float | None = None  # Spot training only
    wait: float = 0.0  # Spot training: the simulated wait for capacity
    released: float = 0.0  # when the job was let run (its creation, or finish_held for a held job)
    run: object = None  # what runs its step
    exited: float | None = None  # when the step's process exited (clock)
    code: int | None = None
    message: str | None = None  # output/message (processing) or output/failure (training)
    failure: str | None = None  # the fake's own failure, said as SageMaker would
    metrics: dict[str, float] = field(default_factory=dict)
    reported: str | None = None  # the status the fake last gave moto's job
    launched: bool = False  # its step was started (a held job's is not, until finish_held)
    stop_asked: float | None = None  # when StopTrainingJob (or its tuning job's stop) asked it to stop


@dataclass
class _Tuning:
    """A hyperparameter tuning job as the fake runs it: the request's parts and the training jobs it started."""

    name: str
    arn: str
    config: dict  # HyperParameterTuningJobConfig
    definition: dict  # TrainingJobDefinition
    settings: list[dict[str, str]]  # each trial's tuned hyperparameters, drawn when the job was created
    started: list[str] = field(default_factory=list)  # its training jobs, in launch order
    stopping: bool = False
    ended: bool = False


@dataclass
class _Rollout:
    """A CreateEndpoint or UpdateEndpoint in flight, on the clock."""

    started: float
    config: str
    previous: str | None = None  # UpdateEndpoint: the config it replaces
    roll_back: bool = False
    rollback_fails: bool = False
    alarms: list[str] = field(default_factory=list)
    settled: bool = False


class FakeSageMaker:
    def __init__(self, endpoint_url: str, workdir: Path):
        import boto3

        self.endpoint_url, self.workdir = endpoint_url, workdir
        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        self.s3 = session.client("s3", endpoint_url=endpoint_url)
        self.logs = session.client("logs", endpoint_url=endpoint_url)
        self.requests: list[tuple[str, dict]] = []
        self.hold_jobs = self.roll_back_updates = self.rollback_fails = self.broken_answers = False
        self.clock = SimulatedClock()
        self.job_seconds = {"training": 0.0, "processing": 0.0}
        self.spot_wait_seconds = 0.0
        self.endpoint_seconds = 0.0
        self.page_size = 10
        self.threads: list[threading.Thread] = []
        self.servers: dict[str, ServerProcess] = {}
        self._jobs: dict[str, _Job] = {}
        self._tunings: dict[str, _Tuning] = {}
        self._rollouts: dict[str, _Rollout] = {}
        self._tokens: dict[str, tuple[dict, str, float]] = {}  # ClientToken -> (request, package ARN, when)
        self._sampler = random.Random(0)  # which invocations SageMaker's data capture samples
        self._lock = threading.RLock()

    # ---- installation -------------------------------------------------------------------------------------
    def install(self, monkeypatch) -> FakeSageMaker:
        from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, ModelPackage, SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse
        from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

        self._moto_backend().reset()  # a fresh account: no jobs, models or packages of an earlier test
        checks = {
            "create_training_job": (self._check_training, self._after_training),
            "create_processing_job": (self._check_processing, self._after_processing),
            "create_model": (lambda backend, body: _check_vpc(body.get("VpcConfig"), "vpcConfig"), self._after_model),
            "create_endpoint_config": (self._check_endpoint_config, None),
            "describe_endpoint_config": (self._describe_endpoint_config, None),
            "create_endpoint": (None, self._after_endpoint),
            "update_endpoint": (self._update_endpoint, None),
            "create_model_package": (self._reuse_model_package, self._after_model_package),
            "update_model_package": (self._update_model_package, None),
            "create_model_package_group": (self._new_model_package_group, None),
            "create_hyper_parameter_tuning_job": (self._check_tuning, self._after_tuning),
            "stop_hyper_parameter_tuning_job": (self._stop_tuning, None),
            "list_training_jobs_for_hyper_parameter_tuning_job": (self._list_trials, None),
            "stop_training_job": (self._stop_training_job, None),
        }
        for action in {*_RECORDED, *checks}:
            before, after = checks.get(action, (None, None))
            monkeypatch.setattr(SageMakerResponse, action, self._wrapped(action, before, after), raising=False)

        original_training, original_processing = (
            SageMakerModelBackend.create_training_job,
            SageMakerModelBackend.create_processing_job,
        )

        def create_training_job(backend, **kwargs):
            job = original_training(backend, **kwargs)
            self._start(job, "training", job.training_job_name, self._run_training)
            return job

        def create_processing_job(backend, **kwargs):
            job = original_processing(backend, **kwargs)
            self._start(job, "processing", job.processing_job_name, self._run_processing)
            return job

        monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
        monkeypatch.setattr(SageMakerModelBackend, "create_processing_job", create_processing_job)
        for name in (
            "describe_training_job",
            "list_training_jobs",
            "describe_processing_job",
            "list_processing_jobs",
            "describe_endpoint",
            "list_endpoints",
            "describe_hyper_parameter_tuning_job",
            "list_hyper_parameter_tuning_jobs",
        ):
            monkeypatch.setattr(SageMakerModelBackend, name, self._refreshed(getattr(SageMakerModelBackend, name)))
        original_list_packages = SageMakerModelBackend.list_model_packages

        def list_model_packages(backend, **kwargs):
            kwargs["max_results"] = kwargs.get("max_results") or self.page_size  # AWS pages; so must callers
            if kwargs["max_results"] > 100:  # botocore MaxResults: 1-100
                raise _constraint(
                    kwargs["max_results"], "maxResults", "Member must have value less than or equal to 100"
                )
            return original_list_packages(backend, **kwargs)

        monkeypatch.setattr(SageMakerModelBackend, "list_model_packages", list_model_packages)
        package_response = ModelPackage.gen_response_object

        def with_life_cycle(package):
            answer = package_response(package)
            if getattr(package, "model_life_cycle", None):
                answer["ModelLifeCycle"] = package.model_life_cycle
            return answer

        monkeypatch.setattr(ModelPackage, "gen_response_object", with_life_cycle)
        monkeypatch.setattr(
            FakeEndpointConfig,
            "validate_instance_type",
            lambda config, instance_type: _check_instance_type(
                instance_type, "ProductionVariantInstanceType", "productionVariants.1.member.instanceType"
            ),
        )
        endpoint_response = FakeEndpoint.response_object.fget

        def with_capture_summary(endpoint):
            """DescribeEndpoint's DataCaptureConfig is a DataCaptureConfigSummary, not the config's request."""
            answer = endpoint_response(endpoint)
            answer.pop("DataCaptureConfig", None)
            if summary := _capture_summary(endpoint.data_capture_config, endpoint.endpoint_status):
                answer["DataCaptureConfig"] = summary
            return answer

        monkeypatch.setattr(FakeEndpoint, "response_object", property(with_capture_summary))
        monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", self._invoke_endpoint_response())
        return self

    def close(self) -> None:
        for thread in self.threads:
            thread.join(timeout=600)
        for server in self.servers.values():
            server.stop()

    def _wrapped(self, action: str, before, after):
        """The moto response method for ``action``, recording the request, checking it first (``before`` may
        answer instead of moto) and completing moto's result (``after``)."""
        from moto.sagemaker.responses import SageMakerResponse

        original = getattr(SageMakerResponse, action, None)
        fake = self

        def handle(response):
            body = json.loads(response.body or "{}")
            if action in _RECORDED:
                fake.requests.append((action, body))
            with fake._lock:
                answer = before(response.sagemaker_backend, body) if before else None
                if answer is None:
                    answer = original(response)
                    if after:
                        after(response.sagemaker_backend, body, answer.result)
            return answer

        return handle

    @staticmethod
    def _new_model_package_group(backend, body: dict) -> None:
        """AWS refuses a second group of a name (moto would replace the first, description and all); the
        provider's hook recognises the refusal by this message."""
        from moto.sagemaker.exceptions import ValidationError

        if (group := backend.model_package_groups.get(body["ModelPackageGroupName"])) is not None:
            raise ValidationError(f"Model Package Group already exists: {group.arn}")

    def _refreshed(self, method):
        fake = self

        def refreshed(backend, *args, **kwargs):
            fake.refresh()
            return method(backend, *args, **kwargs)

        return refreshed

    # ---- what tests look at -------------------------------------------------------------------------------
    @staticmethod
    def _moto_backend():
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[ACCOUNT][REGION]

    def backend(self):
        """moto's SageMaker account, with every job and endpoint brought up to the clock."""
        self.refresh()
        return self._moto_backend()

    def requests_of(self, action: str) -> list[dict]:
        return [body for name, body in self.requests if name == action]

    def refresh(self) -> None:
        """Set every job's and endpoint's status to what the clock says it is now."""
        backend = self._moto_backend()
        with self._lock:
            for name, record in self._jobs.items():
                jobs = backend.training_jobs if record.kind == "training" else backend.processing_jobs
                if name in jobs:
                    self._refresh_job(jobs[name], record)
            for tuning in list(self._tunings.values()):  # after its trials: it may start the next ones
                if tuning.name in backend.hyper_parameter_tuning_jobs:
                    self._refresh_tuning(backend, tuning)
            for name, rollout in self._rollouts.items():
                if name in backend.endpoints and not rollout.settled:
                    self._refresh_endpoint(backend, backend.endpoints[name], rollout)

    # ---- jobs ---------------------------------------------------------------------------------------------
    def _check_training(self, backend, body: dict) -> None:
        resources = body.get("ResourceConfig") or {}
        _check_instance_type(resources.get("InstanceType"), "TrainingInstanceType", "resourceConfig.instanceType")
        _check_vpc(body.get("VpcConfig"), "vpcConfig")
        metrics = (body.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []
        if len(metrics) > 40:  # botocore MetricDefinitionList: max 40
            raise _constraint(
                metrics, "algorithmSpecification.metricDefinitions", "Member must have length less than or equal to 40"
            )
        stopping = body.get("StoppingCondition") or {}
        if body.get("EnableManagedSpotTraining"):
            runtime = stopping.get("MaxRuntimeInSeconds", _DEFAULT_MAX_RUNTIME)
            if stopping.get("MaxWaitTimeInSeconds") is None or stopping["MaxWaitTimeInSeconds"] < runtime:
                from moto.sagemaker.exceptions import ValidationError

                # StoppingCondition.MaxWaitTimeInSeconds: "must be equal to or greater than MaxRuntimeInSeconds"
                raise ValidationError(
                    "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
                    "MaxRuntimeInSeconds"
                )

    def _after_training(self, backend, body: dict, result: dict) -> None:
        job = backend.training_jobs[body["TrainingJobName"]]
        # moto replaces MetricDefinitions with its own and drops Environment; SageMaker keeps what was asked.
        job.algorithm_specification = body["AlgorithmSpecification"]
        job.environment = body.get("Environment")
        job.final_metric_data_list = None

    def _check_processing(self, backend, body: dict) -> None:
        cluster = (body.get("ProcessingResources") or {}).get("ClusterConfig") or {}
        _check_instance_type(
            cluster.get("InstanceType"), "ProcessingInstanceType", "processingResources.clusterConfig.instanceType"
        )
        _check_vpc((body.get("NetworkConfig") or {}).get("VpcConfig"), "networkConfig.vpcConfig")

    def _after_processing(self, backend, body: dict, result: dict) -> None:
        job = backend.processing_jobs[body["ProcessingJobName"]]
        # Required in DescribeProcessingJobResponse; moto does not keep them.
        job.processing_resources = body.get("ProcessingResources")
        job.environment = body.get("Environment")

    def _after_model(self, backend, body: dict, result: dict) -> None:
        backend.describe_model(body["ModelName"]).enable_network_isolation = body.get("EnableNetworkIsolation", False)

    def _start(self, job, kind: str, name: str, run) -> None:
        stopping = job.stopping_condition or {}
        spot = kind == "training" and job.enable_managed_spot_training
        record = _Job(
            kind,
            created=self.clock.now(),
            max_runtime=stopping.get("MaxRuntimeInSeconds", _DEFAULT_MAX_RUNTIME),
            max_wait=stopping.get("MaxWaitTimeInSeconds") if spot else None,
            wait=self.spot_wait_seconds if spot else 0.0,
            run=run,
        )
        record.released = record.created
        job.creation_time = job.last_modified_time = _stamp(record.created)
        with self._lock:
            self._jobs[name] = record
            self._refresh_job(job, record)
        if not self.hold_jobs:
            self._launch(record, job)

    def finish_held(self, job) -> None:
        """Let a job created under ``hold_jobs`` run now: its step runs, and its simulated time
        (``job_seconds``, the StoppingCondition) counts from now."""
        name = getattr(job, "training_job_name", None) or job.processing_job_name
        record = self._jobs[name]
        record.released = self.clock.now()
        self._launch(record, job)

    def _launch(self, record: _Job, job) -> None:
        record.launched = True
        thread = threading.Thread(target=self._finish, args=(record, job, record.run), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _finish(self, record: _Job, job, run) -> None:
        with self._lock:
            pass  # the request that created the job has finished completing it (Environment, MetricDefinitions)
        try:
            run(job, record)
        except Exception as error:  # the fake itself failed: say so as SageMaker would, with the reason
            record.failure = f"InternalServerError: fake SageMaker: {error!r}"
        record.exited = self.clock.now()

    def _refresh_job(self, job, record: _Job) -> None:
        """moto's job as SageMaker would describe it now (DescribeTrainingJob / DescribeProcessingJob)."""
        attribute = f"{record.kind}_job_status"
        if record.reported is not None and getattr(job, attribute) != record.reported:
            return  # a test or StopXJob set it: it stays
        if record.reported in ("Completed", "Failed", "Stopped"):
            return  # ended: a later change of job_seconds does not rewrite its history
        now, seconds = self.clock.now(), self.job_seconds[record.kind]
        start = record.released + record.wait  # the instances are there and the container starts
        planned = start + seconds
        limits = [(start + record.max_runtime, "MaxRuntimeExceeded")]
        if record.max_wait is not None:
            limits.append((record.released + record.max_wait, "MaxWaitTimeExceeded"))
        limit, exceeded = min(limits)
        end = max(planned, record.exited) if record.exited is not None else None
        # StopTrainingJob before the job would have ended: Stopping while its step runs, then Stopped.
        stop = record.stop_asked is not None and record.stop_asked < min(limit, end if end is not None else limit)
        if stop and record.launched and record.exited is None:
            status, secondary, end = "Stopping", None, None
        elif stop:
            status, secondary, end = "Stopped", "Stopped", max(record.stop_asked, record.exited or 0.0)
        elif end is not None and end <= limit and now >= end:
            failed = record.failure is not None or record.code != 0
            status, secondary = ("Failed", "Failed") if failed else ("Completed", "Completed")
        elif now >= limit:  # StoppingCondition: "SageMaker ends the job"; DescribeTrainingJob: Stopped
            status, secondary, end = "Stopped", exceeded, limit
        else:
            status, secondary, end = "InProgress", None, None
        # Training's phases (SecondaryStatus under InProgress): Starting, Downloading, Training, Uploading.
        phases = [("Starting", record.created), ("Downloading", start + 0.05 * seconds)]
        phases.append(("Training", start + 0.1 * seconds))
        if status in ("Completed", "Failed") or (status == "InProgress" and record.exited is not None):
            uploading = (end if end is not None else planned) - 0.05 * seconds
            phases.append(("Uploading", max(uploading, start + 0.1 * seconds)))
        phases = [(name, at) for name, at in phases if at <= now and (end is None or at <= end)]
        if status == "Stopping":
            phases.append(("Stopping", record.stop_asked))
        if end is not None:
            phases.append((secondary, end))
        setattr(job, attribute, status)
        record.reported = status
        job.last_modified_time = _stamp(phases[-1][1])
        if record.kind == "training":
            self._describe_training(job, record, phases, end, start + 0.1 * seconds)
        else:
            self._describe_processing(job, record, start, end)

    def _describe_training(self, job, record: _Job, phases, end, training_start) -> None:
        job.secondary_status = phases[-1][0]
        job.secondary_status_transitions = [
            {"Status": name, "StartTime": _stamp(at), "StatusMessage": _TRAINING_MESSAGES.get(name, name)}
            | ({"EndTime": _stamp(phases[index + 1][1])} if index + 1 < len(phases) else {})
            for index, (name, at) in enumerate(phases)
        ]
        started = end is None and self.clock.now() >= training_start or end is not None and end >= training_start
        job.training_start_time = _stamp(training_start) if started else None
        job.training_end_time = _stamp(end) if end is not None else None
        seconds = int(end - training_start) if end is not None and started else None
        job.training_time_in_seconds = job.billable_time_in_seconds = seconds
        job.failure_reason = None
        if job.training_job_status == "Failed":
            job.failure_reason = record.failure or (
                f"AlgorithmError: {record.message[:_REASON_LIMIT]}" if record.message else _SEE_LOGS
            )
        if end is not None and record.metrics:
            job.final_metric_data_list = [
                {"MetricName": name, "Value": value, "Timestamp": _stamp(end)} for name, value in record.metrics.items()
            ]

    @staticmethod
    def _describe_processing(job, record: _Job, start: float, end) -> None:
        job.processing_start_time = _stamp(start)
        job.processing_end_time = _stamp(end) if end is not None else None
        # ExitMessage: "After the processing job enters any terminal status ... the first 1 KB of this file".
        job.exit_message = record.message[:_REASON_LIMIT] if end is not None and record.message else None
        job.failure_reason = None
        if job.processing_job_status == "Failed":
            job.failure_reason = record.failure or _SEE_LOGS

    def _root(self, name: str) -> Path:
        root = self.workdir / name / "opt-ml"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        return root

    def _run_training(self, job, record: _Job) -> None:
        if int(job.resource_config["InstanceCount"]) > 1:  # its hosts would wait for peers that never come
            record.failure = "ClientError: fake SageMaker runs one instance; multi-instance requests are checked"
            return
        root = self._root(job.training_job_name)
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters))
        hosts = [f"algo-{index + 1}" for index in range(int(job.resource_config["InstanceCount"]))]
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": hosts[0], "hosts": hosts}))
        for channel in job.input_data_config:
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self._download(uri, root / "input" / "data" / channel["ChannelName"])
        checkpoints = (job.checkpoint_config or {}).get("S3Uri")
        if checkpoints:
            self._download(checkpoints.rstrip("/") + "/", root / "checkpoints")
        (root / "model").mkdir()
        stream = f"{job.training_job_name}/algo-1-{int(self.clock.now())}"
        record.code, output = self._run(["train"], root, job.environment or {})
        self._log("/aws/sagemaker/TrainingJobs", stream, output)
        # FinalMetricDataList: the last value each MetricDefinitions regex found in the algorithm's log.
        for definition in job.algorithm_specification.get("MetricDefinitions") or []:
            found = re.findall(definition["Regex"], output)
            if found:
                last = found[-1][0] if isinstance(found[-1], tuple) else found[-1]
                record.metrics[definition["Name"]] = float(last)
        # TensorBoardOutputConfig: SageMaker uploads what the job writes to LocalPath to S3OutputPath while it
        # runs, so a failed job's events are there too.
        tensorboard = job.tensor_board_output_config
        if (
            tensorboard
            and (events := self._local(root, tensorboard.get("LocalPath") or _TENSORBOARD_LOCAL_PATH)).is_dir()
        ):
            self._upload_folder(events, tensorboard["S3OutputPath"])
        if record.code != 0:
            failure = root / "output" / "failure"
            record.message = failure.read_text() if failure.exists() else None
            return
        archive = root / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted((root / "model").iterdir()):
                tar.add(path, arcname=path.name)
        self._upload_file(archive, job.model_artifacts["S3ModelArtifacts"])
        if checkpoints:
            self._upload_folder(root / "checkpoints", checkpoints)

    def _run_processing(self, job, record: _Job) -> None:
        root = self._root(job.processing_job_name)
        (root / "config").mkdir()
        (root / "config" / "processingjobconfig.json").write_text(
            json.dumps({"ProcessingJobName": job.processing_job_name})
        )
        for processing_input in job.processing_inputs or []:
            source = processing_input["S3Input"]
            self._download(source["S3Uri"], self._local(root, source["LocalPath"]))
        outputs = (job.processing_output_config or {}).get("Outputs", [])
        for output in outputs:
            self._local(root, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        arguments = [self._mapped(root, argument) for argument in job.app_specification.get("ContainerArguments", [])]
        record.code, log = self._run(arguments, root, job.environment or {})
        self._log("/aws/sagemaker/ProcessingJobs", f"{job.processing_job_name}/algo-1-{int(self.clock.now())}", log)
        message = root / "output" / "message"
        record.message = message.read_text() if message.exists() else None
        if record.code == 0:
            for output in outputs:
                self._upload_folder(self._local(root, output["S3Output"]["LocalPath"]), output["S3Output"]["S3Uri"])

    def _run(self, arguments: list[str], root: Path, environment: dict) -> tuple[int, str]:
        env = {
            **os.environ,
            **environment,
            "TASKS_SAGEMAKER_ROOT": str(root),
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        result = subprocess.run(
            [sys.executable, "-m", "tasks", *arguments], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )
        return result.returncode, result.stdout + result.stderr

    @staticmethod
    def _local(root: Path, container_path: str) -> Path:
        return root / Path(container_path).relative_to("/opt/ml")

    @staticmethod
    def _mapped(root: Path, argument: str) -> str:
        return str(root) + argument.removeprefix("/opt/ml") if argument.startswith("/opt/ml") else argument

    # ---- S3 and logs --------------------------------------------------------------------------------------
    def _download(self, uri: str, target: Path) -> None:
        """SageMaker's S3Prefix: every object under the prefix, named relative to the prefix's folder."""
        bucket, prefix = uri.removeprefix("s3://").split("/", 1)
        base = prefix if prefix.endswith("/") else prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        target.mkdir(parents=True, exist_ok=True)
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                local = target / item["Key"][len(base) :]
                local.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(bucket, item["Key"], str(local))

    def _upload_file(self, path: Path, uri: str) -> None:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        self.s3.upload_file(str(path), bucket, key)

    def _upload_folder(self, folder: Path, uri: str) -> None:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                self._upload_file(path, f"{uri.rstrip('/')}/{path.relative_to(folder).as_posix()}")

    def _log(self, group: str, stream: str, output: str) -> None:
        try:
            self.logs.create_log_group(logGroupName=group)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass  # an earlier job's, or one running beside it (a tuning job's trials)
        try:
            self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except self.logs.exceptions.ResourceAlreadyExistsException:
            pass  # CloudWatch Logs outlives a test: an earlier test's job of the same name and second
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in output.splitlines()[-5000:] if line.strip()]
        if events:
            self.logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    # ---- training jobs stopped --------------------------------------------------------------------------------
    def _stop_training_job(self, backend, body: dict):
        """StopTrainingJob (moto has none): only an InProgress job; it is Stopping until its step exits."""
        from moto.core.responses import ActionResult
        from moto.sagemaker.exceptions import ValidationError

        self.refresh()
        name = body["TrainingJobName"]
        if name not in backend.training_jobs:
            raise _not_found(f"training job '{name}'")
        status = backend.training_jobs[name].training_job_status
        if status != "InProgress" or name not in self._jobs:
            raise ValidationError(f"The request was rejected because the training job is in status {status}.")
        self._jobs[name].stop_asked = self.clock.now()
        self.refresh()
        return ActionResult({})

    # ---- hyperparameter tuning ------------------------------------------------------------------------------
    def _check_tuning(self, backend, body: dict) -> None:
        """CreateHyperParameterTuningJob as SageMaker checks it: the name (1-32), the trials' definition as a
        training job's, the objective among its MetricDefinitions, the quotas, and ranges SageMaker can search."""
        from moto.sagemaker.exceptions import ValidationError

        name, shape = body["HyperParameterTuningJobName"], _shape("HyperParameterTuningJobName")
        pattern, longest = shape.metadata["pattern"], shape.metadata["max"]
        if not (len(name) <= longest and re.fullmatch(pattern, name)):
            raise _constraint(
                name,
                "hyperParameterTuningJobName",
                f"Member must have length less than or equal to {longest} and satisfy regular expression pattern: "
                f"{pattern}",
            )
        # Names are case-insensitive in SageMaker: another job's, in any case, is in use.
        if any(other.lower() == name.lower() for other in backend.hyper_parameter_tuning_jobs):
            raise _in_use(f"Hyperparameter tuning job {name} already exists")
        definition = body.get("TrainingJobDefinition")
        if definition is None:
            raise ValidationError("The fake runs a TrainingJobDefinition; TrainingJobDefinitions is not simulated")
        resources = definition.get("ResourceConfig") or {}
        _check_instance_type(
            resources.get("InstanceType"), "TrainingInstanceType", "trainingJobDefinition.resourceConfig.instanceType"
        )
        _check_vpc(definition.get("VpcConfig"), "trainingJobDefinition.vpcConfig")
        self._check_training(backend, definition)  # Spot's MaxWaitTimeInSeconds, as a training job's
        config = body["HyperParameterTuningJobConfig"]
        metrics = [each["Name"] for each in definition["AlgorithmSpecification"].get("MetricDefinitions") or []]
        if len(metrics) > _TUNING_LIMITS["metrics"]:
            raise _limit_exceeded(f"{len(metrics)} metric definitions: a tuning job takes {_TUNING_LIMITS['metrics']}")
        objective = (config.get("HyperParameterTuningJobObjective") or {}).get("MetricName")
        if objective not in metrics:
            raise ValidationError(
                f"The objective metric [{objective}] is not defined in the MetricDefinitions of the training job "
                f"definition: {metrics}"
            )
        limits = config["ResourceLimits"]
        if limits["MaxParallelTrainingJobs"] > _TUNING_LIMITS["parallel"]:
            raise _limit_exceeded(
                f"The account-level service limit 'Number of parallel training jobs per tuning job' is "
                f"{_TUNING_LIMITS['parallel']}, and you asked for {limits['MaxParallelTrainingJobs']}."
            )
        jobs = limits.get("MaxNumberOfTrainingJobs", 1)
        if jobs > _TUNING_LIMITS["jobs"]:
            raise _limit_exceeded(f"MaxNumberOfTrainingJobs {jobs} is over the {_TUNING_LIMITS['jobs']} allowed")
        _check_ranges(config.get("ParameterRanges") or {}, definition.get("StaticHyperParameters") or {}, jobs)

    def _after_tuning(self, backend, body: dict, result: dict) -> None:
        name, config = body["HyperParameterTuningJobName"], body["HyperParameterTuningJobConfig"]
        job = backend.hyper_parameter_tuning_jobs[name]
        seed = config.get("RandomSeed", int(hashlib.sha1(name.encode()).hexdigest()[:8], 16))
        jobs = config["ResourceLimits"].get("MaxNumberOfTrainingJobs", 1)
        tuning = _Tuning(
            name, job.arn, config, body["TrainingJobDefinition"], _draw(config.get("ParameterRanges") or {}, jobs, seed)
        )
        self._tunings[name] = tuning
        created = _stamp(self.clock.now())
        job.creation_time = job.last_modified_time = created
        job.overall_best_training_job = job.tuning_job_completion_details = job.consumed_resources = None
        job.warm_start_config = job.autotune = None
        self._refresh_tuning(backend, tuning)

    def _start_trial(self, backend, tuning: _Tuning) -> None:
        """The tuning job's next training job, named as SageMaker names them, run as any training job is."""
        index = len(tuning.started) + 1
        name = f"{tuning.name}-{index:03d}-{hashlib.sha1(f'{tuning.name}/{index}'.encode()).hexdigest()[:8]}"
        definition = copy.deepcopy(tuning.definition)
        objective = tuning.config["HyperParameterTuningJobObjective"]["MetricName"]
        hyperparameters = (definition.get("StaticHyperParameters") or {}) | tuning.settings[index - 1]
        backend.create_training_job(
            training_job_name=name,
            hyper_parameters=hyperparameters | {"_tuning_objective_metric": objective},
            algorithm_specification=definition["AlgorithmSpecification"],
            role_arn=definition["RoleArn"],
            input_data_config=definition.get("InputDataConfig") or [],
            output_data_config=definition["OutputDataConfig"],
            resource_config=definition.get("ResourceConfig"),
            vpc_config=definition.get("VpcConfig"),
            stopping_condition=definition["StoppingCondition"],
            tags=[],
            enable_network_isolation=definition.get("EnableNetworkIsolation", False),
            enable_inter_container_traffic_encryption=False,
            enable_managed_spot_training=definition.get("EnableManagedSpotTraining", False),
            checkpoint_config=definition.get("CheckpointConfig"),
            debug_hook_config=None,
            debug_rule_configurations=None,
            tensor_board_output_config=None,
            experiment_config=None,
        )
        # moto replaced the MetricDefinitions of the one it was given; SageMaker keeps the definition's.
        body = {
            "TrainingJobName": name,
            "AlgorithmSpecification": copy.deepcopy(tuning.definition["AlgorithmSpecification"]),
        }
        self._after_training(backend, body | {"Environment": definition.get("Environment")}, {})
        backend.training_jobs[name].tuning_job_arn = tuning.arn
        tuning.started.append(name)

    def _trial_summary(self, backend, tuning: _Tuning, name: str) -> dict:
        """HyperParameterTrainingJobSummary of one of the tuning job's training jobs."""
        job = backend.training_jobs[name]
        objective = tuning.config["HyperParameterTuningJobObjective"]
        final = {each["MetricName"]: each["Value"] for each in job.final_metric_data_list or []}
        status = job.training_job_status
        summary = {
            "TrainingJobName": name,
            "TrainingJobArn": job.arn,
            "TuningJobName": tuning.name,
            "CreationTime": job.creation_time,
            "TrainingStartTime": job.training_start_time,
            "TrainingEndTime": job.training_end_time,
            "TrainingJobStatus": status,
            "TunedHyperParameters": tuning.settings[tuning.started.index(name)],
            "FailureReason": job.failure_reason,
            "ObjectiveStatus": "Pending" if status in _RUNNING else "Failed",
        }
        if status in ("Completed", "Stopped") and objective["MetricName"] in final:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": objective["Type"],
                "MetricName": objective["MetricName"],
                "Value": final[objective["MetricName"]],
            }
            summary["ObjectiveStatus"] = "Succeeded"
        return {key: value for key, value in summary.items() if value is not None}

    def _refresh_tuning(self, backend, tuning: _Tuning) -> None:
        """moto's tuning job as DescribeHyperParameterTuningJob would show it now, after starting the trials its
        limits let run."""
        job = backend.hyper_parameter_tuning_jobs[tuning.name]
        if tuning.ended:
            return
        limits = tuning.config["ResourceLimits"]

        def statuses() -> list[str]:
            return [backend.training_jobs[name].training_job_status for name in tuning.started]

        while not tuning.stopping and len(tuning.started) < limits.get("MaxNumberOfTrainingJobs", 1):
            if sum(status in _RUNNING for status in statuses()) >= limits["MaxParallelTrainingJobs"]:
                break
            self._start_trial(backend, tuning)
        trials = [self._trial_summary(backend, tuning, name) for name in tuning.started]
        done = [each["TrainingJobStatus"] for each in trials]
        job.training_job_status_counters = {
            "Completed": done.count("Completed"),
            "InProgress": sum(status in _RUNNING for status in done),
            "RetryableError": 0,
            "NonRetryableError": done.count("Failed"),  # the fake retries no training job
            "Stopped": done.count("Stopped"),
        }
        objectives = [each["ObjectiveStatus"] for each in trials]
        job.objective_status_counters = {state: objectives.count(state) for state in ("Succeeded", "Pending", "Failed")}
        scored = [each for each in trials if each["ObjectiveStatus"] == "Succeeded"]
        maximise = tuning.config["HyperParameterTuningJobObjective"]["Type"] == "Maximize"
        value = lambda each: each["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]  # noqa: E731
        job.best_training_job = (max if maximise else min)(scored, key=value) if scored else None
        running = job.training_job_status_counters["InProgress"]
        finished = tuning.stopping or len(tuning.started) >= limits.get("MaxNumberOfTrainingJobs", 1)
        job.failure_reason = None
        if running or not finished:
            job.hyper_parameter_tuning_job_status = "Stopping" if tuning.stopping else "InProgress"
            job.hyper_parameter_tuning_end_time = None
            return
        if tuning.stopping:
            status = "Stopped"
        elif not scored:
            status = "Failed"
            job.failure_reason = f"All {len(trials)} training jobs failed; see their FailureReason"
        else:
            status = "Completed"
        job.hyper_parameter_tuning_job_status, tuning.ended = status, True
        job.hyper_parameter_tuning_end_time = job.last_modified_time = _stamp(self.clock.now())

    def _tuning_of(self, backend, name: str) -> _Tuning:
        if name not in backend.hyper_parameter_tuning_jobs or name not in self._tunings:
            raise _not_found(f"hyper parameter tuning job '{name}'")
        return self._tunings[name]

    def _stop_tuning(self, backend, body: dict):
        """StopHyperParameterTuningJob: no new trials, the running ones stopped; Stopped once they are."""
        from moto.core.responses import ActionResult
        from moto.sagemaker.exceptions import ValidationError

        self.refresh()
        tuning = self._tuning_of(backend, body["HyperParameterTuningJobName"])
        status = backend.hyper_parameter_tuning_jobs[tuning.name].hyper_parameter_tuning_job_status
        if status != "InProgress":
            raise ValidationError(f"The hyperparameter tuning job {tuning.name} is {status}, not InProgress.")
        tuning.stopping = True
        for name in tuning.started:
            if backend.training_jobs[name].training_job_status == "InProgress":
                self._jobs[name].stop_asked = self.clock.now()
        self.refresh()
        return ActionResult({})

    def _list_trials(self, backend, body: dict):
        """ListTrainingJobsForHyperParameterTuningJob: StatusEquals, SortBy (Name by default; by
        FinalObjectiveMetricValue only the jobs with one), SortOrder (Ascending), pages of MaxResults (1-100, ``page_size`` by default) joined by NextToken."""
        from moto.core.responses import ActionResult
        from moto.sagemaker.exceptions import ValidationError

        self.refresh()
        tuning = self._tuning_of(backend, body["HyperParameterTuningJobName"])
        size = body.get("MaxResults") or self.page_size
        if not 1 <= size <= 100:
            raise _constraint(size, "maxResults", "Member must have value less than or equal to 100")
        trials = [self._trial_summary(backend, tuning, name) for name in tuning.started]
        if body.get("StatusEquals"):
            trials = [each for each in trials if each["TrainingJobStatus"] == body["StatusEquals"]]
        sort_by = body.get("SortBy", "Name")
        keys = {
            "Name": lambda each: each["TrainingJobName"],
            "CreationTime": lambda each: each["CreationTime"],
            "Status": lambda each: each["TrainingJobStatus"],
            "FinalObjectiveMetricValue": lambda each: each["FinalHyperParameterTuningJobObjectiveMetric"]["Value"],
        }
        if sort_by not in keys:
            raise _constraint(sort_by, "sortBy", f"Member must satisfy enum value set: [{', '.join(keys)}]")
        if sort_by == "FinalObjectiveMetricValue":  # botocore's SortBy: jobs without an objective are not listed
            trials = [each for each in trials if "FinalHyperParameterTuningJobObjectiveMetric" in each]
        trials.sort(key=keys[sort_by], reverse=body.get("SortOrder", "Ascending") == "Descending")
        token = body.get("NextToken")
        start = 0
        if token is not None:
            if not re.fullmatch(rf"{re.escape(tuning.name)}/[0-9]+", token):
                raise ValidationError(f"Invalid pagination token: {token}")
            start = int(token.rsplit("/", 1)[1])
        page = trials[start : start + size]
        answer = {"TrainingJobSummaries": page}
        if start + size < len(trials):
            answer["NextToken"] = f"{tuning.name}/{start + size}"
        return ActionResult(answer)

    # ---- endpoints ----------------------------------------------------------------------------------------
    @staticmethod
    def _check_endpoint_config(backend, body: dict) -> None:
        """CreateEndpointConfig's DataCaptureConfig as SageMaker's front end checks it against its model."""
        if (capture := body.get("DataCaptureConfig")) is not None:
            _check_shape(capture, _shape("DataCaptureConfig"), "dataCaptureConfig")

    @staticmethod
    def _describe_endpoint_config(backend, body: dict):
        """moto answers DataCaptureConfig {} for a config without one; SageMaker leaves it out."""
        from moto.core.responses import ActionResult

        answer = backend.describe_endpoint_config(body["EndpointConfigName"])
        return ActionResult({key: value for key, value in answer.items() if key != "DataCaptureConfig" or value})

    def _after_endpoint(self, backend, body: dict, result: dict) -> None:
        endpoint = backend.endpoints[body["EndpointName"]]
        started = self.clock.now()
        endpoint.creation_time = endpoint.last_modified_time = _stamp(started)
        self._rollouts[endpoint.endpoint_name] = _Rollout(started, body["EndpointConfigName"])
        self._refresh_endpoint(backend, endpoint, self._rollouts[endpoint.endpoint_name])

    def _update_endpoint(self, backend, body: dict):
        from moto.core.responses import ActionResult
        from moto.sagemaker.exceptions import ValidationError

        self.refresh()
        endpoint = backend.endpoints.get(body["EndpointName"])
        if endpoint is None:
            raise ValidationError(f'Could not find endpoint "{body["EndpointName"]}".')
        config = backend.describe_endpoint_config(body["EndpointConfigName"])
        if endpoint.endpoint_status == "Failed":  # EndpointStatus: "DeleteEndpoint is the only operation ..."
            raise ValidationError(f'Cannot update failed endpoint "{endpoint.arn}".')
        if endpoint.endpoint_status not in ("InService", "UpdateRollbackFailed"):
            raise ValidationError(f'Cannot update in-progress endpoint "{endpoint.arn}".')
        deployment = body.get("DeploymentConfig") or {}
        _check_deployment(deployment, sum(v.get("InitialInstanceCount", 1) for v in config["ProductionVariants"]))
        alarms = [alarm["AlarmName"] for alarm in (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms", [])]
        rollout = _Rollout(
            self.clock.now(),
            body["EndpointConfigName"],
            previous=endpoint.endpoint_config_name,
            roll_back=self.roll_back_updates,
            rollback_fails=self.rollback_fails,
            alarms=alarms,
        )
        self._rollouts[endpoint.endpoint_name] = rollout
        endpoint.failure_reason = None
        self._refresh_endpoint(backend, endpoint, rollout)
        return ActionResult({"EndpointArn": endpoint.arn})

    def _refresh_endpoint(self, backend, endpoint, rollout: _Rollout) -> None:
        """moto's endpoint as DescribeEndpoint would show it now. While Updating and RollingBack the endpoint
        serves its old config, which EndpointConfigName keeps naming; the new one is in PendingDeploymentSummary."""
        now, seconds = self.clock.now(), self.endpoint_seconds
        if rollout.previous is None:  # CreateEndpoint
            status = "Creating" if now < rollout.started + seconds else "InService"
            rollout.settled = status == "InService"
            endpoint.endpoint_status = status
            endpoint.last_modified_time = _stamp(rollout.started + (seconds if rollout.settled else 0))
            return
        if now < rollout.started + seconds:
            variant = "Creating" if now < rollout.started + seconds / 2 else "Baking"
            self._pending(backend, endpoint, rollout, "Updating", variant)
            return
        if not rollout.roll_back:
            config = backend.describe_endpoint_config(rollout.config)
            endpoint.endpoint_config_name = rollout.config
            endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
            endpoint.data_capture_config = config.get("DataCaptureConfig") or {}
            self._settle(endpoint, rollout, "InService", None, rollout.started + seconds)
            return
        if now < rollout.started + 2 * seconds:
            self._pending(backend, endpoint, rollout, "RollingBack", "Deleting")
            return
        alarm = f"CloudWatch alarm(s) {', '.join(rollout.alarms)} in ALARM" if rollout.alarms else "a failed deployment"
        if rollout.rollback_fails:
            reason = f"Update to {rollout.config} failed ({alarm}) and its rollback to {rollout.previous} failed"
            self._settle(endpoint, rollout, "UpdateRollbackFailed", reason, rollout.started + 2 * seconds)
        else:
            reason = f"Update to {rollout.config} rolled back to {rollout.previous}: {alarm} while baking"
            self._settle(endpoint, rollout, "InService", reason, rollout.started + 2 * seconds)

    def _pending(self, backend, endpoint, rollout: _Rollout, status: str, variant_status: str) -> None:
        config = backend.describe_endpoint_config(rollout.config)
        endpoint.endpoint_status = status
        endpoint.last_modified_time = _stamp(rollout.started)
        endpoint.pending_deployment_summary = {
            "EndpointConfigName": rollout.config,
            "StartTime": _stamp(rollout.started),
            "ProductionVariants": [
                {
                    "VariantName": variant["VariantName"],
                    "InstanceType": variant.get("InstanceType"),
                    "DesiredInstanceCount": variant.get("InitialInstanceCount", 1),
                    "DesiredWeight": variant.get("InitialVariantWeight", 1.0),
                    "VariantStatus": [{"Status": variant_status, "StartTime": _stamp(rollout.started)}],
                }
                for variant in config["ProductionVariants"]
            ],
        }

    @staticmethod
    def _settle(endpoint, rollout: _Rollout, status: str, reason: str | None, at: float) -> None:
        endpoint.endpoint_status, endpoint.failure_reason = status, reason
        endpoint.pending_deployment_summary = None
        endpoint.last_modified_time = _stamp(at)
        rollout.settled = True

    def _invoke_endpoint_response(self):
        fake = self

        def invoke_endpoint(response):
            import httpx

            name = response.path.split("/")[2]
            if fake.broken_answers:
                return 200, {"Content-Type": "application/json"}, json.dumps({"predictions": []})
            server = fake._server_for(name)
            answer = httpx.post(
                f"{server.url}/invocations",
                content=response.body,
                headers={"Content-Type": "application/json"},
                timeout=120,
            )
            content_type = response.headers.get("Content-Type", "application/octet-stream")
            body = response.body if isinstance(response.body, bytes) else response.body.encode()
            fake._capture(name, (content_type, body), (answer.headers.get("content-type", ""), answer.content))
            return answer.status_code, {"Content-Type": "application/json"}, answer.text

        return invoke_endpoint

    def _server_for(self, endpoint_name: str) -> ServerProcess:
        """``python -m tasks serve`` on the model data the endpoint's config names, with the container's
        Environment (started once per model data and environment), as SageMaker starts it: no flags."""
        backend = self.backend()
        config = backend.describe_endpoint_config(backend.endpoints[endpoint_name].endpoint_config_name)
        container = backend.describe_model(config["ProductionVariants"][0]["ModelName"]).primary_container
        model_data = container.get("ModelDataUrl") or container["ModelDataSource"]["S3DataSource"]["S3Uri"]
        environment = container.get("Environment") or {}
        served = (model_data, json.dumps(environment, sort_keys=True))
        if served not in self.servers:
            folder = self.workdir / "served" / str(len(self.servers))
            if model_data.endswith(".tar.gz"):
                archive = self.workdir / "served" / f"{len(self.servers)}.tar.gz"
                archive.parent.mkdir(parents=True, exist_ok=True)
                bucket, key = model_data.removeprefix("s3://").split("/", 1)
                self.s3.download_file(bucket, key, str(archive))
                with tarfile.open(archive) as tar:
                    tar.extractall(folder, filter="data")
            else:
                self._download(model_data, folder)
            log = self.workdir / "served" / f"{len(self.servers)}.log"
            server = ServerProcess(folder, log=log, environment=environment)
            self.servers[served] = server
            server.wait_ready()
        return self.servers[served]

    def _capture(self, endpoint_name: str, request: tuple[str, bytes], answer: tuple[str, bytes]) -> None:
        """SageMaker's own capture of one invocation, as the served config's DataCaptureConfig asks: at its sampling
        percentage, a JSON Lines record (captureData: endpointInput with CaptureMode Input, endpointOutput with
        Output; eventMetadata; eventVersion) under DESTINATION/ENDPOINT/VARIANT/YYYY/MM/DD/HH/, a body as JSON text
        when its content type is among JsonContentTypes, else base64; with KmsKeyId, SSE-KMS. SageMaker gathers
        records into a file every few minutes; the fake writes a file per invocation."""
        endpoint = self._moto_backend().endpoints[endpoint_name]
        config = endpoint.data_capture_config
        if not config or not config.get("EnableCapture", True):
            return
        if self._sampler.uniform(0, 100) >= config["InitialSamplingPercentage"]:
            return
        modes = {each["CaptureMode"] for each in config["CaptureOptions"]}
        json_types = (config.get("CaptureContentTypeHeader") or {}).get("JsonContentTypes") or []

        def data(mode: str, content_type: str, body: bytes) -> dict:
            as_json = content_type in json_types
            text = body.decode() if as_json else base64.b64encode(body).decode()
            encoding = "JSON" if as_json else "BASE64"
            return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}

        captured = {}
        if modes & {"Input", "InputAndOutput"}:
            captured["endpointInput"] = data("INPUT", *request)
        if modes & {"Output", "InputAndOutput"}:
            captured["endpointOutput"] = data("OUTPUT", *answer)
        moment, event = datetime.datetime.fromtimestamp(self.clock.now(), datetime.UTC), str(uuid.uuid4())
        record = {
            "captureData": captured,
            "eventMetadata": {"eventId": event, "inferenceTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "eventVersion": "0",
        }
        variant = endpoint.production_variants[0]["VariantName"]
        bucket, prefix = config["DestinationS3Uri"].removeprefix("s3://").split("/", 1)
        name = f"{moment:%M-%S}-{moment.microsecond // 1000:03d}-{event}.jsonl"
        encryption = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": config["KmsKeyId"]} if config.get("KmsKeyId") else {}
        )
        self.s3.put_object(
            Bucket=bucket,
            Key=f"{prefix.rstrip('/')}/{endpoint_name}/{variant}/{moment:%Y/%m/%d/%H}/{name}",
            Body=json.dumps(record).encode() + b"\n",
            **encryption,
        )

    # ---- model registry -----------------------------------------------------------------------------------
    def _reuse_model_package(self, backend, body: dict):
        """CreateModelPackage's ClientToken "guarantees that the call to this API is idempotent": the same token
        and request answer the version it created; the same token with another request is refused."""
        from moto.core.responses import ActionResult
        from moto.sagemaker.exceptions import ConflictException

        token = body.get("ClientToken")
        if token is None or token not in self._tokens:
            return None
        request, arn, when = self._tokens[token]
        if self.clock.now() - when > _TOKEN_LIFETIME:
            return None
        if request != body:
            raise ConflictException(
                f"ClientToken {token} was used with different parameters for {arn}: use a new ClientToken"
            )
        return ActionResult({"ModelPackageArn": arn})

    def _after_model_package(self, backend, body: dict, result: dict) -> None:
        package = backend.model_packages[result["ModelPackageArn"]]
        latest = max((p.creation_time for p in backend.model_packages.values() if p is not package), default=None)
        created = _stamp(self.clock.now())
        if latest is not None and created <= latest:  # distinct times, so AWS's CreationTime order is defined
            created = latest + datetime.timedelta(milliseconds=1)
        package.creation_time = created
        package.model_life_cycle = body.get("ModelLifeCycle")
        if body.get("ClientToken"):
            self._tokens[body["ClientToken"]] = (body, package.arn, self.clock.now())

    def _update_model_package(self, backend, body: dict):
        """UpdateModelPackage changes only the fields it names (moto sets the others to None);
        CustomerMetadataProperties adds keys and CustomerMetadataPropertiesToRemove removes them."""
        from moto.core.responses import ActionResult

        package = backend.describe_model_package(body["ModelPackageArn"])
        if "ModelApprovalStatus" in body:
            package.set_model_approval_status(body["ModelApprovalStatus"])
        if "ApprovalDescription" in body:
            package.approval_description = body["ApprovalDescription"]
        metadata = dict(package.customer_metadata_properties or {})
        metadata.update(body.get("CustomerMetadataProperties") or {})
        for key in body.get("CustomerMetadataPropertiesToRemove") or []:
            metadata.pop(key, None)
        package.customer_metadata_properties = metadata or None
        if body.get("AdditionalInferenceSpecificationsToAdd"):
            package.add_additional_inference_specifications(body["AdditionalInferenceSpecificationsToAdd"])
        if "ModelLifeCycle" in body:
            package.model_life_cycle = body["ModelLifeCycle"]
        package.modifications_done()
        package.last_modified_time = _stamp(self.clock.now())
        return ActionResult({"ModelPackageArn": package.arn})


_TRAINING_MESSAGES = {
    "Starting": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "MaxRuntimeExceeded": "Training job stopped: it reached MaxRuntimeInSeconds",
    "Stopping": "Stopping the training job",
    "Stopped": "Training job stopped",
    "MaxWaitTimeExceeded": "Training job stopped: it reached MaxWaitTimeInSeconds",
}


def _numbers(each: dict, kind: str, where: str) -> tuple[float, float]:
    """A range's MinValue and MaxValue as the numbers SageMaker reads: integers of an Integer range."""
    from moto.sagemaker.exceptions import ValidationError

    number = int if kind == "Integer" else float
    try:
        return number(each["MinValue"]), number(each["MaxValue"])
    except ValueError:
        raise ValidationError(
            f"{where} {each['Name']}: MinValue {each['MinValue']!r} and MaxValue {each['MaxValue']!r} must be "
            f"{'integers' if kind == 'Integer' else 'numbers'}"
        ) from None


def _check_ranges(ranges: dict, static: dict, jobs: int) -> None:
    """ParameterRanges SageMaker searches (API reference ContinuousParameterRange, IntegerParameterRange,
    CategoricalParameterRange; "Define Hyperparameter Ranges"): each name once and not also static, min below max,
    a Logarithmic range above 0, a ReverseLogarithmic one within [0, 1), categorical values distinct; at most 30
    ranges; and, when no range is continuous, at least as many combinations as training jobs."""
    from moto.sagemaker.exceptions import ValidationError

    names = [each["Name"] for kind in ranges.values() for each in kind]
    if len(names) > _TUNING_LIMITS["ranges"]:
        raise _limit_exceeded(f"{len(names)} hyperparameters to search: at most {_TUNING_LIMITS['ranges']}")
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ValidationError(f"The hyperparameter(s) {repeated} have more than one range")
    if both := sorted(set(names) & set(static)):
        raise ValidationError(f"The hyperparameter(s) {both} are both static and tunable")
    combinations = 1
    for kind, where in (("Continuous", "ContinuousParameterRanges"), ("Integer", "IntegerParameterRanges")):
        for each in ranges.get(where) or []:
            scaling = each.get("ScalingType", "Auto")
            if scaling not in (types := _shape("HyperParameterScalingType").enum):
                raise _constraint(scaling, f"{where}.scalingType", f"Member must satisfy enum value set: {types}")
            low, high = _numbers(each, kind, where)
            if low >= high:
                raise ValidationError(f"{where} {each['Name']}: MinValue {low} must be less than MaxValue {high}")
            if scaling == "Logarithmic" and low <= 0:
                raise ValidationError(f"{where} {each['Name']}: Logarithmic scaling needs MinValue above 0, not {low}")
            if scaling == "ReverseLogarithmic" and not 0 <= low < high < 1:
                raise ValidationError(f"{where} {each['Name']}: ReverseLogarithmic scaling needs a range in [0, 1)")
            combinations = math.inf if kind == "Continuous" else combinations * (high - low + 1)
    for each in ranges.get("CategoricalParameterRanges") or []:
        values = each["Values"]
        fewest, most = (_shape("ParameterValues").metadata[bound] for bound in ("min", "max"))
        if not fewest <= len(values) <= most or len(set(values)) != len(values):
            raise ValidationError(
                f"CategoricalParameterRanges {each['Name']}: {fewest} to {most} distinct values, not {values}"
            )
        combinations *= len(values)
    if combinations < jobs:
        raise ValidationError(
            f"You don't have enough combinations of hyperparameter ranges. The total number of hyperparameter "
            f"combinations for the provided ranges [{combinations}] must be equal or greater than the value of "
            f"MaxNumberOfJobs, [{jobs}]. Provide additional ranges."
        )


def _scaled(generator: random.Random, low: float, high: float, scaling: str) -> float:
    if scaling == "Logarithmic":
        return math.exp(generator.uniform(math.log(low), math.log(high)))
    if scaling == "ReverseLogarithmic":
        return 1 - math.exp(generator.uniform(math.log(1 - high), math.log(1 - low)))
    return generator.uniform(low, high)


def _draw(ranges: dict, trials: int, seed: int) -> list[dict[str, str]]:
    """Each trial's setting: a value within every range (log-uniform for a Logarithmic one), as strings, from a
    generator seeded with the tuning job's RandomSeed, so the same request draws the same settings. Random, not
    Bayesian: the fake's trials do not learn from the ones before."""
    generator = random.Random(seed)
    settings = []
    for _ in range(trials):
        setting = {}
        for each in ranges.get("ContinuousParameterRanges") or []:
            low, high = _numbers(each, "Continuous", "ContinuousParameterRanges")
            setting[each["Name"]] = repr(min(high, max(low, _scaled(generator, low, high, each.get("ScalingType")))))
        for each in ranges.get("IntegerParameterRanges") or []:
            low, high = _numbers(each, "Integer", "IntegerParameterRanges")
            if each.get("ScalingType") == "Logarithmic":
                value = round(_scaled(generator, low, high, "Logarithmic"))
            else:
                value = round(_scaled(generator, low - 0.5, high + 0.5, "Linear"))
            setting[each["Name"]] = str(min(high, max(low, value)))
        for each in ranges.get("CategoricalParameterRanges") or []:
            setting[each["Name"]] = generator.choice(each["Values"])
        settings.append(setting)
    return settings


def _check_deployment(deployment: dict, instance_count: int) -> None:
    """UpdateEndpoint's DeploymentConfig as SageMaker checks it (botocore shapes TrafficRoutingConfig,
    BlueGreenUpdatePolicy, AutoRollbackConfig; docs "Use canary traffic shifting": the canary is at most 50 % of
    the new fleet; "Use linear traffic shifting": each step 10-50 %; BlueGreenUpdatePolicy:
    MaximumExecutionTimeoutInSeconds "should be larger than the total waiting time")."""
    from moto.sagemaker.exceptions import ValidationError

    alarms = (deployment.get("AutoRollbackConfiguration") or {}).get("Alarms")
    if alarms is not None and not 1 <= len(alarms) <= 10:
        raise _constraint(
            alarms, "deploymentConfig.autoRollbackConfiguration.alarms", "Member must have length between 1 and 10"
        )
    policy = deployment.get("BlueGreenUpdatePolicy")
    if policy is None:
        return
    if deployment.get("RollingUpdatePolicy") is not None:
        raise ValidationError("DeploymentConfig takes one of BlueGreenUpdatePolicy and RollingUpdatePolicy, not both")
    where = "deploymentConfig.blueGreenUpdatePolicy"
    routing = policy["TrafficRoutingConfiguration"]
    kind, wait = routing.get("Type"), routing.get("WaitIntervalInSeconds", 0)
    if kind not in ("ALL_AT_ONCE", "CANARY", "LINEAR"):
        raise _constraint(
            kind,
            f"{where}.trafficRoutingConfiguration.type",
            "Member must satisfy enum value set: [ALL_AT_ONCE, CANARY, LINEAR]",
        )
    for name, value, low, high in (
        ("trafficRoutingConfiguration.waitIntervalInSeconds", wait, 0, 3600),
        ("terminationWaitInSeconds", policy.get("TerminationWaitInSeconds", 0), 0, 3600),
        ("maximumExecutionTimeoutInSeconds", policy.get("MaximumExecutionTimeoutInSeconds", 600), 600, 28800),
    ):
        if not low <= value <= high:
            side = f"greater than or equal to {low}" if value < low else f"less than or equal to {high}"
            raise _constraint(value, f"{where}.{name}", f"Member must have value {side}")
    steps = 1
    sizes = {"CANARY": ("CanarySize", 0, 50), "LINEAR": ("LinearStepSize", 10, 50)}
    for other, (key, _, _) in sizes.items():
        if routing.get(key) is not None and kind != other:
            raise ValidationError(f"{key} is only valid for TrafficRoutingConfiguration Type {other}, not {kind}")
    if kind in sizes:
        key, low, high = sizes[kind]
        size = routing.get(key)
        if size is None:
            raise ValidationError(f"TrafficRoutingConfiguration Type {kind} requires {key}")
        if size.get("Type") not in ("INSTANCE_COUNT", "CAPACITY_PERCENT"):
            raise _constraint(
                size.get("Type"),
                f"{where}.trafficRoutingConfiguration.{key[0].lower()}{key[1:]}.type",
                "Member must satisfy enum value set: [INSTANCE_COUNT, CAPACITY_PERCENT]",
            )
        percent = size["Value"] if size["Type"] == "CAPACITY_PERCENT" else 100 * size["Value"] / instance_count
        if not low <= percent <= high or size["Value"] < 1:
            raise ValidationError(
                f"{key} {size['Value']} ({size['Type']}) must be {f'{low}-{high}' if low else f'at most {high}'} % of "
                f"the new fleet's {instance_count} instance(s); got {percent:g} %"
            )
        # A step moves whole instances: on a fleet of one, any step is the whole fleet, over the 50 % limit
        # (TrafficRoutingConfig: "less than or equal to 50% of the variant's total instance count").
        shifted = 100 * max(1, math.ceil(instance_count * percent / 100)) / instance_count
        if shifted > high:
            raise ValidationError(
                f"{key} {size['Value']} ({size['Type']}) moves {shifted:g} % of the new fleet's {instance_count} "
                f"instance(s) at a time: at most {high} % (canary and linear need at least 2 instances)"
            )
        if kind == "LINEAR":
            steps = math.ceil(100 / percent)
    total = wait * steps + policy.get("TerminationWaitInSeconds", 0)
    timeout = policy.get("MaximumExecutionTimeoutInSeconds")
    if timeout is not None and timeout <= total:
        raise ValidationError(
            f"MaximumExecutionTimeoutInSeconds {timeout} must be larger than the total waiting time {total} s "
            f"({steps} x WaitIntervalInSeconds {wait} + TerminationWaitInSeconds)"
        )
