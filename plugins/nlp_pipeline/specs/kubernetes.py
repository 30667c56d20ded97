"""The Kubernetes objects of the nlp_eks pipeline, as the JSON the API server takes (camelCase, not the
Python client's snake_case), from plain values, so each can be validated against the Kubernetes schema.

- ``step_container``: the task image running ``python -m tasks STEP``, with CPU/memory requests and limits,
  ``OMP_NUM_THREADS`` from the container's CPU limit (the step sizes its thread pools from the cgroup quota
  too), and the artefact volume when there is one;
- ``intel_placement``: node affinity on Node Feature Discovery labels (AVX-512 VNNI, AMX, ...) and the
  tolerations of a dedicated Intel node group;
- the inference server: ``inference_deployment`` (readiness and liveness on ``/ping``, a rolling update that
  never takes a serving pod away first, a ``preStop`` pause while endpoints drop the pod, then the server's own
  drain within the termination grace; its own read-only service account and a read-only model mount; with
  capture on, the capture folder: on the volume its own writable mount, on S3 a staging folder),
  ``inference_service``, ``pod_disruption_budget`` and an optional ``horizontal_pod_autoscaler``;
- ``smoke_pod``: a short pod of the task image that calls the Service from inside the cluster.
- ``monitor_pod``: the monitor DAG's step pod, small and on any node.
- multi-worker training (``Training``): an ``indexed_job`` under a ``headless_service`` (stock Kubernetes), or
  a Kubeflow ``tf_job`` (Training Operator v1).

Every pod passes Pod Security "restricted" (``POD_SECURITY``, ``CONTAINER_SECURITY``): non-root, the runtime's
default seccomp profile, no privilege escalation, all capabilities dropped; its volumes are the artefact claim
and, for a server capturing to S3, an ``emptyDir``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from nlp_pipeline import artefacts, commands
from tasks.config import CAPTURE_DEFAULTS, ServeArguments
from tasks.errors import NOT_RETRYABLE
from tasks.runtime.indexed_job import ADDRESSES_ENV, WORKER_PORT

APP_LABEL = "app.kubernetes.io/name"
PART_LABEL = "app.kubernetes.io/part-of"
SERVER_PORT = 8080
# A terminating server pod keeps serving this long before it gets SIGTERM: the time for the endpoints
# controller, every node's kube-proxy and a load balancer to stop sending it new requests.
PRE_STOP_SECONDS = 10
# Then the server drains in-flight requests after SIGTERM (``serve --graceful-timeout``); Kubernetes waits
# for both, and a margin, before it kills the container.
TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + int(ServeArguments.graceful_timeout) + 5
RUN_AS_USER = 1000  # the task image's user (docker/task/Dockerfile)
# Pod Security "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards), pod and container;
# the container's alone passes, so a pod template built elsewhere around ``step_container`` passes too.
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CAPTURE_DIR = "capture_dir"  # serve's flag (tasks/config.py ServeArguments) naming the capture root
# Where a server capturing to S3 stages each capture file until it is closed and uploaded (tasks/serving/capture.py:
# a tempfile folder, /tmp as the task image sets no TMPDIR): an emptyDir, so staging never depends on the image's
# filesystem being writable.
CAPTURE_STAGING = "/tmp"
SMOKE_RESOURCES_CPU, SMOKE_RESOURCES_MEMORY = "1", "512Mi"  # an HTTP client: small
SMOKE_DEADLINE_SECONDS = 300  # the smoke pod is stopped after this, whatever it waits for
# The monitor step reads a window of capture into a few arrays and counts: one core, no CPU feature to ask for.
MONITOR_RESOURCES = ("1", "2Gi")
# A step writes its result here (tasks/runtime/step_result.py); the API server shows it as the termination message.
# A failed step writes nothing, so Kubernetes shows the log's last lines instead (FallbackToLogsOnError).
TERMINATION_LOG = "/dev/termination-log"
STEP_CONTAINER = "base"  # the KubernetesPodOperator's name for the container it follows
TRAINING_CONTAINER = "tensorflow"  # a TFJob's operator sets TF_CONFIG only in the container of this name
# A training job runs at most this long, whether the task watches it (its wait's timeout) or nobody does any
# more (the cluster stops it: activeDeadlineSeconds).
TRAINING_TIMEOUT_SECONDS = 24 * 3600
# A finished training job (and its pods, with the chief's result) is garbage-collected this long after it
# ended: far above Airflow's retry delay (pipeline.DEFAULT_ARGS: at most 10 min, plus the minutes before a
# lost worker's task is failed), so a retry still finds a completed job to take its result, yet a job whose
# DAG never came back does not stay for ever.
TRAINING_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "2"
    cpu_limit: str = "4"
    memory_request: str = "4Gi"
    memory_limit: str = "8Gi"

    def as_json(self) -> dict:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True)
class Placement:
    """Which nodes a pod may run on: all ``node_features`` (NFD label names, value ``true``) and tolerations."""

    node_features: tuple[str, ...] = ("feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI",)
    tolerations: tuple[dict, ...] = field(default_factory=tuple)


def image_pull_policy(image: str) -> str:
    """``IfNotPresent`` for an image pinned by digest or a version tag (a node's copy is those bytes);
    ``Always`` for ``:latest`` or no tag, which move (what Kubernetes would default to, said explicitly)."""
    if "@" in image:
        return "IfNotPresent"
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def labels(component: str) -> dict[str, str]:
    return {APP_LABEL: component, PART_LABEL: "nlp-pipeline"}


def intel_placement(placement: Placement) -> dict:
    """The pod-spec fields that put a pod on an Intel node with the CPU features the models need."""
    spec: dict = {}
    if placement.node_features:
        expressions = [{"key": feature, "operator": "In", "values": ["true"]} for feature in placement.node_features]
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": expressions}]
                }
            }
        }
    if placement.tolerations:
        spec["tolerations"] = list(placement.tolerations)
    return spec


def step_container(
    name: str,
    image: str,
    arguments: list[str],
    resources: Resources,
    *,
    env: dict[str, str] | None = None,
    volume_claim: str | None = None,
    mount_path: str = "/artefacts",
    read_only: bool = False,
) -> dict:
    """The task image running ``python -m tasks ARGUMENTS`` (its entrypoint maps the arguments); the
    artefact volume mounted ``read_only`` for a pod that only reads models."""
    container = {
        "name": name,
        "image": image,
        "imagePullPolicy": image_pull_policy(image),
        "args": arguments,
        "resources": resources.as_json(),
        "env": [
            {
                "name": "OMP_NUM_THREADS",
                "valueFrom": {"resourceFieldRef": {"containerName": name, "resource": "limits.cpu", "divisor": "1"}},
            },
            {"name": "TF_USE_LEGACY_KERAS", "value": "1"},
            {"name": "TASKS_RESULT_FILE", "value": TERMINATION_LOG},
            *({"name": key, "value": value} for key, value in sorted((env or {}).items())),
        ],
        "securityContext": copy.deepcopy(CONTAINER_SECURITY),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if volume_claim:
        container["volumeMounts"] = [
            {"name": "artefacts", "mountPath": mount_path} | ({"readOnly": True} if read_only else {})
        ]
    return container


def artefact_volumes(volume_claim: str | None) -> list[dict]:
    return [{"name": "artefacts", "persistentVolumeClaim": {"claimName": volume_claim}}] if volume_claim else []


def step_pod(
    namespace: str,
    image: str,
    arguments: list[str],
    *,
    resources: Resources,
    placement: Placement,
    service_account: str,
    volume_claim: str | None = None,
    mount_path: str = "/artefacts",
) -> dict:
    """One run of a step: the pod the KubernetesPodOperator starts (it adds its name and run labels)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": namespace, "labels": labels("nlp-step")},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": service_account,
            "securityContext": copy.deepcopy(POD_SECURITY),
            "containers": [
                step_container(
                    STEP_CONTAINER, image, arguments, resources, volume_claim=volume_claim, mount_path=mount_path
                )
            ],
            "volumes": artefact_volumes(volume_claim),
        }
        | intel_placement(placement),
    }


