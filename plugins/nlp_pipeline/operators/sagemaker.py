"""The amazon provider's SageMaker operators, made safe to retry and to clear on real AWS.

Each operator here builds its request when it runs (from the run's Params, Variables and the XComs of the
steps before it, with the functions of specs/sagemaker.py) and then lets the provider do the work. What
they add:

- Jobs are named ``nlp-STEP-RUNKEY-HASH-tTRY`` (a tuning job ``nlp-tune-YYYYMMDD-HASH-tTRY``). A try first looks
  at the jobs earlier tries of the run started: one still running is waited for instead of starting a second; one
  that completed on the same request (its ``NLP_REQUEST_DIGEST``) is reused, so a retry after the job finished
  never pays for it again.
- Every wait is sized from the request: the job's own ``StoppingCondition`` (with Spot, its
  ``MaxWaitTimeInSeconds``), a tuning job's ``ResourceLimits.MaxRuntimeInSeconds`` or the endpoint update's
  ``MaximumExecutionTimeoutInSeconds``, plus the time SageMaker takes to provision (``limits.JOB_START``). The
  provider's defaults give up after 30 minutes.
- A failed step's exit code is read where SageMaker puts the step's own words: a processing job's
  ``ExitMessage`` (``/opt/ml/output/message``), a training job's ``FailureReason``
  (``/opt/ml/output/failure``); bad input (exit 2/3) is not retried.
- Models and endpoint configs are named by the caller (per run and model digest); creating one that exists
  already reuses it.
- A model package is created with a ``ClientToken`` of its run, so a retried ``register`` adds no version;
  a package waiting for ``PendingManualApproval`` holds the run (deferred, no worker slot) until a person
  approves or rejects it in SageMaker.
- The endpoint rollout keeps a record (``RolloutRecord``, on S3) of the config the endpoint served before the
  run first touched it, written once; a retry reads the endpoint's state and the record and waits for an
  update in progress, fails at once on a rollback SageMaker made (an alarm fired) or could not make, and
  updates only when this run's config was never requested.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path

from airflow.providers.amazon.aws.exceptions import WaiterMaxAttemptsError
from airflow.providers.amazon.aws.hooks.sagemaker import LogState, SageMakerHook
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerBaseOperator,
    SageMakerEndpointConfigOperator,
    SageMakerEndpointOperator,
    SageMakerModelOperator,
    SageMakerProcessingOperator,
    SageMakerRegisterModelVersionOperator,
    SageMakerTrainingOperator,
    SageMakerTuningOperator,
)
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.amazon.aws.utils.sagemaker import ApprovalStatus
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from airflow.triggers.base import TriggerEvent
from botocore.exceptions import ClientError

from nlp_pipeline import artefacts
from nlp_pipeline.failures import step_failure
from nlp_pipeline.limits import JOB_START
from nlp_pipeline.links import (
    EndpointUrlLink,
    SageMakerEndpointLink,
    SageMakerModelPackageLink,
    SageMakerProcessingJobLink,
    SageMakerTrainingJobLink,
    SageMakerTuningJobLink,
    persist_sagemaker,
    persist_sagemaker_endpoint,
)
from nlp_pipeline.specs.sagemaker import resource_name, tuning_job_name
from tasks.errors import NOT_RETRYABLE, exit_code_in

ConfigBuilder = Callable[[dict, str], dict]  # (context, job name) -> the request
Summarizer = Callable[[dict, dict], dict]  # (context, the provider operator's result) -> this step's XCom
RUNNING = ("InProgress", "Stopping")
DEFER_MARGIN = timedelta(minutes=10)  # beyond a deferred wait's polls: the trigger's own start and last call
REQUEST_DIGEST_ENV = "NLP_REQUEST_DIGEST"  # in a job's Environment: what it was asked to do, to reuse it
# Endpoint states in which an update is under way; UpdateEndpoint is refused until it ends.
ENDPOINT_BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


def run_name(kind: str, context, try_number: int | None = None, digest: str | None = None) -> str:
    return resource_name(kind, artefacts.run_key(context), context["run_id"], try_number, digest=digest)


def not_found(error: ClientError) -> bool:
    """What SageMaker answers when describing a job, model, config or endpoint that does not exist."""
    return error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound")


def attempts(limit_seconds: float, check_interval: int) -> int:
    """Polls every ``check_interval`` seconds that cover ``limit_seconds`` and SageMaker's provisioning."""
    return math.ceil((limit_seconds + JOB_START.total_seconds()) / check_interval)


