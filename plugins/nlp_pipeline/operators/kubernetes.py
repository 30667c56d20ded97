"""The cncf.kubernetes provider's operators for the nlp_eks pipeline, and the Kubeflow TFJob it lacks.

- ``StepPodOperator``: the provider's ``KubernetesPodOperator`` running ``python -m tasks STEP`` in a pod
  built when it runs (``specs.kubernetes.step_pod``, from the run's Params and Variables). The pod's log
  streams into the task log; the finished pod is deleted; a retry re-attaches to the pod an earlier try left
  running rather than starting a second one; ``deferrable=True`` waits in the triggerer. The step's result
  comes back as the container's termination message (tasks/runtime/step_result.py), so Airflow never needs to reach
  the artefact store; a failed step's message is its log's last lines. Exit 2 (bad flag) or 3 (bad data)
  fails the task without a retry, as on the other platforms.
- ``TrainOperator``: the same for the train step with one worker; with more, a Kubeflow ``TFJob`` (the
  training operator gives each worker its ``TF_CONFIG``), named once per run so that a retry finds the job an
  earlier try started; watched until it succeeds or fails, the chief's log copied into the task log, then
  deleted with its pods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException
from kubernetes.client.exceptions import ApiException

from nlp_pipeline.failures import step_failure
from nlp_pipeline.specs.kubernetes import STEP_CONTAINER

PodBuilder = Callable[[dict], dict]  # context -> the pod (or TFJob) manifest
Summarizer = Callable[[dict, dict], dict]  # (context, the step's result) -> the task's XCom
# () -> a context giving the kubeconfig to use, or None for the Kubernetes connection alone (eks.cluster_config)
ClusterConfig = Callable[[], AbstractContextManager[str | None]]
DELETE_TIMEOUT_SECONDS = 300  # a TFJob's foreground deletion waits for its pods' grace periods


def container_state(pod, container: str):
    """The ``terminated`` state of ``container`` in a pod read from the API, or None while it runs."""
    for status in (pod.status and pod.status.container_statuses) or []:
        if status.name == container and status.state and status.state.terminated:
            return status.state.terminated
    return None


def pod_failure(step: str, exit_code: int, message: str | None) -> AirflowException:
    """The step's failure, with its termination message (its log's last lines)."""
    return step_failure(step, exit_code, f"\n{message.rstrip()}" if message else "(no termination message)")


def step_result(step: str, message: str | None) -> dict:
    try:
        return json.loads(message or "")
    except ValueError:
        raise AirflowException(f"{step} succeeded but its termination message is not its result: {message!r}") from None


class StepPodOperator(KubernetesPodOperator):
    """``python -m tasks STEP`` in a pod; the task's XCom is ``summarize(context, the step's result)``."""

    def __init__(
        self,
        *,
        step: str,
        build_pod: PodBuilder,
        summarize: Summarizer,
        cluster_config: ClusterConfig = nullcontext,
        result_without_pod: Callable[[dict], dict | None] = lambda context: None,
        **kwargs,
    ):
        """``result_without_pod``: the task's result when this run needs no pod (quantisation off), else None."""
        kwargs.setdefault("name", f"nlp-{step}")
        super().__init__(
            termination_message_policy="FallbackToLogsOnError",
            get_logs=True,
            on_finish_action="delete_pod",
            do_xcom_push=False,  # no sidecar: the result is the termination message
            **kwargs,
        )
        self.step, self.build_pod, self.summarize, self.cluster_config = step, build_pod, summarize, cluster_config
        self.result_without_pod = result_without_pod

    def execute(self, context):
        if (result := self.result_without_pod(context)) is not None:
            self.log.info("this run needs no %s pod: %s", self.step, result)
            context["ti"].xcom_push(key="return_value", value=result)
            return result
        with self.cluster_config() as config_file:
            self.config_file = config_file or self.config_file
            return super().execute(context)

    def trigger_reentry(self, context, event):
        with self.cluster_config() as config_file:
            self.config_file = config_file or self.config_file
            return super().trigger_reentry(context, event)

    def build_pod_request_obj(self, context=None, *, dry_run: bool = False):
        if context is not None:
            self.pod_template_dict = self.build_pod(context)
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None) -> None:
        """Delete the pod as the provider does, then turn its termination message into the result or error."""
        state = container_state(remote_pod, STEP_CONTAINER) if remote_pod else None
        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowException:
            if state is None:
                raise
            raise pod_failure(self.step, state.exit_code, state.message) from None
        if state is not None and context is not None:
            result = self.summarize(context, step_result(self.step, state.message))
            context["ti"].xcom_push(key="return_value", value=result)