def inference_deployment(
    name: str,
    namespace: str,
    image: str,
    model_uri: str,
    *,
    replicas: int,
    resources: Resources,
    placement: Placement,
    service_account: str,
    volume_claim: str | None = None,
    mount_path: str = "/artefacts",
    model_digest: str | None = None,
    capture: Mapping[str, object] | None = None,
) -> dict:
    """The inference server serving ``model_uri``; a new URI rolls out pod by pod, none taken away first.
    With ``model_digest`` (the registry entry's), the server refuses a model whose bytes are not those.
    ``service_account``: the serving identity, which only reads models (no API token is mounted).
    ``capture``: serve's capture flags (``commands.capture_flags``; empty: no capture), whose folder the server
    can write (``capture_storage``) while the model stays read-only."""
    capture = dict(capture or {})
    container = step_container(
        "server",
        image,
        commands.command("serve", {}, model=model_uri, host="0.0.0.0", model_digest=model_digest, **capture),
        resources,
        volume_claim=volume_claim,
        mount_path=mount_path,
        read_only=True,
    )
    capture_mounts, capture_volumes = capture_storage(str(capture.get(CAPTURE_DIR) or ""), volume_claim, mount_path)
    if capture_mounts:
        container["volumeMounts"] = container.get("volumeMounts", []) + capture_mounts
    container["ports"] = [{"name": "http", "containerPort": SERVER_PORT}]
    # SIGTERM only after the endpoints stopped sending requests here; then the server drains its own.
    container["lifecycle"] = {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}}
    probe = {"httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2}
    # /ping is 503 until the model is loaded and warmed: ready then; alive unless it stays down for a minute.
    container["readinessProbe"] = probe | {"failureThreshold": 2}
    container["startupProbe"] = probe | {"failureThreshold": 120}
    container["livenessProbe"] = probe | {"periodSeconds": 10, "failureThreshold": 6}
    pod_labels = labels(name)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": pod_labels},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": pod_labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "progressDeadlineSeconds": 900,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {"nlp.pipeline/model-uri": model_uri}},
                "spec": {
                    "serviceAccountName": service_account,
                    "automountServiceAccountToken": False,
                    "securityContext": copy.deepcopy(POD_SECURITY),
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "containers": [container],
                    "volumes": artefact_volumes(volume_claim) + capture_volumes,
                }
                | intel_placement(placement),
            },
        },
    }


