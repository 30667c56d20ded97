"""The amazon provider's SageMaker operators, made safe to retry and to clear.

Each operator here builds its request when it runs (from the run's Params, Variables and the XComs of the
steps before it, with the functions of specs/sagemaker.py) and then lets the provider's operator do the
work. What they add:

- Jobs are named ``nlp-STEP-RUNKEY-HASH-tTRY``. A try first looks for a job an earlier try of the same run
  left running (a worker lost mid-job) and waits for that job instead of starting a second one; its own
  name is only taken if no job of the run is running, so a retry or a cleared task never duplicates work.
- Models and endpoint configs are named per run; creating one that exists already reuses it.
- A model package is found again by its run (its description), so a retried ``register`` adds no version;
  a package waiting for ``PendingManualApproval`` holds the run (deferred, no worker slot) until a person
  approves or rejects it in SageMaker.
- After an endpoint update the endpoint must be ``InService`` on the NEW config: an update SageMaker rolled
  back (an alarm fired while baking) leaves it ``InService`` on the old one, and that fails the task.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerBaseOperator,
    SageMakerEndpointConfigOperator,
    SageMakerEndpointOperator,
    SageMakerModelOperator,
    SageMakerProcessingOperator,
    SageMakerRegisterModelVersionOperator,
    SageMakerTrainingOperator,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.amazon.aws.utils.sagemaker import ApprovalStatus
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from botocore.exceptions import ClientError

from nlp_pipeline import artefacts
from nlp_pipeline.failures import step_failure
from nlp_pipeline.specs.sagemaker import resource_name
from tasks.errors import NOT_RETRYABLE, exit_code_in

ConfigBuilder = Callable[[dict, str], dict]  # (context, resource name) -> the request
Summarizer = Callable[[dict, dict], dict]  # (context, the provider operator's result) -> this step's XCom
RUNNING = ("InProgress", "Stopping")


def run_name(kind: str, context, try_number: int | None = None) -> str:
    return resource_name(kind, artefacts.run_key(context), context["run_id"], try_number)


def not_found(error: ClientError) -> bool:
    """What SageMaker answers when describing a job, model, config or endpoint that does not exist."""
    return error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound")


class _JobOfThisRun(SageMakerBaseOperator):
    """Wait for the job of this run an earlier try left running, else start this try's job."""

    kind: str
    job_type: str  # the provider's name for it: Processing or Training

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
        super().__init__(config={}, action_if_job_exists="fail", **kwargs)
        self.kind, self.build_config, self.summarize = kind, build_config, summarize
        self.result_without_job = result_without_job

    @property
    def _describe_job(self) -> Callable[[str], dict]:
        """The hook's describe_processing_job or describe_training_job."""
        return getattr(self.hook, f"describe_{self.job_type.lower()}_job")

    def _describe(self, name: str) -> dict | None:
        try:
            return self._describe_job(name)
        except ClientError as error:
            if not_found(error):
                return None
            raise

    def _job_name(self, context) -> tuple[str, bool]:
        """(name, attach): a job an earlier try left running, or this try's (existing when the task resumed)."""
        status_key, try_number = f"{self.job_type}JobStatus", context["ti"].try_number
        for earlier in range(try_number - 1, 0, -1):
            name = run_name(self.kind, context, earlier)
            description = self._describe(name)
            if description and description[status_key] in RUNNING:
                self.log.info(
                    "try %s of this run left %s %s: waiting for it, not starting another",
                    earlier,
                    description[status_key],
                    name,
                )
                return name, True
        name = run_name(self.kind, context, try_number)
        description = self._describe(name)
        if description:
            self.log.info("job %s of this try exists (%s): waiting for it", name, description[status_key])
        return name, description is not None

    def execute(self, context):
        if (result := self.result_without_job(context)) is not None:
            self.log.info("this run needs no %s job: %s", self.kind, result)
            return result
        name, attach = self._job_name(context)
        self.config = self.build_config(context, name)
        if not attach:
            return self.summarize(context, super().execute(context))
        if self.deferrable:
            self.defer(
                trigger=SageMakerTrigger(
                    job_name=name,
                    job_type=self.job_type,
                    waiter_delay=self.check_interval,
                    waiter_max_attempts=self.max_attempts,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                ),
                method_name="execute_complete",
            )
        self.hook.check_status(
            name, f"{self.job_type}JobStatus", self._describe_job, self.check_interval, self.max_ingestion_time
        )
        return self.execute_complete(context, {"status": "success", "job_name": name})

    def execute_complete(self, context, event=None):
        if event and event.get("status") != "success":
            # The step names its exit code in the job's FailureReason (tasks.errors.failure_reason).
            message = str(event.get("message", ""))
            if (code := exit_code_in(message)) in NOT_RETRYABLE:
                raise step_failure(event.get("job_name") or self.kind, code, message)
        return self.summarize(context, super().execute_complete(context, event))


