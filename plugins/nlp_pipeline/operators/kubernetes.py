"""The cncf.kubernetes provider's operators for the nlp_eks pipeline, and the multi-worker training it lacks.

- ``StepPodOperator``: the provider's ``KubernetesPodOperator`` running ``python -m tasks STEP`` in a pod
  built when it runs (``specs.kubernetes.step_pod``, from the run's Params and Variables). The pod's log
  streams into the task log; the finished pod is deleted; a retry re-attaches to the pod an earlier try left
  running rather than starting a second one; it never defers (``StepPodOperator.__init__`` says why). The step's result
  comes back as the container's termination message (tasks/runtime/step_result.py), so Airflow never needs to reach
  the artefact store; a failed step's message is its log's last lines. A step that prints its result instead
  (``tune``: a plan of 32 trials or their tuning.json is more than the 4 KiB a termination message keeps) hands
  it back as the last JSON line of its log (``result_in_log``). Exit 2 (bad flag) or 3 (bad data)
  fails the task without a retry, as on the other platforms.
  A retry that finds its run's pod already succeeded (the worker died before reading it) takes that pod's
  result instead of running the step again, when that pod ran the same arguments (``same_inputs``).
- ``PlanPodOperator``: a step pod whose result a mapped task expands over (the tuning plan's trials).
- ``TrialPodOperator``: one trial of a hyper-parameter search, ``python -m tasks train`` of the trial's setting;
  mapped over the search's planned trials (``TrialPodOperator.partial(...).expand(trial=...)``), its pod named
  after its trial.
- ``TrainOperator``: the same for the train step with one worker; with more, a ``TrainingJob``: an Indexed Job
  under a headless Service (each worker builds its ``TF_CONFIG`` from its index), or a Kubeflow ``TFJob``
  (``training_backend``), named once per run so that a retry finds the job an earlier try started; watched
  until it succeeds or fails, the chief's log copied into the task log, then deleted with its pods.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import cached_property
from typing import Any, NamedTuple

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from kubernetes.client.exceptions import ApiException

from nlp_pipeline.artefacts import any_try
from nlp_pipeline.commands import flag
from nlp_pipeline.failures import step_failure
from nlp_pipeline.hooks.eks_access import ClusterAccess
from nlp_pipeline.params import INDEXED_JOB, TFJOB, TRAINING_BACKEND
from nlp_pipeline.specs.kubernetes import STEP_CONTAINER, TRAINING_CONTAINER, TRAINING_TIMEOUT_SECONDS
from tasks.errors import NOT_RETRYABLE

PodBuilder = Callable[[dict], dict]  # context -> the pod manifest
Summarizer = Callable[[dict, dict], dict]  # (context, the step's result) -> the task's XCom
# () -> a context giving the task's access to the cluster (eks.cluster_config): its hooks outlive one token
ClusterConfig = Callable[[], AbstractContextManager[ClusterAccess]]
OUTPUT_FLAG = flag("output")  # where every step writes
PRINTED_LINES = 50  # of a step's log, where its printed result is: it logs little after it (a quiet step)
DELETE_TIMEOUT_SECONDS = 300  # a training job's foreground deletion waits for its pods' grace periods
# What the Job controller puts on an Indexed Job's pods: the job's name (label), the pod's index (annotation).
JOB_NAME_LABEL, COMPLETION_INDEX = "batch.kubernetes.io/job-name", "batch.kubernetes.io/job-completion-index"


class NoPod(NamedTuple):
    """What a task returns when this run needs no pod of it (quantisation off, tuning off): its result, which
    may be None."""

    result: Any


def container_state(pod, container: str):
    """How ``container`` of a pod read from the API last ended: its ``terminated`` state, or while it waits to
    restart or runs again (``restartPolicy: OnFailure``, a crash loop) its ``lastState``; None before it ended."""
    for status in (pod.status and pod.status.container_statuses) or []:
        if status.name == container:
            current = status.state and status.state.terminated
            return current or (status.last_state and status.last_state.terminated) or None
    return None


def pod_failure(step: str, exit_code: int, message: str | None) -> AirflowException:
    """The step's failure, with its termination message (its log's last lines)."""
    return step_failure(step, exit_code, f"\n{message.rstrip()}" if message else "(no termination message)")


def container_args(containers, name: str) -> list[str] | None:
    """The args of container ``name`` (Python client objects or the API's JSON), None when there is none."""
    for container in containers or []:
        found = container.get("name") if isinstance(container, dict) else container.name
        if found == name:
            return list((container.get("args") if isinstance(container, dict) else container.args) or [])
    return None


def same_inputs(earlier: list[str] | None, request: list[str] | None) -> bool:
    """Whether an earlier try's container ran what this try would, its ``tryN-HASH`` output folder apart: only
    then may this try take its result (a retry after the run's inputs or Params changed runs again)."""
    return earlier is not None and request is not None and any_try(earlier) == any_try(request)


def check_tfjobs_served(hook: KubernetesHook) -> None:
    """Fail, not retried, when the cluster does not serve TFJobs: API discovery of ``kubeflow.org/v1`` must list
    ``tfjobs`` (Kubeflow Trainer v2 serves TrainJob only). stage_dataset checks it before the run's first pod
    (eks.py), the train task again before it creates anything."""
    group, version, plural = TFJob.GROUP, TFJob.VERSION, TFJob.PLURAL
    try:
        resources = hook.custom_object_client.get_api_resources(group, version).resources
    except ApiException as error:
        if error.status != 404:
            raise
        resources = []
    if not any(resource.name == plural for resource in resources):
        raise AirflowFailException(
            f"{TRAINING_BACKEND} {TFJOB!r} needs the Kubeflow Training Operator v1.9 ({group}/{version} "
            f"{plural}), which this cluster does not serve: install it (docs/eks.md, Cluster prerequisites) "
            f"or set {TRAINING_BACKEND} to {INDEXED_JOB!r}, which needs no operator"
        )


def step_result(step: str, message: str | None) -> dict:
    try:
        return json.loads(message or "")
    except ValueError:
        raise AirflowException(f"{step} succeeded but its termination message is not its result: {message!r}") from None


def read_log(core, name: str, namespace: str, container: str, tail_lines: int | None = None) -> str:
    """A container's log as text. Not the client's deserialised answer: that is ``str()`` of the bytes
    (``"b'...\\n...'"``) when the log is not one JSON document."""
    response = core.read_namespaced_pod_log(
        name, namespace, container=container, tail_lines=tail_lines, _preload_content=False
    )
    return response.data.decode(errors="replace")


def printed_result(step: str, log: str) -> dict:
    """The result a step printed as one JSON line on stdout (``python -m tasks tune``), its log's last JSON object:
    what it logs goes before it."""
    for line in reversed(log.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    raise AirflowException(f"{step} succeeded but its log ends with no result (a JSON line): {log[-500:]!r}")


class StepPodOperator(KubernetesPodOperator):
    """``python -m tasks STEP`` in a pod; the task's XCom is ``summarize(context, the step's result)``."""

    def __init__(
        self,
        *,
        step: str,
        build_pod: PodBuilder,
        summarize: Summarizer,
        cluster_config: ClusterConfig = lambda: nullcontext(ClusterAccess()),  # the Kubernetes connection alone
        result_without_pod: Callable[[dict], NoPod | None] = lambda context: None,
        result_in_log: bool = False,
        **kwargs,
    ):
        """``result_without_pod``: ``NoPod(the task's result)`` when this run needs no pod (quantisation off,
        tuning off), else None. ``result_in_log``: the step prints its result rather than writing a termination
        message; its ``output`` is then the folder its container was given (a retry may take an earlier try's pod).

        The pod is watched by the task itself, never by the triggerer: ``deferrable`` is False whatever
        ``[operators] default_deferrable`` says. The task's access to the cluster (``cluster_config``: with EKS, the
        provider's kubeconfig and the credentials file its exec plugin sources) is removed when ``execute`` returns,
        and only the task renews those credentials when the API says 401 (hooks/eks_access.py); a trigger would
        start from a kubeconfig whose credentials file is gone.
        """
        if kwargs.pop("deferrable", False):
            raise ValueError(
                f"{kwargs.get('task_id')}: deferrable=True is not supported, the pod is watched by the task (the "
                "cluster access it renews on a 401 ends with execute); leave deferrable unset"
            )
        kwargs.setdefault("name", f"nlp-{step}")
        super().__init__(
            termination_message_policy="FallbackToLogsOnError",
            get_logs=True,
            on_finish_action="delete_pod",
            do_xcom_push=False,  # no sidecar: the result is the termination message
            deferrable=False,
            **kwargs,
        )
        self.step, self.build_pod, self.summarize, self.cluster_config = step, build_pod, summarize, cluster_config
        self.result_without_pod, self.result_in_log = result_without_pod, result_in_log
        self.access = ClusterAccess()  # execute's, while it runs
        self.result = None  # the task's XCom, once the pod's result is read (cleanup)

    def execute(self, context):
        """Run the pod (or not: ``result_without_pod``) and return the task's XCom, which is pushed already."""
        if (without := self.result_without_pod(context)) is not None:
            self.log.info("this run needs no %s pod: %s", self.step, without.result)
            context["ti"].xcom_push(key="return_value", value=without.result)
            return without.result
        with self.cluster_config() as self.access:
            self.config_file = self.access.config_file or self.config_file
            super().execute(context)
        return self.result

    @cached_property
    def hook(self) -> KubernetesHook:
        """The provider's hook through the task's access: with EKS its client renews the credentials on a 401, so
        watching the pod, streaming its log and deleting it outlive the token (the provider's own 401 handling
        reloads the same frozen credentials)."""
        return self.access.hook(
            self.kubernetes_conn_id,
            config_file=self.config_file,
            in_cluster=self.in_cluster,
            cluster_context=self.cluster_context,
        )

    def build_pod_request_obj(self, context=None, *, dry_run: bool = False):
        if context is not None:
            self.pod_template_dict = self.build_pod(context)
        return super().build_pod_request_obj(context, dry_run=dry_run)

    def get_or_create_pod(self, pod_request_obj, context):
        """Take the pod of an earlier try of this run that already succeeded (the worker died before it read the
        result): the provider would delete it and run the step again. Its termination message is the result.
        Only a pod that ran the same inputs (``same_inputs``) is taken, or re-attached to while it runs; another
        is deleted and the step runs again. A taken pod is marked checked first, as the provider marks the pods
        it is done with, so that a later try never takes it again, even when deleting it fails."""
        if self.reattach_on_restart:
            found = self.find_pod(pod_request_obj.metadata.namespace, context=context)
            request = container_args(pod_request_obj.spec.containers, STEP_CONTAINER)
            if found is not None and not same_inputs(container_args(found.spec.containers, STEP_CONTAINER), request):
                self.log.info("pod %s of an earlier try ran other inputs: deleting it", found.metadata.name)
                self.patch_already_checked(found)
                self.pod_manager.delete_pod(found)
            elif found is not None and found.status and found.status.phase == "Succeeded":
                self.log.info("pod %s of an earlier try already succeeded: taking its result", found.metadata.name)
                self.patch_already_checked(found)
                return found
        return super().get_or_create_pod(pod_request_obj, context)

    def cleanup(self, pod, remote_pod, xcom_result=None, context=None) -> None:
        """Delete the pod as the provider does, then turn its termination message (or, ``result_in_log``, its
        printed result, read before the pod goes) into the result or error."""
        state = container_state(remote_pod, STEP_CONTAINER) if remote_pod else None
        printed = unread = None
        if state is not None and state.exit_code == 0:
            try:
                printed = self._printed_result(remote_pod)
            except (ApiException, AirflowException) as error:  # the pod is deleted all the same
                unread = error
        try:
            super().cleanup(pod, remote_pod, xcom_result, context)
        except AirflowException:
            if state is None:
                raise
            raise pod_failure(self.step, state.exit_code, state.message) from None
        if unread is not None:
            raise unread
        if state is not None and context is not None:
            result = printed if printed is not None else step_result(self.step, state.message)
            self.result = self.summarize(context, result)
            context["ti"].xcom_push(key="return_value", value=self.result)

    def _printed_result(self, remote_pod) -> dict | None:
        """The result the step printed, with the ``output`` its container was given; None unless ``result_in_log``."""
        if not self.result_in_log:
            return None
        metadata = remote_pod.metadata
        log = read_log(self.client, metadata.name, metadata.namespace, STEP_CONTAINER, PRINTED_LINES)
        arguments = container_args(remote_pod.spec.containers, STEP_CONTAINER) or []
        output = arguments[arguments.index(OUTPUT_FLAG) + 1] if OUTPUT_FLAG in arguments else None
        return {"output": output} | printed_result(self.step, log)


class PlanPodOperator(StepPodOperator):
    """A step pod whose result a mapped task expands over (``.expand(trial=plan.output)``): Airflow learns how many
    mapped tasks to create only from the XCom it pushes itself, ``execute``'s return value when ``do_xcom_push``
    is on (else the run fails with ``XComForMappingNotPushed``). The provider reads ``do_xcom_push`` as "add an
    XCom sidecar" instead; the result here is the termination message, so it is off while the pod is built and
    runs, and on when the task runner pushes the result."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.do_xcom_push = True

    @contextmanager
    def _without_sidecar(self) -> Iterator[None]:
        pushes, self.do_xcom_push = self.do_xcom_push, False
        try:
            yield
        finally:
            self.do_xcom_push = pushes

    def build_pod_request_obj(self, context=None, *, dry_run: bool = False):
        with self._without_sidecar():
            return super().build_pod_request_obj(context, dry_run=dry_run)

    def execute(self, context):
        with self._without_sidecar():
            return super().execute(context)


class TrialPodOperator(StepPodOperator):
    """One trial of a hyper-parameter search: the train step on ``trial``'s setting, in a pod named after the trial
    (``nlp-tune-trial-000-xxxxxxxx``); its XCom is the trial with the step's result. A task of
    ``TrialPodOperator.partial(...).expand(trial=the planned trials)``: each mapped task's pods carry its
    ``map_index`` label, so a retry re-attaches to its own trial's pod, never another's.

    A trial that cannot be scored does not fail the search: on bad input (exit 2 or 3), on its last try, or once
    the search's deadline passed (its pod is stopped there: ``activeDeadlineSeconds``), the task succeeds with
    the trial ``failed``, and ``tune select`` counts it so (it wrote no scores). Before that, a failure is raised
    and retried as any step's.

    :param trial: the planned trial, ``{"name", "setting"}`` (``tune plan``).
    :param build_trial_pod: ``(context, trial) -> the pod manifest``.
    :param seconds_left: ``context -> the seconds until the search's deadline`` (no trial starts after it).
    """

    def __init__(
        self,
        *,
        trial: dict,
        build_trial_pod: Callable[[dict, dict], dict],
        seconds_left: Callable[[dict], float],
        **kwargs,
    ):
        kwargs.setdefault("name", f"nlp-tune-{trial['name']}")
        super().__init__(
            step="train",
            build_pod=lambda context: build_trial_pod(context, trial),
            summarize=lambda context, result: trial | result,
            result_without_pod=lambda context: self._too_late(context),
            **kwargs,
        )
        self.trial, self.seconds_left = trial, seconds_left

    def execute(self, context):
        try:
            return super().execute(context)
        except Exception as error:
            ti, late = context["ti"], self.seconds_left(context) <= 0
            if ti.try_number <= ti.max_tries and not late and not isinstance(error, AirflowFailException):
                raise  # a retry may still score it
            why = "ran past the search's deadline" if late else f"failed on try {ti.try_number}"
            return self._failed(context, f"{why}: {error}")

    def _too_late(self, context) -> NoPod | None:
        if self.seconds_left(context) > 0:
            return None
        return NoPod(self._failed(context, "did not start: the search's deadline had passed", push=False))

    def _failed(self, context, reason: str, *, push: bool = True) -> dict:
        """The trial's result when it cannot be scored: ``failed``, with why."""
        self.log.error("%s %s; tune select counts it failed", self.trial["name"], reason)
        result = self.trial | {"status": "failed", "reason": reason}
        if push:
            context["ti"].xcom_push(key="return_value", value=result)
        return result


def worker_counts(status: dict) -> str:
    """How many workers are active, succeeded and failed, as a training job's status counts them."""
    return "workers " + ", ".join(f"{key} {status.get(key, 0)}" for key in ("active", "succeeded", "failed"))


class TrainingJob:
    """A multi-worker training the cluster runs, watched to its end; the chief's (worker 0's) result.

    Named once per run, so that a retry finds the job an earlier try started: one that completed on the same
    inputs (``same_inputs``) gives its result (nothing trains again), one still running on them is watched;
    one that failed, ran other inputs, or completed but lost its pods is deleted and started again. While it
    runs, a worker whose container exited 2 (bad flag) or 3 (bad data), now or in its last state before a
    restart, fails the task at once without a retry; a worker still Pending after ``startup_timeout_seconds``
    (no node can take it), or a worker the cluster did not create in that time (admission refused it: Pod
    Security, a quota, a missing service account; the job's FailedCreate events say why), fails it as a single
    pod's startup timeout does. The job is deleted with its pods when the wait ends, also when creating it
    failed, and by ``remove`` when the task is killed; ``killed`` says the task was killed before it started
    the job, which it then never creates. Subclasses say how their kind is created, read and deleted.
    """

    kind = ""

    def __init__(
        self,
        hook: KubernetesHook,
        log,
        *,
        poll_interval: float,
        timeout_seconds: float,
        startup_timeout_seconds: float,
        killed: Callable[[], bool] = lambda: False,
    ):
        self.hook, self.log, self.poll_interval, self.killed = hook, log, poll_interval, killed
        self.timeout_seconds, self.startup_timeout_seconds = timeout_seconds, startup_timeout_seconds
        self.running: tuple[str, str] | None = None  # (name, namespace) of the job while ``run`` watches it

    # ---- what each kind says --------------------------------------------------------------------------------
    def check_served(self) -> None:
        """Fail before anything is created when the cluster cannot run this kind."""

    def read(self, name: str, namespace: str) -> dict | None:
        raise NotImplementedError

    @staticmethod
    def template(job: dict) -> dict:
        """The workers' pod template."""
        raise NotImplementedError

    def create(self, manifests: list[dict]) -> None:
        raise NotImplementedError

    def outcome(self, job: dict) -> tuple[str, str] | None:
        """(``Succeeded`` or ``Failed``, why) once the job ended, else None."""
        raise NotImplementedError

    def progress(self, job: dict) -> str:
        raise NotImplementedError

    def pods(self, name: str, namespace: str) -> list:
        raise NotImplementedError

    def chief(self, pods: list, name: str):
        """Worker 0's pod (the one that succeeded, when there are several), or None."""
        raise NotImplementedError

    def remove(self, name: str, namespace: str) -> None:
        """Ask the API server to delete the job with its pods (and what goes with it); a missing one is fine."""
        raise NotImplementedError

    # ---- the run ------------------------------------------------------------------------------------------
    def run(self, manifests: list[dict]) -> dict:
        job = manifests[-1]
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        self.check_served()
        found = self.read(name, namespace)
        if found is not None and (why := self._not_reusable(found, job)):
            self.log.info("%s %s/%s of an earlier try %s: deleting it to start again", self.kind, namespace, name, why)
            self.delete(name, namespace)
            found = None
        self.running = (name, namespace)
        try:
            if found is None:
                self._check_killed(name, namespace)
                self.create(manifests)
                self._check_killed(name, namespace)  # killed while it was created: the finally deletes it
                self.log.info("created %s %s/%s of %s workers", self.kind, namespace, name, self.workers(job))
            else:
                self.log.info(
                    "re-attached to %s %s/%s, which an earlier try of this run started", self.kind, namespace, name
                )
            outcome = self._wait(name, namespace, self.workers(job))
            return self._result(name, namespace, outcome)
        finally:
            self.running = None
            self.delete(name, namespace)

    def _check_killed(self, name: str, namespace: str) -> None:
        if self.killed():
            raise AirflowException(f"the task was killed before it started {self.kind} {namespace}/{name}")

    def _not_reusable(self, found: dict, job: dict) -> str | None:
        """Why the job an earlier try left cannot give this try's result (None: it can, or can be watched)."""
        earlier = container_args(self.template(found)["spec"]["containers"], TRAINING_CONTAINER)
        if not same_inputs(earlier, container_args(self.template(job)["spec"]["containers"], TRAINING_CONTAINER)):
            return "ran other inputs"
        ended = self.outcome(found)
        if ended and ended[0] == "Failed":
            return "failed"
        name, namespace = found["metadata"]["name"], found["metadata"]["namespace"]
        if ended and self.chief(self.pods(name, namespace), name) is None:
            return "completed, but its pods and their result are gone"
        return None

    @staticmethod
    def workers(job: dict) -> int:
        spec = job["spec"]
        return spec["completions"] if "completions" in spec else spec["tfReplicaSpecs"]["Worker"]["replicas"]

    def _wait(self, name: str, namespace: str, workers: int) -> tuple[str, str]:
        started, pending = time.monotonic(), {}
        while True:
            job = self.read(name, namespace)
            if job is None:
                raise AirflowException(f"{self.kind} {namespace}/{name} was deleted while it ran")
            pods = self.pods(name, namespace)
            self._check_workers(pods, pending)
            self._check_created(name, namespace, len(pods), workers, pending)
            outcome = self.outcome(job)
            elapsed = time.monotonic() - started
            self.log.info(
                "%s %s: %s; %s; %.0f s",
                self.kind,
                name,
                outcome[0] if outcome else "running",
                self.progress(job),
                elapsed,
            )
            if outcome:
                return outcome
            if elapsed > self.timeout_seconds:
                raise AirflowException(f"{self.kind} {namespace}/{name} did not finish in {self.timeout_seconds:.0f} s")
            time.sleep(self.poll_interval)

    def _check_workers(self, pods: list, pending: dict[str, float]) -> None:
        """Bad input fails at once (no retry); a worker Pending past the startup timeout fails (retried)."""
        for pod in pods:
            state = container_state(pod, TRAINING_CONTAINER)
            if state is not None and state.exit_code in NOT_RETRYABLE:
                raise pod_failure("train", state.exit_code, state.message)
            if pod.status.phase != "Pending":
                pending.pop(pod.metadata.name, None)
                continue
            waited = time.monotonic() - pending.setdefault(pod.metadata.name, time.monotonic())
            if waited > self.startup_timeout_seconds:
                scheduled = next((c for c in pod.status.conditions or [] if c.type == "PodScheduled"), None)
                why = (
                    f"{scheduled.reason}: {scheduled.message}"
                    if scheduled is not None and scheduled.status == "False" and scheduled.reason
                    else "its container did not start"
                )
                raise AirflowException(
                    f"training worker {pod.metadata.namespace}/{pod.metadata.name} did not start in "
                    f"{self.startup_timeout_seconds:.0f} s ({why})"
                )

    def _check_created(self, name: str, namespace: str, created: int, workers: int, pending: dict[str, float]) -> None:
        """Fewer pods than workers past the startup timeout: the cluster refuses to create the others, and only
        the job's FailedCreate events say why (no pod is Pending). Retried, as a worker Pending too long is."""
        if created >= workers:
            pending.pop(name, None)
            return
        waited = time.monotonic() - pending.setdefault(name, time.monotonic())
        if waited <= self.startup_timeout_seconds:
            return
        selector = f"involvedObject.kind={self.kind},involvedObject.name={name},reason=FailedCreate,type=Warning"
        events = self.hook.core_v1_client.list_namespaced_event(namespace, field_selector=selector).items
        why = "; ".join(dict.fromkeys(event.message for event in events)) or "no FailedCreate event says why"
        raise AirflowException(
            f"{self.kind} {namespace}/{name}: the cluster created {created} of {workers} workers in "
            f"{self.startup_timeout_seconds:.0f} s ({why})"
        )

    def _result(self, name: str, namespace: str, outcome: tuple[str, str]) -> dict:
        pods = self.pods(name, namespace)
        chief = self.chief(pods, name)
        if chief is not None:
            log = read_log(self.hook.core_v1_client, chief.metadata.name, namespace, TRAINING_CONTAINER)
            for line in log.splitlines():
                self.log.info("[worker-0] %s", line)
        state = container_state(chief, TRAINING_CONTAINER) if chief is not None else None
        if outcome[0] == "Succeeded" and state is not None and state.exit_code == 0:
            return step_result("train", state.message)
        failed = [found for pod in pods if (found := container_state(pod, TRAINING_CONTAINER)) and found.exit_code]
        if failed:
            worst = next((found for found in failed if found.exit_code in NOT_RETRYABLE), failed[0])
            raise pod_failure("train", worst.exit_code, worst.message)
        raise AirflowException(f"{self.kind} {namespace}/{name} failed: {outcome[1]}")

    def delete(self, name: str, namespace: str) -> None:
        """Delete the job and wait until it is gone (foreground: its pods go first)."""
        self.remove(name, namespace)
        deadline = time.monotonic() + DELETE_TIMEOUT_SECONDS
        while self.read(name, namespace) is not None:
            if time.monotonic() > deadline:
                self.log.warning(
                    "%s %s/%s is still being deleted after %d s; going on",
                    self.kind,
                    namespace,
                    name,
                    DELETE_TIMEOUT_SECONDS,
                )
                return
            time.sleep(min(self.poll_interval, 2))


def _missing_is_fine(delete: Callable[[], object]) -> None:
    try:
        delete()
    except ApiException as error:
        if error.status != 404:
            raise


class IndexedTrainingJob(TrainingJob):
    """A ``batch/v1`` Indexed Job and the headless Service that names its pods (stock Kubernetes)."""

    kind = "Job"

    def read(self, name: str, namespace: str) -> dict | None:
        try:
            job = self.hook.batch_v1_client.read_namespaced_job(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self.hook.api_client.sanitize_for_serialization(job)

    @staticmethod
    def template(job: dict) -> dict:
        return job["spec"]["template"]

    def create(self, manifests: list[dict]) -> None:
        service, job = manifests
        try:
            self.hook.core_v1_client.create_namespaced_service(service["metadata"]["namespace"], service)
        except ApiException as error:
            if error.status != 409:  # an earlier try's, left behind: the same selector and port
                raise
        self.hook.batch_v1_client.create_namespaced_job(job["metadata"]["namespace"], job)

    def outcome(self, job: dict) -> tuple[str, str] | None:
        ended = {"Complete": "Succeeded", "Failed": "Failed"}
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") in ended and condition.get("status") == "True":
                why = f"{condition.get('reason')}: {condition.get('message')}"
                return ended[condition["type"]], why
        return None

    def progress(self, job: dict) -> str:
        return worker_counts(job.get("status") or {})

    def pods(self, name: str, namespace: str) -> list:
        selector = f"{JOB_NAME_LABEL}={name}"
        return self.hook.core_v1_client.list_namespaced_pod(namespace, label_selector=selector).items

    def chief(self, pods: list, name: str):
        chiefs = [pod for pod in pods if (pod.metadata.annotations or {}).get(COMPLETION_INDEX) == "0"]
        chiefs.sort(key=lambda pod: (pod.status.phase == "Succeeded", pod.metadata.creation_timestamp or 0))
        return chiefs[-1] if chiefs else None

    def remove(self, name: str, namespace: str) -> None:
        # Foreground: the API's default for a Job orphans its pods, which would go on training.
        batch, core = self.hook.batch_v1_client, self.hook.core_v1_client
        _missing_is_fine(lambda: batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground"))
        _missing_is_fine(lambda: core.delete_namespaced_service(name, namespace))


class TFJob(TrainingJob):
    """A Kubeflow ``TFJob`` (Training Operator v1.9), when the cluster serves it."""

    kind = "TFJob"
    GROUP, VERSION, PLURAL = "kubeflow.org", "v1", "tfjobs"

    def check_served(self) -> None:
        check_tfjobs_served(self.hook)

    @staticmethod
    def template(job: dict) -> dict:
        return job["spec"]["tfReplicaSpecs"]["Worker"]["template"]

    def read(self, name: str, namespace: str) -> dict | None:
        try:
            return self.hook.get_custom_object(
                group=self.GROUP, version=self.VERSION, plural=self.PLURAL, name=name, namespace=namespace
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create(self, manifests: list[dict]) -> None:
        [job] = manifests
        self.hook.create_custom_object(
            group=self.GROUP, version=self.VERSION, plural=self.PLURAL, body=job, namespace=job["metadata"]["namespace"]
        )

    def outcome(self, job: dict) -> tuple[str, str] | None:
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") in ("Succeeded", "Failed") and condition.get("status") == "True":
                return condition["type"], f"{condition.get('reason')}: {condition.get('message')}"
        return None

    def progress(self, job: dict) -> str:
        return worker_counts(((job.get("status") or {}).get("replicaStatuses") or {}).get("Worker", {}))

    def pods(self, name: str, namespace: str) -> list:
        selector = f"training.kubeflow.org/job-name={name}"
        return self.hook.core_v1_client.list_namespaced_pod(namespace, label_selector=selector).items

    def chief(self, pods: list, name: str):
        return next((pod for pod in pods if pod.metadata.name == f"{name}-worker-0"), None)

    def remove(self, name: str, namespace: str) -> None:
        custom = self.hook.custom_object_client
        _missing_is_fine(
            lambda: custom.delete_namespaced_custom_object(
                self.GROUP, self.VERSION, namespace, self.PLURAL, name, propagation_policy="Foreground"
            )
        )


class TrainOperator(StepPodOperator):
    """The train step: one pod for one worker; with more, the objects ``build_job(context)`` gives (a headless
    Service and an Indexed Job, or a TFJob), run by ``TrainingJob``. Killing the task deletes the whole job."""

    RUNNERS = {"Job": IndexedTrainingJob, "TFJob": TFJob}  # the job's kind -> what runs it

    def __init__(
        self,
        *,
        build_job: Callable[[dict], list[dict]],
        workers: Callable[[dict], int],
        job_poll_interval: float = 30,
        job_timeout_seconds: float = TRAINING_TIMEOUT_SECONDS,
        **kwargs,
    ):
        super().__init__(step="train", **kwargs)
        self.build_job, self.workers = build_job, workers
        self.job_poll_interval, self.job_timeout_seconds = job_poll_interval, job_timeout_seconds
        self.training: TrainingJob | None = None

    def execute(self, context):
        if self.workers(context) == 1:
            return super().execute(context)
        manifests = self.build_job(context)
        with self.cluster_config() as access:
            self.training = self.RUNNERS[manifests[-1]["kind"]](
                access.hook(self.kubernetes_conn_id),
                self.log,
                poll_interval=self.job_poll_interval,
                timeout_seconds=self.job_timeout_seconds,
                startup_timeout_seconds=self.startup_timeout_seconds,
                killed=lambda: self._killed,
            )
            result = self.training.run(manifests)
        context["ti"].xcom_push(key="return_value", value=self.summarize(context, result))

    def on_kill(self) -> None:
        running = self.training and self.training.running
        if not running:
            super().on_kill()
            return
        self.log.info(
            "the task was killed: deleting %s %s/%s with its pods", self.training.kind, running[1], running[0]
        )
        self.training.remove(*running)