def wait_timeout(polls: int, check_interval: int) -> timedelta:
    """The deferral's own timeout: Airflow 3 does not apply a task's execution_timeout while it is deferred, so
    a trigger that never yields (throttled polls do not count as attempts) is bounded here."""
    return timedelta(seconds=polls * check_interval) + DEFER_MARGIN


def request_digest(request: dict, name_key: str) -> str:
    """What a job was asked to do, without its name, its output prefix (named after the job) or the digest."""
    asked = {key: value for key, value in request.items() if key not in (name_key, "ProcessingOutputConfig")}
    asked["Environment"] = {k: v for k, v in request.get("Environment", {}).items() if k != REQUEST_DIGEST_ENV}
    if definition := request.get("TrainingJobDefinition"):  # a tuning job's environment is its trials'
        environment = {k: v for k, v in definition.get("Environment", {}).items() if k != REQUEST_DIGEST_ENV}
        asked["TrainingJobDefinition"] = definition | {"Environment": environment}
    return hashlib.sha256(json.dumps(asked, sort_keys=True, default=str).encode()).hexdigest()[:32]


class _JobOfThisRun(SageMakerBaseOperator):
    """Wait for the job of this run an earlier try left running, reuse one it completed, else start one.

    The wait is always deferred (no worker slot for the hours a job runs), with as many polls as the job's
    own time limit and its provisioning take.
    """

    kind: str
    job_type: str  # the provider's name for it: Processing, Training or Tuning
    job_link: type[SageMakerProcessingJobLink | SageMakerTrainingJobLink | SageMakerTuningJobLink]  # console page
    # What the provider's operator takes beyond the config: processing and training jobs would otherwise get a
    # new name when theirs exists; this operator names them itself.
    provider_arguments: dict = {"action_if_job_exists": "fail"}

    def __init__(
        self,
        *,
        kind: str,
        build_config: ConfigBuilder,
        summarize: Summarizer,
        result_without_job: Callable[[dict], dict | None] = lambda context: None,
        **kwargs,
    ):
        """``result_without_job``: the task's result when this run needs no job (quantisation off), else None."""
        super().__init__(config={}, **self.provider_arguments, **kwargs)
        self.kind, self.build_config, self.summarize = kind, build_config, summarize
        self.result_without_job = result_without_job

    @property
    def _name_key(self) -> str:
        return f"{self.job_type}JobName"

    @property
    def _status_key(self) -> str:
        return f"{self.job_type}JobStatus"

    def _name(self, context, try_number: int) -> str:
        return run_name(self.kind, context, try_number)

    @staticmethod
    def _environment(request: dict) -> dict:
        """The job's Environment in a request or description, where its ``REQUEST_DIGEST_ENV`` is."""
        return request.setdefault("Environment", {})

    def _describe(self, name: str) -> dict | None:
        try:
            return getattr(self.hook, f"describe_{self.job_type.lower()}_job")(name)
        except ClientError as error:
            if not_found(error):
                return None
            raise

    def _stop(self, name: str) -> None:
        getattr(self.hook.conn, f"stop_{self.job_type.lower()}_job")(**{self._name_key: name})

    @staticmethod
    def _wait_limit(request: dict) -> int:
        """The longest the job may take once it starts: SageMaker stops it then."""
        stopping = request["StoppingCondition"]
        return stopping.get("MaxWaitTimeInSeconds", stopping["MaxRuntimeInSeconds"])

    def _earlier_job(self, context, digest: str) -> tuple[str, dict] | None:
        """A job of an earlier try on the same request to wait for (running) or reuse (completed). One running
        on another request (the step's inputs changed since: an upstream task was cleared) is stopped."""
        for earlier in range(context["ti"].try_number - 1, 0, -1):
            name = self._name(context, earlier)
            description = self._describe(name)
            if not description:
                continue
            status = description[self._status_key]
            same = (self._environment(description) or {}).get(REQUEST_DIGEST_ENV) == digest
            if status == "InProgress" and not same:
                self.log.info("try %s of this run started %s on other inputs: stopping it", earlier, name)
                self._stop(name)
                continue
            if same and status in (*RUNNING, "Completed"):
                self.log.info(
                    "try %s of this run started %s, now %s: %s it",
                    earlier,
                    name,
                    status,
                    "reusing" if status == "Completed" else "waiting for",
                )
                return name, description
        return None

    def execute(self, context):
        if (result := self.result_without_job(context)) is not None:
            self.log.info("this run needs no %s job: %s", self.kind, result)
            return result
        name = self._name(context, context["ti"].try_number)
        self.config = self.build_config(context, name)
        digest = request_digest(self.config, self._name_key)
        self._environment(self.config)[REQUEST_DIGEST_ENV] = digest
        self.max_attempts = attempts(self._wait_limit(self.config), self.check_interval)
        found = self._earlier_job(context, digest)
        if found is None and (description := self._describe(name)) is not None:
            self.log.info("job %s of this try exists (%s): waiting for it", name, description[self._status_key])
            found = name, description
        if found is None:
            self.preprocess_config()
            self._create(self.config)
            found = name, {self._status_key: "InProgress"}
        name, description = found
        persist_sagemaker(self.job_link, context, self, job_name=name)
        if description[self._status_key] not in RUNNING:
            return self.execute_complete(context, self._event(name, description))
        self.log.info("waiting for %s (at most %s polls of %s s)", name, self.max_attempts, self.check_interval)
        self.defer(
            trigger=SageMakerTrigger(
                job_name=name,
                job_type=self.job_type,
                waiter_delay=self.check_interval,
                waiter_max_attempts=self.max_attempts,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=wait_timeout(self.max_attempts, self.check_interval),
        )

    def _create(self, request: dict) -> None:
        getattr(self.hook.conn, f"create_{self.job_type.lower()}_job")(**request)

    def _event(self, name: str, description: dict) -> dict:
        """The trigger's event for a job already ended."""
        if description[self._status_key] == "Completed":
            return {"status": "success", "job_name": name}
        return {"status": description[self._status_key].lower(), "job_name": name, "message": ""}

    def _step_words(self, description: dict) -> str:
        """Where SageMaker puts what the step wrote of its failure: FailureReason (training)."""
        return description.get("FailureReason", "")

    def execute_complete(self, context, event=None):
        if event and event.get("status") != "success":
            name = event.get("job_name") or self.kind
            description = self._describe(name) or {}
            # The step names its exit code in its own words (tasks.errors.failure_reason).
            words = self._step_words(description)
            message = "; ".join(part for part in (words, str(event.get("message", ""))) if part)
            if (code := exit_code_in(words)) in NOT_RETRYABLE:
                raise step_failure(name, code, message)
            raise AirflowException(f"SageMaker job {name} ended {event.get('status')}: {message}")
        return self.summarize(context, super().execute_complete(context, event))


class StepProcessingOperator(_JobOfThisRun, SageMakerProcessingOperator):
    """A ``python -m tasks STEP`` processing job of this run, re-attached or reused rather than duplicated."""

    job_type = "Processing"
    job_link = SageMakerProcessingJobLink
    operator_extra_links = (job_link(),)

    def _step_words(self, description: dict) -> str:
        """A processing job's ExitMessage is ``/opt/ml/output/message``; its FailureReason is SageMaker's own."""
        return description.get("ExitMessage") or description.get("FailureReason", "")


class StepTrainingOperator(_JobOfThisRun, SageMakerTrainingOperator):
    """The ``train`` training job of this run, re-attached or reused rather than duplicated.

    The wait is deferred, so the job's log cannot stream into the task log meanwhile (it is in CloudWatch,
    ``/aws/sagemaker/TrainingJobs``); when the job ends, its whole log is copied into the task log.
    """

    job_type = "Training"
    job_link = SageMakerTrainingJobLink
    operator_extra_links = (job_link(),)

    def execute_complete(self, context, event=None):
        name = (event or {}).get("job_name")
        if name and self.print_log:
            description = self.hook.describe_training_job(name)
            self.hook.describe_training_job_with_log(
                name, {}, [], description["ResourceConfig"]["InstanceCount"], LogState.COMPLETE, description, 0
            )
        return super().execute_complete(context, event)


class StepTuningOperator(_JobOfThisRun, SageMakerTuningOperator):
    """The ``tune`` hyperparameter tuning job of this run, re-attached or reused rather than duplicated.

    ``build_config`` may skip the task (tuning off). The wait is the tuning job's own limit
    (``ResourceLimits.MaxRuntimeInSeconds``); its training jobs' logs are in CloudWatch, each under its own name.
    """

    job_type = "Tuning"
    job_link = SageMakerTuningJobLink
    operator_extra_links = (job_link(),)
    provider_arguments: dict = {}
    _name_key, _status_key = "HyperParameterTuningJobName", "HyperParameterTuningJobStatus"

    def _name(self, context, try_number: int) -> str:
        return tuning_job_name(artefacts.run_key(context), context["run_id"], try_number)

    @staticmethod
    def _environment(request: dict) -> dict:
        return request["TrainingJobDefinition"].setdefault("Environment", {})

    def _stop(self, name: str) -> None:
        self.hook.conn.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    @staticmethod
    def _wait_limit(request: dict) -> int:
        return request["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxRuntimeInSeconds"]

    def _create(self, request: dict) -> None:
        """Through the provider's hook, which first checks that every input channel is on S3."""
        self.hook.create_tuning_job(request, wait_for_completion=False)


class _OncePerRun(SageMakerBaseOperator):
    """Create ``kind`` as ``build_config(context)`` names it, unless it exists: a retry reuses it."""

    resource: str  # the API's name for it: Model or EndpointConfig
    describe: str  # the hook's method that describes one

    def __init__(self, *, build_config: Callable[[dict], dict], **kwargs):
        super().__init__(config={}, **kwargs)
        self.build_config = build_config

    def execute(self, context):
        self.config = self.build_config(context)
        try:
            return {self.resource: getattr(self.hook, self.describe)(self.config[f"{self.resource}Name"])}
        except ClientError as error:
            if not not_found(error):
                raise
        return super().execute(context)


class RunModelOperator(_OncePerRun, SageMakerModelOperator):
    """``CreateModel`` for this run's candidate."""

    resource, describe = "Model", "describe_model"


class RunEndpointConfigOperator(_OncePerRun, SageMakerEndpointConfigOperator):
    """``CreateEndpointConfig``: a new config per run and model (configs are immutable)."""

    resource, describe = "EndpointConfig", "describe_endpoint_config"


class _WaiterHook(SageMakerHook):
    """SageMaker's hook with this package's waiters (waiters/sagemaker.json)."""

    @cached_property
    def waiter_path(self) -> Path:
        return Path(__file__).parents[1] / "waiters" / "sagemaker.json"


class EndpointSettledTrigger(AwsBaseWaiterTrigger):
    """Wait until the endpoint is InService, and stop at once when it is not going to be: Failed,
    RollingBack (SageMaker undoes the update: an alarm fired or the new fleet failed), UpdateRollbackFailed
    or OutOfService. botocore's EndpointInService waiter polls those to its end."""

    aws_hook_class = _WaiterHook

    def __init__(self, *, endpoint_name: str, waiter_delay: int, waiter_max_attempts: int, **kwargs):
        super().__init__(
            serialized_fields={"endpoint_name": endpoint_name},
            waiter_name="EndpointSettled",
            waiter_args={"EndpointName": endpoint_name},
            failure_message=f"endpoint {endpoint_name} did not settle InService",
            status_message=f"endpoint {endpoint_name}",
            status_queries=["EndpointStatus", "PendingDeploymentSummary.EndpointConfigName"],
            return_key="job_name",
            return_value=endpoint_name,
            waiter_delay=waiter_delay,
            waiter_max_attempts=waiter_max_attempts,
            **kwargs,
        )

    def _event_from_exception(self, error: AirflowException) -> TriggerEvent:
        """``timeout`` when the polls ran out (the endpoint is still changing), as SageMakerTrigger says it."""
        if isinstance(error, WaiterMaxAttemptsError):
            return TriggerEvent({"status": "timeout", "message": str(error), self.return_key: self.return_value})
        return super()._event_from_exception(error)


@dataclass(frozen=True)
class Rollout:
    """What ``deploy`` rolls out: the endpoint, this run's config, the DeploymentConfig of an update, and
    where the rollout's record lives (``s3://.../rollout.json``)."""

    endpoint: str
    config: str
    deployment: dict
    record_uri: str


class RolloutRecord:
    """The run's rollout on S3: the config the endpoint served before the run first touched it (written
    once, conditionally, so no retry can replace it) and the configs the run asked SageMaker to serve.

    XCom cannot hold it: Airflow 3 clears a task's XCom when a new try starts, and a try after the switch
    would see the NEW config as the one before."""

    def __init__(self, s3_client, uri: str):
        self.s3, (self.bucket, self.key) = s3_client, uri.removeprefix("s3://").split("/", 1)
        self.uri = uri

    def read(self) -> tuple[dict | None, str | None]:
        """(the record, its ETag), or (None, None) when there is none."""
        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None, None
            raise
        return json.loads(found["Body"].read()), found["ETag"]

    def write(self, record: dict, etag: str | None) -> None:
        """Create the record (``etag`` None: only if there is none) or replace the version read."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(record).encode(), **condition)

    def begin(self, endpoint: str, serving: str | None) -> dict:
        """The record begun with ``serving``, the config the endpoint serves, settled, before the run touches it
        (None: there is no endpoint), unless a try of the run began it already."""
        try:
            self.write({"endpoint": endpoint, "previous_config": serving, "requested": []}, None)
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
        record, _ = self.read()
        return record

    def requested(self, config: str) -> None:
        """Note that the run asked SageMaker to serve ``config``."""
        record, etag = self.read()
        if config not in record["requested"]:
            self.write(record | {"requested": [*record["requested"], config]}, etag)

    def restored(self, config: str) -> None:
        """Note that ``rollback`` took ``config`` out of service: a cleared deploy may roll it out again."""
        record, etag = self.read()
        self.write(record | {"requested": [asked for asked in record["requested"] if asked != config]}, etag)


class VerifiedEndpointOperator(SageMakerEndpointOperator):
    """Create the endpoint, or update it blue/green, to this run's config; settle a retry from the
    endpoint's state; succeed only once the endpoint is InService on the new config.

    ``build_rollout(context)`` gives the ``Rollout``. A retry in any state does the one right thing:

    ============================  ================================================================
    endpoint                      this try
    ============================  ================================================================
    none                          creates it
    InService on this config      done
    InService on another          updates it, unless the record says this run asked for this config
                                  already: then SageMaker rolled it back, and the task fails (no retry)
    Creating/Updating to this     waits (the new config is in ``PendingDeploymentSummary``)
    RollingBack, after this run   fails at once, no retry: SageMaker is undoing the update
    UpdateRollbackFailed/Failed   fails at once, no retry: the endpoint needs a person
    busy with another config      fails, to retry later
    ============================  ================================================================

    Its links: the endpoint's console page and the URL clients invoke it at (SigV4-signed POST).
    """

    operator_extra_links = (SageMakerEndpointLink(), EndpointUrlLink())

    def __init__(self, *, build_rollout: Callable[[dict], Rollout], **kwargs):
        super().__init__(config={}, **kwargs)
        self.build_rollout = build_rollout

    def _state(self, endpoint: str) -> dict | None:
        try:
            return self.hook.describe_endpoint(endpoint)
        except ClientError as error:
            if not_found(error):
                return None
            raise

    def _record(self, rollout: Rollout) -> RolloutRecord:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return RolloutRecord(S3Hook(aws_conn_id=self.aws_conn_id).get_conn(), rollout.record_uri)

    def execute(self, context):
        rollout = self.build_rollout(context)
        persist_sagemaker_endpoint(context, self, rollout.endpoint)
        state = self._state(rollout.endpoint)
        record = self._record(rollout)
        history, _ = record.read()
        if history is None:
            if state and state["EndpointStatus"] in ENDPOINT_BUSY:  # not by this run: it has asked nothing yet
                self._refuse(rollout, state, asked=False)
            history = record.begin(rollout.endpoint, state and state["EndpointConfigName"])
        if state is None:
            self.log.info("creating endpoint %s with %s", rollout.endpoint, rollout.config)
            self.hook.conn.create_endpoint(EndpointName=rollout.endpoint, EndpointConfigName=rollout.config)
            record.requested(rollout.config)
            return self._wait(context, rollout, rollout.config)
        status, serving = state["EndpointStatus"], state["EndpointConfigName"]
        pending = (state.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        asked = rollout.config in history["requested"]
        if status in ("Creating", "Updating") and rollout.config in (pending, serving):
            self.log.info("%s is %s to %s already (an earlier try): waiting", rollout.endpoint, status, rollout.config)
            return self._wait(context, rollout, rollout.config)
        if status == "InService" and serving == rollout.config:
            self.log.info("%s already serves %s (an earlier try switched it)", rollout.endpoint, serving)
            return self._verified(context, rollout, history)
        self._refuse(rollout, state, asked)
        self.log.info("updating %s from %s to %s", rollout.endpoint, serving, rollout.config)
        self.hook.conn.update_endpoint(
            EndpointName=rollout.endpoint,
            EndpointConfigName=rollout.config,
            DeploymentConfig=rollout.deployment,
            RetainDeploymentConfig=False,
        )
        record.requested(rollout.config)
        return self._wait(context, rollout, rollout.config)

    def _refuse(self, rollout: Rollout, state: dict, asked: bool) -> None:
        """Raise unless the endpoint is InService on a config this run never asked for (then: update it)."""
        status, serving, reason = state["EndpointStatus"], state["EndpointConfigName"], state.get("FailureReason")
        if status in ("UpdateRollbackFailed", "Failed", "OutOfService"):
            raise AirflowFailException(
                f"endpoint {rollout.endpoint} is {status} on {serving}: it needs a person (SageMaker console or "
                f"UpdateEndpoint/DeleteEndpoint), not a retry; {reason or 'no FailureReason given'}"
            )
        if asked:
            raise AirflowFailException(
                f"endpoint {rollout.endpoint} is {status} on {serving}, not on this run's {rollout.config}: SageMaker "
                f"rolled this run's update back (an auto-rollback alarm fired while baking, or the new fleet "
                f"failed); not retried, which would canary the same model again. "
                f"{reason or 'no FailureReason given'}"
            )
        if status in ENDPOINT_BUSY:
            raise AirflowException(
                f"endpoint {rollout.endpoint} is {status} (to "
                f"{(state.get('PendingDeploymentSummary') or {}).get('EndpointConfigName', serving)}), not by "
                f"this run: SageMaker refuses an update until it ends; retrying later"
            )

    def _wait(self, context, rollout: Rollout, config: str):
        limit = rollout.deployment.get("BlueGreenUpdatePolicy", {}).get("MaximumExecutionTimeoutInSeconds", 0)
        polls = attempts(limit, self.check_interval)
        self.log.info(
            "waiting for %s on %s (at most %s polls of %s s)", rollout.endpoint, config, polls, self.check_interval
        )
        self.defer(
            trigger=EndpointSettledTrigger(
                endpoint_name=rollout.endpoint,
                waiter_delay=self.check_interval,
                waiter_max_attempts=polls,
                aws_conn_id=self.aws_conn_id,
                region_name=self.region_name,
                verify=self.verify,
                botocore_config=self.botocore_config,
            ),
            method_name="execute_complete",
            timeout=wait_timeout(polls, self.check_interval),
        )

    def execute_complete(self, context, event=None):
        rollout = self.build_rollout(context)
        history, _ = self._record(rollout).read()
        state = self._state(rollout.endpoint)
        if state and state["EndpointStatus"] == "InService" and state["EndpointConfigName"] == rollout.config:
            return self._verified(context, rollout, history)
        if state is None:
            raise AirflowException(f"endpoint {rollout.endpoint} is gone (deleted while this run waited)")
        pending = (state.get("PendingDeploymentSummary") or {}).get("EndpointConfigName")
        if state["EndpointStatus"] in ("Creating", "Updating") and rollout.config in (
            pending,
            state["EndpointConfigName"],
        ):
            raise AirflowException(
                f"endpoint {rollout.endpoint} is still {state['EndpointStatus']} to {rollout.config} after the "
                f"wait ({(event or {}).get('message', 'no message')}): a retry waits on"
            )
        self._refuse(rollout, state, asked=True)
        raise AirflowException(f"endpoint {rollout.endpoint} is {state['EndpointStatus']}: {event}")

    def _verified(self, context, rollout: Rollout, history: dict) -> dict:
        self.log.info("endpoint %s is InService on %s", rollout.endpoint, rollout.config)
        return {"endpoint": rollout.endpoint, "config": rollout.config, "previous_config": history["previous_config"]}


class RunModelVersionOperator(SageMakerRegisterModelVersionOperator):
    """Register this run's candidate in the model package group, once per run, and wait for its approval.

    ``build_extras(context)`` gives the package's inference specification, metrics, lineage, its
    ``ModelPackageDescription`` (what a retry finds it by) and ``ClientToken`` (SageMaker answers a repeated
    token with the version it made), both of the run, task and model. The status
    is ``approval``, or the run's ``model_approval`` Param when None. A package ``PendingManualApproval``
    makes the task defer in steps of ``approval_poll`` until it is approved (returns) or rejected (skips
    the rollout), at most ``approval_timeout``. The group is created first with ``package_group_desc``,
    which the provider would not use. Its link: the group's page in the SageMaker console.
    """

    operator_extra_links = (SageMakerModelPackageLink(),)

    def __init__(
        self,
        *,
        build_extras: Callable[[dict], dict],
        approval: str | None,
        approval_poll: timedelta,
        approval_timeout: timedelta,
        **kwargs,
    ):
        super().__init__(image_uri="", model_url="", **kwargs)
        self.build_extras, self.approval = build_extras, approval
        self.approval_poll, self.approval_timeout = approval_poll, approval_timeout

    def execute(self, context):
        self.model_approval = ApprovalStatus(self.approval or context["params"]["model_approval"])
        persist_sagemaker(SageMakerModelPackageLink, context, self, group_name=self.package_group_name)
        self.extras = self.build_extras(context)
        self.package_desc = self.extras["ModelPackageDescription"]
        for package in model_packages(self.hook.conn, self.package_group_name):
            if package.get("ModelPackageDescription") == self.package_desc:
                self.log.info("registered already: %s (%s)", self.package_desc, package["ModelPackageArn"])
                return self._decided(package["ModelPackageArn"])
        self.hook.create_model_package_group(self.package_group_name, self.package_group_desc)
        return self._decided(super().execute(context))

    def _decided(self, arn: str, waited_seconds: float = 0) -> dict:
        package = self.hook.conn.describe_model_package(ModelPackageName=arn)
        status = package["ModelApprovalStatus"]
        entry = {
            "arn": arn,
            "version": f"{package['ModelPackageGroupName']}/{package['ModelPackageVersion']}",
            "status": status,
        }
        if status == "Rejected" and self.approval != "Rejected":
            raise AirflowSkipException(f"{entry['version']} was rejected in the model registry: no rollout")
        if status != "PendingManualApproval":
            return entry
        if waited_seconds >= self.approval_timeout.total_seconds():
            raise AirflowException(f"{entry['version']} still waits for approval after {self.approval_timeout}")
        self.log.info("%s waits for approval in SageMaker's model registry (%s)", entry["version"], arn)
        self.defer(
            trigger=TimeDeltaTrigger(self.approval_poll),
            method_name="check_approval",
            kwargs={"arn": arn, "waited_seconds": waited_seconds + self.approval_poll.total_seconds()},
        )

    def check_approval(self, context, event=None, *, arn: str, waited_seconds: float) -> dict:
        return self._decided(arn, waited_seconds)


def model_packages(client, group: str, **filters) -> Iterator[dict]:
    """The packages of ``group`` (and ``filters``: ListModelPackages' own), newest first, page after page:
    AWS lists oldest first, a page at a time."""
    pages = client.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", **filters
    )
    try:
        for page in pages:
            yield from page["ModelPackageSummaryList"]
    except ClientError as error:
        if not not_found(error):
            raise