class StepProcessingOperator(_JobOfThisRun, SageMakerProcessingOperator):
    """A ``python -m tasks STEP`` processing job of this run, re-attached rather than duplicated on retry."""

    job_type = "Processing"


class StepTrainingOperator(_JobOfThisRun, SageMakerTrainingOperator):
    """The ``train`` training job of this run, re-attached rather than duplicated on retry."""

    job_type = "Training"


class _OncePerRun(SageMakerBaseOperator):
    """Create this run's ``kind`` (named per run) unless it exists: a retry reuses it."""

    kind: str
    resource: str  # the API's name for it: Model or EndpointConfig
    describe: str  # the hook's method that describes one

    def __init__(self, *, build_config: ConfigBuilder, **kwargs):
        super().__init__(config={}, **kwargs)
        self.build_config = build_config

    def execute(self, context):
        self.config = self.build_config(context, run_name(self.kind, context))
        try:
            return {self.resource: getattr(self.hook, self.describe)(self.config[f"{self.resource}Name"])}
        except ClientError as error:
            if not not_found(error):
                raise
        return super().execute(context)


class RunModelOperator(_OncePerRun, SageMakerModelOperator):
    """``CreateModel`` for this run's candidate."""

    kind, resource, describe = "model", "Model", "describe_model"


class RunEndpointConfigOperator(_OncePerRun, SageMakerEndpointConfigOperator):
    """``CreateEndpointConfig``: a new config per run (configs are immutable)."""

    kind, resource, describe = "config", "EndpointConfig", "describe_endpoint_config"


class VerifiedEndpointOperator(SageMakerEndpointOperator):
    """Create the endpoint, or update it blue/green; then check it serves the new config.

    ``build_config(context, endpoint_config_name)`` gives ``(endpoint name, DeploymentConfig)``. The config
    the endpoint ran before is pushed as XCom ``previous_config`` first, for ``rollback``.
    """

    def __init__(self, *, build_config: Callable[[dict, str], tuple[str, dict]], **kwargs):
        super().__init__(config={}, **kwargs)
        self.build_config = build_config

    def execute(self, context):
        new_config = run_name("config", context)
        endpoint, deployment = self.build_config(context, new_config)
        try:
            previous = self.hook.describe_endpoint(endpoint)["EndpointConfigName"]
        except ClientError as error:
            if not not_found(error):
                raise
            previous = None
        context["ti"].xcom_push(key="previous_config", value=previous)
        if previous == new_config:
            self.log.info("%s already serves %s (a retry after the switch)", endpoint, new_config)
            return self._verified(context, endpoint)
        self.operation = "update" if previous else "create"
        self.config = {"EndpointName": endpoint, "EndpointConfigName": new_config}
        if previous:
            self.config |= {"DeploymentConfig": deployment, "RetainDeploymentConfig": False}
        self.log.info("%s endpoint %s with %s (was %s)", self.operation, endpoint, new_config, previous)
        super().execute(context)
        return self._verified(context, endpoint)

    def execute_complete(self, context, event=None):
        super().execute_complete(context, event)
        return self._verified(context, event["job_name"])

    def _verified(self, context, endpoint: str) -> dict:
        expected = run_name("config", context)
        description = self.hook.describe_endpoint(endpoint)
        status, serving = description["EndpointStatus"], description["EndpointConfigName"]
        if status != "InService" or serving != expected:
            raise AirflowException(
                f"endpoint {endpoint} is {status} on {serving}, not on the new {expected}: SageMaker rolled the "
                f"update back (an auto-rollback alarm fired while baking, or the new fleet failed); "
                f"{description.get('FailureReason', 'no FailureReason given')}"
            )
        previous = context["ti"].xcom_pull(task_ids=self.task_id, key="previous_config")
        self.log.info("endpoint %s is InService on %s", endpoint, serving)
        return {"endpoint": endpoint, "config": serving, "previous_config": previous}


class RunModelVersionOperator(SageMakerRegisterModelVersionOperator):
    """Register this run's candidate in the model package group, once per run, and wait for its approval.

    ``build_extras(context)`` gives the package's inference specification, metrics and lineage. The status is
    ``approval``, or the run's ``model_approval`` Param when None. A package ``PendingManualApproval`` makes
    the task defer in steps of ``approval_poll`` until it is approved (returns) or rejected (skips the
    rollout), at most ``approval_timeout``.
    """

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
        self.package_desc = f"{context['dag'].dag_id} run {context['run_id']}"
        existing = [
            package for package in self._packages() if package.get("ModelPackageDescription") == self.package_desc
        ]
        if existing:
            arn = existing[0]["ModelPackageArn"]
            self.log.info("this run registered %s already: not adding another version", arn)
        else:
            self.extras = self.build_extras(context)
            arn = super().execute(context)
        return self._decided(arn)

    def _packages(self) -> list[dict]:
        try:
            listed = self.hook.conn.list_model_packages(ModelPackageGroupName=self.package_group_name)
        except ClientError as error:
            if not_found(error):
                return []
            raise
        return listed.get("ModelPackageSummaryList", [])

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