class TFJob:
    """Run a Kubeflow TFJob to completion and return the chief's (worker 0's) result."""

    GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"

    def __init__(self, hook: KubernetesHook, log, *, poll_interval: float, timeout_seconds: float):
        self.hook, self.log, self.poll_interval, self.timeout_seconds = hook, log, poll_interval, timeout_seconds

    def _object(self, name: str, namespace: str) -> dict | None:
        try:
            return self.hook.get_custom_object(
                group=self.GROUP, version=self.VERSION, plural=self.PLURAL, name=name, namespace=namespace
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    @staticmethod
    def outcome(job: dict) -> str | None:
        """``Succeeded`` or ``Failed`` once the training operator says so, else None."""
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
                return condition["type"]
        return None

    def _delete(self, name: str, namespace: str) -> None:
        try:
            self.hook.custom_object_client.delete_namespaced_custom_object(
                self.GROUP, self.VERSION, namespace, self.PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as error:
            if error.status != 404:
                raise
        deadline = time.monotonic() + DELETE_TIMEOUT_SECONDS
        while self._object(name, namespace) is not None:
            if time.monotonic() > deadline:
                self.log.warning(
                    "TFJob %s/%s is still being deleted after %d s; going on", namespace, name, DELETE_TIMEOUT_SECONDS
                )
                return
            time.sleep(min(self.poll_interval, 2))

    def run(self, job: dict) -> dict:
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        found = self._object(name, namespace)
        if found is not None and self.outcome(found) == "Failed":
            self.log.info("TFJob %s/%s of an earlier try failed: deleting it to start again", namespace, name)
            self._delete(name, namespace)
            found = None
        if found is None:
            self.hook.create_custom_object(
                group=self.GROUP, version=self.VERSION, plural=self.PLURAL, body=job, namespace=namespace
            )
            self.log.info(
                "created TFJob %s/%s with %d workers",
                namespace,
                name,
                job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"],
            )
        else:
            self.log.info("re-attached to TFJob %s/%s, which an earlier try of this run started", namespace, name)
        try:
            outcome = self._wait(name, namespace)
            core = self.hook.core_v1_client
            chief = core.read_namespaced_pod(f"{name}-worker-0", namespace)
            for line in core.read_namespaced_pod_log(
                chief.metadata.name, namespace, container="tensorflow"
            ).splitlines():
                self.log.info("[worker-0] %s", line)
            state = container_state(chief, "tensorflow")
            if outcome == "Failed" or state is None or state.exit_code != 0:
                raise pod_failure("train", state.exit_code if state else -1, state.message if state else None)
            return step_result("train", state.message)
        finally:
            self._delete(name, namespace)

    def _wait(self, name: str, namespace: str) -> str:
        started = time.monotonic()
        while True:
            job = self._object(name, namespace)
            if job is None:
                raise AirflowException(f"TFJob {namespace}/{name} disappeared while it ran")
            outcome = self.outcome(job)
            replicas = ((job.get("status") or {}).get("replicaStatuses") or {}).get("Worker", {})
            elapsed = time.monotonic() - started
            self.log.info(
                "TFJob %s: %s; workers active %s, succeeded %s, failed %s; %.0f s",
                name,
                outcome or "running",
                replicas.get("active", 0),
                replicas.get("succeeded", 0),
                replicas.get("failed", 0),
                elapsed,
            )
            if outcome:
                return outcome
            if elapsed > self.timeout_seconds:
                raise AirflowException(f"TFJob {namespace}/{name} did not finish in {self.timeout_seconds:.0f} s")
            time.sleep(self.poll_interval)


class TrainOperator(StepPodOperator):
    """The train step: one pod for one worker, a TFJob (``build_tfjob``) when ``workers(context)`` is more."""

    def __init__(
        self,
        *,
        build_tfjob: PodBuilder,
        workers: Callable[[dict], int],
        tfjob_poll_interval: float = 30,
        tfjob_timeout_seconds: float = 24 * 3600,
        **kwargs,
    ):
        super().__init__(step="train", **kwargs)
        self.build_tfjob, self.workers = build_tfjob, workers
        self.tfjob_poll_interval, self.tfjob_timeout_seconds = tfjob_poll_interval, tfjob_timeout_seconds

    def execute(self, context):
        if self.workers(context) == 1:
            return super().execute(context)
        with self.cluster_config() as config_file:
            tfjob = TFJob(
                KubernetesHook(conn_id=self.kubernetes_conn_id, config_file=config_file),
                self.log,
                poll_interval=self.tfjob_poll_interval,
                timeout_seconds=self.tfjob_timeout_seconds,
            )
            result = tfjob.run(self.build_tfjob(context))
        context["ti"].xcom_push(key="return_value", value=self.summarize(context, result))
