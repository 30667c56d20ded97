"""The Kubernetes objects of the nlp_eks pipeline, as the JSON the API server takes (camelCase, not the
Python client's snake_case), from plain values, so each can be validated against the Kubernetes schema.

- ``step_container``: the task image running ``python -m tasks STEP``, with CPU/memory requests and limits,
  ``OMP_NUM_THREADS`` from the container's CPU limit (the step sizes its thread pools from the cgroup quota
  too), and the artefact volume when there is one;
- ``intel_placement``: node affinity on Node Feature Discovery labels (AVX-512 VNNI, AMX, ...) and the
  tolerations of a dedicated Intel node group;
- the inference server: ``inference_deployment`` (readiness and liveness on ``/ping``, a rolling update that
  never takes a serving pod away first, a drain period longer than the server's own),
  ``inference_service``, ``pod_disruption_budget`` and an optional ``horizontal_pod_autoscaler``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nlp_pipeline import commands

APP_LABEL = "app.kubernetes.io/name"
PART_LABEL = "app.kubernetes.io/part-of"
SERVER_PORT = 8080
# The server drains in-flight requests for 25 s after SIGTERM (tasks/config.py); Kubernetes waits longer.
TERMINATION_GRACE_SECONDS = 40
# A step writes its result here (tasks/runtime/step_result.py); the API server shows it as the termination message.
# A failed step writes nothing, so Kubernetes shows the log's last lines instead (FallbackToLogsOnError).
TERMINATION_LOG = "/dev/termination-log"
STEP_CONTAINER = "base"  # the KubernetesPodOperator's name for the container it follows


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
) -> dict:
    """The task image running ``python -m tasks ARGUMENTS`` (its entrypoint maps the arguments)."""
    container = {
        "name": name,
        "image": image,
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
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 1000},
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if volume_claim:
        container["volumeMounts"] = [{"name": "artefacts", "mountPath": mount_path}]
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
) -> dict:
    """The inference server serving ``model_uri``; a new URI rolls out pod by pod, none taken away first.
    With ``model_digest`` (the registry entry's), the server refuses a model whose bytes are not those."""
    container = step_container(
        "server",
        image,
        commands.command("serve", {}, model=model_uri, host="0.0.0.0", model_digest=model_digest),
        resources,
        volume_claim=volume_claim,
        mount_path=mount_path,
    )
    container["ports"] = [{"name": "http", "containerPort": SERVER_PORT}]
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
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "containers": [container],
                    "volumes": artefact_volumes(volume_claim),
                }
                | intel_placement(placement),
            },
        },
    }


def inference_service(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {"selector": labels(name), "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def pod_disruption_budget(name: str, namespace: str, replicas: int) -> dict:
    """Voluntary evictions (node drains, upgrades) leave at least one serving pod, or all but one of many."""
    budget = {"maxUnavailable": 1} if replicas > 1 else {"minAvailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {"selector": {"matchLabels": labels(name)}} | budget,
    }


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


def tf_job(
    name: str,
    namespace: str,
    image: str,
    arguments: list[str],
    *,
    workers: int,
    resources: Resources,
    placement: Placement,
    service_account: str,
    volume_claim: str | None = None,
    mount_path: str = "/artefacts",
) -> dict:
    """A Kubeflow ``TFJob`` of ``workers`` replicas of the train step. The training operator gives each its
    ``TF_CONFIG`` (in the container it must call ``tensorflow``); the step trains multi-worker from it, and
    the chief (worker 0) writes the model. Finished pods are kept for their logs until the DAG deletes the job."""
    template = {
        "metadata": {"labels": labels(name)},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                step_container(
                    "tensorflow", image, arguments, resources, volume_claim=volume_claim, mount_path=mount_path
                )
            ],
            "volumes": artefact_volumes(volume_claim),
        }
        | intel_placement(placement),
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 2},
            "tfReplicaSpecs": {"Worker": {"replicas": workers, "restartPolicy": "OnFailure", "template": template}},
        },
    }
