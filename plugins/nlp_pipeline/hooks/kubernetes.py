"""Rolling the inference server out on Kubernetes: apply, wait for the rollout, restore the previous revision.

Objects are applied server-side (``fieldManager=nlp-pipeline``, forced): applying the same manifest again
changes nothing, and a new model URI (a pod-template annotation and argument) starts a rolling update.
The rollout is complete when the Deployment controller has seen the new generation and every replica is
updated and available, as ``kubectl rollout status`` decides. What the Deployment ran before is kept, so a
rollout that does not complete in time, or a model that fails its smoke test, can be put back.
"""

from __future__ import annotations

import logging
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

FIELD_MANAGER = "nlp-pipeline"
APPLY = "application/apply-patch+yaml"
MODEL_ANNOTATION = "nlp.pipeline/model-uri"
# kind -> (API class, the name its patch and delete methods share)
_KINDS = {
    "Deployment": (client.AppsV1Api, "namespaced_deployment"),
    "Service": (client.CoreV1Api, "namespaced_service"),
    "PodDisruptionBudget": (client.PolicyV1Api, "namespaced_pod_disruption_budget"),
    "HorizontalPodAutoscaler": (client.AutoscalingV2Api, "namespaced_horizontal_pod_autoscaler"),
}


class RolloutFailed(Exception):
    """The Deployment did not become fully updated and available in time."""


def apply(api_client: client.ApiClient, manifest: dict) -> None:
    api, method = _KINDS[manifest["kind"]]
    metadata = manifest["metadata"]
    getattr(api(api_client), f"patch_{method}")(
        metadata["name"],
        metadata["namespace"],
        manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type=APPLY,
    )
    log.info("applied %s %s/%s", manifest["kind"], metadata["namespace"], metadata["name"])


def delete(api_client: client.ApiClient, kind: str, name: str, namespace: str) -> None:
    """Delete an object the pipeline applied before; one that is not there is fine."""
    api, method = _KINDS[kind]
    try:
        getattr(api(api_client), f"delete_{method}")(name, namespace)
        log.info("deleted %s %s/%s", kind, namespace, name)
    except ApiException as error:
        if error.status != 404:
            raise


def live_deployment(api_client: client.ApiClient, name: str, namespace: str) -> dict | None:
    """The Deployment as the API server holds it (JSON), or None when there is none yet."""
    try:
        deployment = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return api_client.sanitize_for_serialization(deployment)


def served_model(deployment: dict | None) -> str | None:
    """The model URI the Deployment's pods serve (its template's annotation)."""
    if not deployment:
        return None
    return (deployment["spec"]["template"]["metadata"].get("annotations") or {}).get(MODEL_ANNOTATION)


def revision(deployment: dict) -> dict:
    """What to apply to put ``deployment`` back: its own spec, under the names only."""
    metadata = deployment["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
        "spec": deployment["spec"],
    }


def rollout_state(deployment: dict) -> tuple[bool, str]:
    """(complete, what the rollout is waiting for), as ``kubectl rollout status`` decides."""
    spec, status, metadata = deployment["spec"], deployment.get("status") or {}, deployment["metadata"]
    wanted = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < metadata.get("generation", 1):
        return False, "the Deployment controller has not seen the new spec yet"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {condition.get('message')}"
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated"
    if status.get("replicas", 0) > updated:
        return False, f"{status['replicas'] - updated} old replicas still terminating"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{updated} of {wanted} replicas updated and available"


def wait_for_rollout(api_client: client.ApiClient, name: str, namespace: str, *, timeout: float, poll: float) -> dict:
    """Wait until the rollout completes; RolloutFailed after ``timeout`` seconds, naming what it waited for."""
    started = time.monotonic()
    while True:
        deployment = live_deployment(api_client, name, namespace)
        if deployment is None:
            raise RolloutFailed(f"Deployment {namespace}/{name} disappeared during its rollout")
        complete, state = rollout_state(deployment)
        elapsed = time.monotonic() - started
        log.info("rollout of %s/%s: %s (%.0f s)", namespace, name, state, elapsed)
        if complete:
            return deployment
        if elapsed > timeout or state.startswith("progress deadline"):
            raise RolloutFailed(
                f"the rollout of Deployment {namespace}/{name} did not complete in {timeout:.0f} s: {state}"
            )
        time.sleep(poll)


def invoke_through_service(api_client: client.ApiClient, service: str, namespace: str, body: dict) -> bytes:
    """POST ``/invocations`` through the API server's proxy to the Service (works inside and outside the cluster)."""
    response = api_client.call_api(
        f"/api/v1/namespaces/{namespace}/services/{service}:http/proxy/invocations",
        "POST",
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    return response.data