def served_capture(deployment: Mapping | None) -> dict:
    """The capture flags the Deployment's server runs with, read back from its ``serve`` args as
    ``inference_deployment`` wrote them (a bool is a switch; a flag left out has serve's default,
    tasks.config.CAPTURE_DEFAULTS); empty when it captures nothing or there is no Deployment."""
    containers = deployment["spec"]["template"]["spec"]["containers"] if deployment else []
    server = next((container for container in containers if (container.get("args") or [""])[0] == "serve"), None)
    if server is None:
        return {}
    arguments, flags = server["args"], {}
    for name, default in CAPTURE_DEFAULTS.items():
        option = commands.flag(name)
        if isinstance(default, bool):
            flags[name] = option in arguments
        elif option in arguments[:-1]:
            flags[name] = type(default)(arguments[arguments.index(option) + 1])
        else:
            flags[name] = default
    return flags if flags[CAPTURE_DIR] else {}


def capture_storage(capture_dir: str, volume_claim: str | None, mount_path: str) -> tuple[list[dict], list[dict]]:
    """(the server container's extra mounts, the pod's extra volumes) for capturing to ``capture_dir``.

    - On S3: the server's service account writes it (IRSA, as the steps do); the writer stages each file in the
      temporary folder until it is closed and uploaded, an ``emptyDir`` at ``CAPTURE_STAGING``, writable by the
      non-root user. It holds the open files (``--capture-file-bytes`` each) and nothing after their upload,
      failed or not; no ``sizeLimit``, since going over one evicts the pod, and capture must never take a server
      away.
    - On the volume: the claim again, read-write at ``capture_dir`` with that folder as its ``subPath``, so only
      the capture folder is writable and the model (the claim's read-only mount) stays read-only. The kubelet
      creates a missing ``subPath`` folder (on EFS through an access point, as its POSIX user).
    - No capture: nothing.
    """
    if not capture_dir:
        return [], []
    if artefacts.is_remote(capture_dir):
        staging = "capture-staging"
        return [{"name": staging, "mountPath": CAPTURE_STAGING}], [{"name": staging, "emptyDir": {}}]
    folder, root = PurePosixPath(capture_dir), PurePosixPath(mount_path)
    if not volume_claim or folder == root or not folder.is_relative_to(root):
        raise ValueError(
            f"the server cannot write its capture to {capture_dir}: a local capture folder must be a folder of the"
            f" artefact volume (claim {volume_claim or 'none'}, mounted at {mount_path})"
        )
    return [{"name": "artefacts", "mountPath": capture_dir, "subPath": str(folder.relative_to(root))}], []


