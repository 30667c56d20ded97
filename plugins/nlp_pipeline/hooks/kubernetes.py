"""Rolling the inference server out on Kubernetes: apply, hand the replica count to the autoscaler, wait.

Objects are applied server-side (``fieldManager=nlp-pipeline``, forced): applying the same manifest again
changes nothing, and a new model URI (a pod-template annotation and argument) starts a rolling update.
A field the pipeline stops applying is removed, or reset to its default, unless another manager owns it:
so a Deployment whose replicas an HPA scales is applied as the server-side apply docs transfer ownership
(``apply_autoscaled``). The rollout is complete when the Deployment controller has seen the new generation
and every replica is updated and available, as ``kubectl rollout status`` decides.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

FIELD_MANAGER = "nlp-pipeline"
# The private field manager that holds a Deployment's replicas until the HPA controller writes them (the
# server-side apply docs, "Transferring ownership").
HANDOVER_MANAGER = "handover-to-hpa"
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


def apply(api_client: client.ApiClient, manifest: dict, *, manager: str = FIELD_MANAGER, force: bool = True) -> None:
    """Server-side apply of ``manifest`` by ``manager``; forced, fields another manager owns move to it."""
    api, method = _KINDS[manifest["kind"]]
    metadata = manifest["metadata"]
    getattr(api(api_client), f"patch_{method}")(
        metadata["name"],
        metadata["namespace"],
        manifest,
        field_manager=manager,
        force=force,
        _content_type=APPLY,
    )
    log.info("applied %s %s/%s as %s", manifest["kind"], metadata["namespace"], metadata["name"], manager)


def _conflicting_managers(error: ApiException) -> set[str]:
    """The field managers a 409 of a server-side apply names (``conflict with "MANAGER" ...``)."""
    try:
        causes = json.loads(error.body or "{}").get("details", {}).get("causes") or []
    except ValueError:
        return set()
    return {match.group(1) for cause in causes if (match := re.match(r'conflict with "([^"]+)"', cause["message"]))}


def apply_autoscaled(api_client: client.ApiClient, deployment: dict) -> None:
    """Apply a Deployment whose replicas an HPA scales, as the server-side apply docs transfer ownership of
    ``replicas`` ("Transferring ownership"): left out of the pipeline's apply while only the pipeline owned
    it, it would reset to 1. So the count is first applied (not forced) by a private manager, which keeps it
    until the HPA controller writes it; a conflict with the HPA means the HPA owns it already, and it is left
    alone (one with the pipeline's own earlier count is taken over). Then the pipeline applies the Deployment
    without ``replicas``. A Deployment that does not exist yet is created with its count first."""
    metadata = deployment["metadata"]
    if live_deployment(api_client, metadata["name"], metadata["namespace"]) is None:
        apply(api_client, deployment)
    replicas = {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
        "spec": {"replicas": deployment["spec"]["replicas"]},
    }
    try:
        apply(api_client, replicas, manager=HANDOVER_MANAGER, force=False)
    except ApiException as error:
        owners = _conflicting_managers(error) if error.status == 409 else set()
        if not owners:
            raise
        if owners <= {FIELD_MANAGER}:
            apply(api_client, replicas, manager=HANDOVER_MANAGER, force=True)
        else:
            log.info("the replicas of %s/%s are the autoscaler's (%s)", metadata["namespace"], metadata["name"], owners)
    without = copy.deepcopy(deployment)
    del without["spec"]["replicas"]
    apply(api_client, without)


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


def rollout_state(deployment: dict) -> tuple[bool, str]:
    """(complete, what the rollout is waiting for), as ``kubectl rollout status`` decides."""
    spec, status, metadata = deployment["spec"], deployment.get("status") or {}, deployment["metadata"]
    wanted = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < metadata.get("generation", 1):
        return False, "the Deployment controller has not seen the new spec yet"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return False, f"progress deadline exceeded: {condition.get('message')}"
    # Pods its ReplicaSet cannot create (Pod Security, quota): the rollout waits, and says why.
    failures = [
        f"{condition.get('reason')}: {condition.get('message')}"
        for condition in status.get("conditions") or []
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
    ]
    waiting_on = f" ({'; '.join(failures)})" if failures else ""
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated{waiting_on}"
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