def inference_service(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {"selector": labels(name), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def pod_disruption_budget(name: str, namespace: str) -> dict:
    """Voluntary evictions (node drains, upgrades) take one serving pod at a time. ``maxUnavailable`` and not
    ``minAvailable: 1``, which with one replica allows no eviction and blocks every drain; a pod that is not
    ready may always be evicted (``AlwaysAllow``), so a crash-looping server does not block one either."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {
            "selector": {"matchLabels": labels(name)},
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def smoke_pod(namespace: str, image: str, arguments: list[str], *, service_account: str, placement: Placement) -> dict:
    """``python -m tasks smoke-test`` in a pod of the cluster, which reaches the Service as any client there does
    (the API server's service proxy would need the control plane to reach pods, which EKS does not allow by
    default); under the serving identity, no volume, its result the termination message."""
    resources = Resources(SMOKE_RESOURCES_CPU, SMOKE_RESOURCES_CPU, SMOKE_RESOURCES_MEMORY, SMOKE_RESOURCES_MEMORY)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": namespace, "labels": labels("nlp-smoke-test")},
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": SMOKE_DEADLINE_SECONDS,
            "serviceAccountName": service_account,
            "automountServiceAccountToken": False,
            "securityContext": copy.deepcopy(POD_SECURITY),
            "containers": [step_container(STEP_CONTAINER, image, arguments, resources)],
        }
        | intel_placement(placement),
    }


def monitor_pod(
    namespace: str,
    image: str,
    arguments: list[str],
    *,
    service_account: str,
    deadline_seconds: int,
    volume_claim: str | None = None,
    mount_path: str = "/artefacts",
) -> dict:
    """``python -m tasks monitor``: a step pod of ``MONITOR_RESOURCES`` with no placement of its own (it needs no
    Intel CPU feature: no node selector, affinity or toleration), so it runs on any untainted node with room for
    it, the server's included (docs/eks.md: the cluster needs an untainted node); stopped by the cluster after
    ``deadline_seconds`` should nobody watch it any more."""
    cpu, memory = MONITOR_RESOURCES
    pod = step_pod(
        namespace,
        image,
        arguments,
        resources=Resources(cpu, cpu, memory, memory),
        placement=Placement(node_features=(), tolerations=()),
        service_account=service_account,
        volume_claim=volume_claim,
        mount_path=mount_path,
    )
    pod["metadata"]["labels"] = labels("nlp-monitor")
    pod["spec"]["activeDeadlineSeconds"] = deadline_seconds
    return pod


def horizontal_pod_autoscaler(name: str, namespace: str, *, minimum: int, maximum: int, cpu_percent: int) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}},
                }
            ],
        },
    }


@dataclass(frozen=True)
class Training:
    """A multi-worker training's pods: ``workers`` copies of the train step, each ``resources`` big."""

    name: str
    namespace: str
    image: str
    arguments: list[str]
    workers: int
    resources: Resources
    placement: Placement
    service_account: str
    volume_claim: str | None = None
    mount_path: str = "/artefacts"
    deadline_seconds: int = TRAINING_TIMEOUT_SECONDS

    def template(self, *, env: dict[str, str] | None = None, **spec) -> dict:
        """The workers' pod template (labelled with the job's name, which its Service selects)."""
        container = step_container(
            TRAINING_CONTAINER,
            self.image,
            self.arguments,
            self.resources,
            env=env,
            volume_claim=self.volume_claim,
            mount_path=self.mount_path,
        )
        return {
            "metadata": {"labels": labels(self.name)},
            "spec": spec
            | {
                "serviceAccountName": self.service_account,
                "securityContext": copy.deepcopy(POD_SECURITY),
                "containers": [container],
                "volumes": artefact_volumes(self.volume_claim),
            }
            | intel_placement(self.placement),
        }


def headless_service(training: Training) -> dict:
    """The DNS names of an Indexed Job's pods: with the pod template's ``subdomain`` naming this Service, pod
    ``i`` is ``NAME-i.NAME``. Headless (``clusterIP: None``), selecting the job's pods, and publishing them
    before they are ready: the workers dial each other while they start."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": training.name, "namespace": training.namespace, "labels": labels(training.name)},
        "spec": {
            "clusterIP": "None",
            "selector": labels(training.name),
            "publishNotReadyAddresses": True,
            "ports": [{"name": "tf", "port": WORKER_PORT, "targetPort": WORKER_PORT}],
        },
    }


def indexed_job(training: Training) -> dict:
    """A ``batch/v1`` Indexed Job of the workers (no operator to install). Pod ``i`` gets
    ``JOB_COMPLETION_INDEX=i`` and the hostname ``NAME-i`` from the Job controller; the step builds its
    ``TF_CONFIG`` from them and the workers' addresses (tasks/runtime/indexed_job.py); worker 0 is the chief.
    A multi-worker training restarts as a whole, so a failed worker fails the Job (``backoffLimit: 0``) and the
    task's retry starts it again; exit 2 (bad flag) or 3 (bad data) fails it through the pod failure policy
    (reason ``PodFailurePolicy``), and the task does not retry. A pod taken away by a disruption (node drain,
    preemption) is not counted. Finished pods are kept for their logs until the DAG deletes the job; the cluster
    stops a job that runs past ``deadline_seconds`` and removes a finished one after ``TRAINING_TTL_SECONDS``,
    should the DAG never come back to it."""
    name = training.name
    addresses = ",".join(f"{name}-{index}.{name}:{WORKER_PORT}" for index in range(training.workers))
    container_ports = [{"name": "tf", "containerPort": WORKER_PORT}]
    template = training.template(env={ADDRESSES_ENV: addresses}, subdomain=name, restartPolicy="Never")
    template["spec"]["containers"][0]["ports"] = container_ports
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": training.namespace, "labels": labels(name)},
        "spec": {
            "completionMode": "Indexed",
            "completions": training.workers,
            "parallelism": training.workers,
            "backoffLimit": 0,
            "activeDeadlineSeconds": training.deadline_seconds,
            "ttlSecondsAfterFinished": TRAINING_TTL_SECONDS,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": TRAINING_CONTAINER,
                            "operator": "In",
                            "values": sorted(NOT_RETRYABLE),
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": template,
        },
    }


def tf_job(training: Training) -> dict:
    """A Kubeflow ``TFJob`` (Training Operator v1) of the workers. The operator gives each its ``TF_CONFIG`` (in
    the container it must call ``tensorflow``); the step trains multi-worker from it, and the chief (worker 0)
    writes the model. A crashed worker restarts in place (``OnFailure``), at most ``backoffLimit`` times in all;
    the DAG fails the task at once when one exited 2 or 3 (bad input), read from its last state. Finished pods
    are kept for their logs until the DAG deletes the job; the run policy bounds it as ``indexed_job`` does."""
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": training.name, "namespace": training.namespace, "labels": labels(training.name)},
        "spec": {
            "runPolicy": {
                "cleanPodPolicy": "None",
                "backoffLimit": 2,
                "activeDeadlineSeconds": training.deadline_seconds,
                "ttlSecondsAfterFinished": TRAINING_TTL_SECONDS,
            },
            "tfReplicaSpecs": {
                "Worker": {"replicas": training.workers, "restartPolicy": "OnFailure", "template": training.template()}
            },
        },
    }
