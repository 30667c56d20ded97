"""A Kubernetes cluster for the nlp_eks tests: kmock's API emulator on 127.0.0.1 plus the parts that act.

kmock's ``KubernetesEmulator`` stores objects and serves create, read, list, watch, patch and delete over
HTTP. ``FakeKubernetes`` runs it in a thread with its own event loop, and adds what a cluster does:

- the API server: EKS tokens authenticated as EKS does, a token signed with credentials the test expired
  (``authentication.expire()``) or older than 15 minutes answered 401 ``Unauthorized`` (``EksAuthentication``);
  label selectors on lists; server-side apply (``application/apply-patch+yaml``) creating a missing object,
  with field ownership in ``managedFields`` (server_side_apply.py: a field its only manager stops applying is
  removed or reset to its default, a Deployment's ``replicas`` to 1; 409 on another manager's field unless
  forced); ``metadata.generation`` bumped when a Deployment's spec changes; ``pods/log`` (``follow``,
  ``timestamps``, ``sinceSeconds``, ``tailLines``); Pod Security admission (pod_security.py): a pod that breaks
  the ``restricted`` profile in a namespace labelled to enforce it (``create_namespace``) is refused, 403;
- a kubelet: a pod runs its container here, ``python -m tasks ARGS`` with the container's env (the CPU limit
  resolved for ``OMP_NUM_THREADS``) and ``TASKS_RESULT_FILE`` pointed at a file that becomes the termination
  message (or, with ``FallbackToLogsOnError``, the log's last lines after a failure); deleting the pod stops
  it; one running past its ``activeDeadlineSeconds`` is killed (exit 137) and fails, reason ``DeadlineExceeded``. The artefact volume is a folder of the test, mounted at its own path (Variable ``nlp_k8s_volume_path``);
- the Deployment controller: each new generation starts ``python -m tasks serve`` on the template's model
  with the container's other flags (its digest, its capture; on this machine, so a capture folder on the
  volume is the volume's folder), and reports the rollout (``observedGeneration``, updated and available replicas) once it answers
  ``/ping``; ``broken_rollouts`` keeps a new revision (a pod template not seen before) from ever becoming
  available; a template Pod Security refuses gets ``ReplicaFailure``/``FailedCreate`` and never rolls out.
  A Service's cluster DNS names reach the server of the Deployment it selects (``addresses``);
- the HPA controller: keeps its Deployment within min/max at ``metrics_replicas`` (else the current count),
  writing ``replicas`` through the scale subresource as ``kube-controller-manager``; the disruption
  controller: each PodDisruptionBudget's ``disruptionsAllowed`` from the Deployment it selects;
- the Job controller (batch/v1, Indexed Jobs): pod ``JOB-INDEX-xxxxx`` per index, with the
  ``batch.kubernetes.io/job-completion-index`` annotation and label, ``JOB_COMPLETION_INDEX`` from it (downward
  API), hostname ``JOB-INDEX`` and the template's subdomain; ``active``/``succeeded``/``failed`` counts, a
  failed index re-created until ``backoffLimit``, ``podFailurePolicy`` (``FailJob``/``Ignore``/``Count`` on exit
  codes), the conditions ``Complete`` or ``Failed`` (reason ``PodFailurePolicy`` or ``BackoffLimitExceeded``),
  the active pods of a failed Job deleted; deleting a Job with propagation ``Foreground`` or ``Background``
  deletes its pods (the API's default for Jobs orphans them). A pod Pod Security refuses is not created: a
  Warning ``FailedCreate`` Event on the Job instead (``Error creating: ...``), as for the TFJob's workers.
  The API server refuses (422) a Job with a ``podFailurePolicy`` whose pods do not have ``restartPolicy:
  Never``. Under a headless Service named as the subdomain that selects the pods, each
  ``JOB-INDEX.SUBDOMAIN:PORT`` resolves (``addresses``), one loopback port per index, once that index's pod
  is ready, or before when the Service has ``publishNotReadyAddresses``; events are listed by field selector;
- the training operator, only when ``training_operator`` is set (else ``kubeflow.org/v1`` is not served, as
  on a cluster without the CRD, and discovery says so): a TFJob gets one pod per worker, each with its
  ``TF_CONFIG`` and the replica spec's ``restartPolicy``, and the conditions ``Succeeded`` or ``Failed``
  from them; deleting it deletes its pods first (foreground deletion).
- ``restartPolicy: OnFailure``: a failed container restarts in place (``restartCount``,
  ``lastState.terminated`` with its exit code and message, ``state.waiting`` ``CrashLoopBackOff``; the pod
  stays Running).

``hold_pods`` keeps new pods Pending (not started) until it is cleared; ``unschedulable`` keeps them Pending
with ``PodScheduled`` False, reason ``Unschedulable`` and the scheduler's message; ``broken_answers`` makes
the Service answer what no model would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import aiohttp.web
import kmock
import yaml

from tests.conftest import REPO, ServerProcess, free_port
from tests.fakes import pod_security, server_side_apply

PODS = kmock.resource("v1/pods")
DEPLOYMENTS = kmock.resource("apps/v1/deployments")
TFJOBS = kmock.resource("kubeflow.org/v1/tfjobs")
SERVICES = kmock.resource("v1/services")
NAMESPACES = kmock.resource("v1/namespaces")
AUTOSCALERS = kmock.resource("autoscaling/v2/horizontalpodautoscalers")
BUDGETS = kmock.resource("policy/v1/poddisruptionbudgets")
AUTOSCALER_MANAGER = "kube-controller-manager"  # the field manager of the HPA controller's scale updates
JOBS = kmock.resource("batch/v1/jobs")
EVENTS = kmock.resource("v1/events")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # the pods' annotation and label
UNSCHEDULABLE_MESSAGE = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
_CRASH_LOOP_SECONDS = 1.0  # the kubelet's back-off before restarting a failed container (10 s at first, really)
EKS_TOKEN_PREFIX = "k8s-aws-v1."
# What the API server answers a request it cannot authenticate (the Status it sends with 401).
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}
_LOG_TAIL_LINES, _LOG_TAIL_BYTES = 80, 2048  # what Kubernetes keeps of the log for FallbackToLogsOnError


def _resource_info(kind: str) -> dict:
    """A namespaced resource as API discovery lists it."""
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    return {"kind": kind, "singular": kind.lower(), "namespaced": True, "verbs": verbs}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _replacing(old: dict, new: dict) -> dict:
    """A kmock patch turning ``old`` into ``new`` (None removes a key), as an apply by the only manager does."""
    patch = dict(new)
    for key, value in old.items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(new[key], dict):
            patch[key] = _replacing(value, new[key])
    return patch


def _server_flags(args: list[str]) -> list[str]:
    """The server container's ``serve`` flags but its model and address, which the fake's server process sets
    (the digest it verifies, what it captures and where, ...)."""
    flags, rest = [], args[1:] if args[:1] == ["serve"] else list(args)
    while rest:
        name = rest.pop(0)
        if name in ("--model", "--host", "--port"):
            rest.pop(0)
        else:
            flags.append(name)
    return flags


def _selected(labels: dict, selector: str) -> bool:
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_selected(obj: dict, selector: str) -> bool:
    """Whether ``obj`` matches a field selector (``path=value`` or ``path!=value`` terms, dotted paths such as
    ``involvedObject.name``, as the API server offers them for events)."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        negated = "!=" in term
        path, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        found = obj
        for key in path.split("."):
            found = found.get(key) if isinstance(found, dict) else None
        if (str(found if found is not None else "") == value) == negated:
            return False
    return True


def _with_ready(conditions: list[dict] | None, ready: bool) -> list[dict]:
    """A pod's conditions with ``Ready`` set to ``ready`` (a pod whose container ended or waits is not ready)."""
    kept = [condition for condition in conditions or [] if condition["type"] != "Ready"]
    return [*kept, {"type": "Ready", "status": str(ready)}]


def _validate_job(job: dict) -> None:
    """The Job validation the pipeline could trip (k8s.io/kubernetes pkg/apis/batch/validation, validateJobSpec):
    a pod failure policy needs the pod template's ``restartPolicy: Never``; else 422 Invalid, worded as the API
    server words it."""
    restart = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("restartPolicy", "")
    if (job.get("spec") or {}).get("podFailurePolicy") is None or restart == "Never":
        return
    field, detail = "spec.template.spec.restartPolicy", 'only "Never" is supported when podFailurePolicy is specified'
    cause = f'Invalid value: "{restart}": {detail}'
    name = (job.get("metadata") or {}).get("name", "")
    raise kmock.KubernetesError(
        status=422,
        reason="Invalid",
        message=f'Job.batch "{name}" is invalid: {field}: {cause}',
        details={
            "name": name,
            "group": "batch",
            "kind": "Job",
            "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": field}],
        },
    )


class EksAuthentication:
    """How the EKS API server authenticates a bearer token (aws-iam-authenticator, which EKS runs).

    An EKS token is ``k8s-aws-v1.`` + the base64url (unpadded) of a presigned STS ``GetCallerIdentity`` URL whose
    signed headers include ``x-k8s-aws-id`` (the cluster's name; ``EksHook.fetch_access_token_for_cluster``). The
    authenticator refuses a URL whose ``X-Amz-Date`` is more than 15 minutes old, then has STS check the signature:
    STS refuses credentials that have expired. Either way the API server answers 401 ``Unauthorized``. Here, the
    credentials a test calls ``expire()`` on stand for expired ones; the signature itself is not checked. Tokens
    that are not EKS tokens (the tests' kubeconfig's) are accepted, as a static token is by a real API server.
    """

    LIFETIME = datetime.timedelta(minutes=15)

    def __init__(self):
        self.signers: set[str] = set()  # the access key id of every EKS token accepted so far
        self.expired: set[str] = set()  # access key ids whose session credentials have expired
        self.refusals = 0  # requests answered 401

    def expire(self) -> None:
        """The session credentials of every EKS token accepted so far expire now."""
        self.expired |= self.signers

    def accepts(self, authorization: str) -> bool:
        accepted = self._accepts(authorization.removeprefix("Bearer "))
        self.refusals += not accepted
        return accepted

    def _accepts(self, token: str) -> bool:
        if not token.startswith(EKS_TOKEN_PREFIX):
            return True
        try:
            encoded = token.removeprefix(EKS_TOKEN_PREFIX)
            url = urllib.parse.urlsplit(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
            query = {key: values[0] for key, values in urllib.parse.parse_qs(url.query).items()}
            signed = datetime.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
            access_key = query["X-Amz-Credential"].split("/")[0]
        except (ValueError, KeyError):
            return False
        if query.get("Action") != "GetCallerIdentity" or "x-k8s-aws-id" not in query.get("X-Amz-SignedHeaders", ""):
            return False
        if access_key in self.expired or datetime.datetime.now(datetime.UTC) - signed > self.LIFETIME:
            return False
        self.signers.add(access_key)
        return True


def wait_for(predicate, seconds: float = 120):
    """Poll ``predicate`` until it returns something true (and return that); fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (found := predicate()):
        assert time.monotonic() < deadline, "the fake cluster did not get there in time"
        time.sleep(0.2)
    return found


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator with the API server behaviour the pipeline relies on."""

    authentication: EksAuthentication  # FakeKubernetes's, set before the first request

    serves_tfjobs = False  # the Training Operator's CRD is installed

    async def _handle(self, request):
        if not self.authentication.accepts(request.headers.get("Authorization", "")):
            return aiohttp.web.json_response(UNAUTHORIZED, status=401)
        if request.resource == TFJOBS and not self.serves_tfjobs:
            raise kmock.KubernetesError(
                status=404, reason="NotFound", message="the server could not find the requested resource"
            )
        if request.resource == TFJOBS and request.action == kmock.action.DELETE:
            async with self._lock:
                self._delete_workers(request.namespace, request.name)
        elif request.resource == JOBS and request.action == kmock.action.DELETE:
            options = request.data if isinstance(request.data, dict) else {}
            propagation = request.params.get("propagationPolicy") or options.get("propagationPolicy")
            if propagation in ("Foreground", "Background"):
                async with self._lock:
                    self.delete_pods(request.namespace, JOB_NAME_LABEL, request.name)
        elif request.resource is not None and request.data and isinstance(request.data, dict):
            async with self._lock:
                self._prepare(request)
        return await super()._handle(request)

    def _delete_workers(self, namespace: str, job: str) -> None:
        """Foreground deletion: a TFJob's pods go before it does."""
        self.delete_pods(namespace, "training.kubeflow.org/job-name", job)

    def delete_pods(self, namespace: str, label: str, value: str, *, active_only: bool = False) -> None:
        """Delete the pods whose ``label`` is ``value`` (with ``active_only``, those not finished)."""
        for (kind, pod_namespace, _), obj in list(self.objects.items()):
            if kind == PODS and pod_namespace == namespace and not obj.deleted:
                finished = obj.raw.get("status", {}).get("phase") in ("Succeeded", "Failed")
                if (obj.raw["metadata"].get("labels") or {}).get(label) == value and not (active_only and finished):
                    obj.delete()

    def _prepare(self, request) -> None:
        """Turn a server-side apply into the emulator's create or patch (field ownership: server_side_apply.py),
        admit a new pod (Pod Security: pod_security.py), and count a Deployment's generations."""
        key = (request.resource, request.namespace, request.name)
        exists = key in self.objects and not self.objects[key].deleted
        applying = "apply-patch" in request.headers.get("Content-Type", "")
        old = self.objects[key].raw if exists else {}
        if applying:
            live = {k: v for k, v in old.items() if k != "status"}
            force = request.params.get("force", "").lower() == "true"
            applied = server_side_apply.apply(live, request.data, request.params.get("fieldManager", ""), force=force)
            if not exists:
                self.objects[key] = {}
            request.data.clear()
            request.data.update(_replacing(live, applied))
        if request.action == kmock.action.CREATE and request.namespace:  # the API server sets it from the URL
            request.data.setdefault("metadata", {}).setdefault("namespace", request.namespace)
        if request.resource == JOBS and request.action == kmock.action.CREATE:
            _validate_job(request.data)
        if request.resource == PODS and request.action == kmock.action.CREATE:
            metadata = request.data.get("metadata") or {}
            refused = pod_security.forbidden_message(
                metadata.get("name") or metadata.get("generateName", ""),
                self.namespace_labels(request.namespace),
                request.data.get("spec") or {},
            )
            if refused:
                raise kmock.KubernetesError(status=403, reason="Forbidden", message=refused)
            request.data["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
        if request.resource == DEPLOYMENTS and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            generation = old.get("metadata", {}).get("generation", 0)
            spec = request.data.get("spec")
            changed = spec is not None and {k: v for k, v in spec.items() if v is not None} != old.get("spec")
            request.data.setdefault("metadata", {})["generation"] = generation + 1 if changed or not old else generation

    def namespace_labels(self, namespace: str | None) -> dict:
        """The labels of the Namespace object (Pod Security reads its ``enforce`` label); none without one."""
        key = (NAMESPACES, None, namespace)
        if key not in self.objects or self.objects[key].deleted:
            return {}
        return self.objects[key].raw.get("metadata", {}).get("labels") or {}

    async def _serve_list(self, request):
        listed = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            listed["items"] = [
                item for item in listed["items"] if _selected(item.get("metadata", {}).get("labels") or {}, selector)
            ]
        if fields := request.params.get("fieldSelector"):
            listed["items"] = [item for item in listed["items"] if _field_selected(item, fields)]
        return listed

    def record_event(self, involved: dict, reason: str, message: str, component: str) -> None:
        """A Warning core/v1 Event about ``involved`` (apiVersion, kind, name, namespace, uid), as a controller's
        event recorder writes it; the same event again counts up (``count``, ``lastTimestamp``)."""
        namespace = involved["namespace"]
        for (kind, event_namespace, _), event in list(self.objects.items()):
            raw = event.raw if kind == EVENTS and event_namespace == namespace and not event.deleted else {}
            if raw and (raw["involvedObject"], raw["reason"], raw["message"]) == (involved, reason, message):
                event.patch({"count": raw["count"] + 1, "lastTimestamp": _now()})
                return
        name = f"{involved['name']}.{secrets.token_hex(8)}"
        self.objects[EVENTS, namespace, name] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": dict(involved),
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": component},
            "count": 1,
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
        }


class FakeKubernetes:
    """The API server on 127.0.0.1 and the cluster's actors, in a thread; ``stop()`` ends both."""

    def __init__(self, workdir: Path, poll: float = 0.2):
        self.workdir, self.poll = workdir, poll
        self.volume = workdir / "volume"
        self.volume.mkdir(parents=True, exist_ok=True)
        self.hold_pods = self.unschedulable = self.broken_rollouts = self.broken_answers = False
        self.authentication = EksAuthentication()  # ``authentication.expire()``: the EKS tokens' credentials expire
        self._restarts: dict[str, float] = {}  # pod name -> when its crashed container restarts (monotonic)
        self._started: dict[str, float] = {}  # pod name -> when the kubelet started it (monotonic)
        self._deadline_exceeded: set[str] = set()  # pods the kubelet stopped at their activeDeadlineSeconds
        self._worker_ports: dict[tuple[str, str, int, int], str] = {}  # (namespace, job, index, port) -> local
        self._counted: set[str] = set()  # the Job pods whose end the Job controller has counted
        self.environments: dict[str, dict[str, str]] = {}  # pod name -> its container's environment, resolved
        self.processes: dict[str, subprocess.Popen] = {}  # pod name -> its container's process
        self.logs: dict[str, list[tuple[datetime.datetime, str]]] = {}  # pod name -> (time, line) as written
        self._log_offsets: dict[str, int] = {}
        self.pods_run: list[dict] = []  # every pod the kubelet started, as created
        self.servers: dict[str, ServerProcess] = {}  # pod-template hash -> its server
        self.serving: dict[tuple[str, str], str] = {}  # (namespace, deployment) -> template hash serving now
        self.metrics_replicas: dict[tuple[str, str], int] = {}  # (namespace, HPA) -> the replicas its metrics ask
        self._generations: dict[tuple[str, str], int] = {}
        self.crash: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake Kubernetes API server did not start")

    # ---- lifecycle ---------------------------------------------------------------------------------------
    async def _main(self) -> None:
        try:
            await self._serve()
        except BaseException as error:  # an actor that crashed: stop() re-raises it in the test
            self.crash = error
        finally:
            for process in self.processes.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
            for server_process in self.servers.values():
                server_process.stop()

    async def _serve(self) -> None:
        async with ApiServer() as api, kmock.Server(api) as server:
            self.api, self.url, self.loop = api, str(server.url).rstrip("/"), asyncio.get_running_loop()
            api.authentication = self.authentication
            api.resources["v1/events"] = {}
            api.resources["v1/services"] = {}
            api.resources["batch/v1/jobs"] = _resource_info("Job")
            api[PODS, kmock.subresource("log")] << self._pod_log
            self._broken_address = await self._start_broken_server()
            self._stopping = asyncio.Event()
            self._ready.set()
            actors = asyncio.gather(
                self._kubelet(),
                self._deployment_controller(),
                self._training_operator(),
                self._job_controller(),
                self._autoscaler(),
                self._disruption_controller(),
            )
            await self._stopping.wait()
            actors.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await actors

    def stop(self) -> None:
        """Stop the cluster and its processes; an actor's crash while the test ran fails the test here."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(60)
        if self.crash is not None:
            raise RuntimeError("the fake cluster crashed while the test ran") from self.crash

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "nlp"}}],
                }
            )
        )
        return path

    @property
    def training_operator(self) -> bool:
        """Whether the Kubeflow Training Operator is installed: its ``kubeflow.org/v1`` ``tfjobs`` served."""
        return self.api.serves_tfjobs

    @training_operator.setter
    def training_operator(self, installed: bool) -> None:
        self.api.serves_tfjobs = installed
        if installed:
            self.api.resources["kubeflow.org/v1/tfjobs"] = _resource_info("TFJob")

    def objects(self, resource, namespace: str | None = None) -> list[dict]:
        """The live objects of a resource (copies), for assertions."""
        return [copy.deepcopy(obj.raw) for _, _, obj in self._live(resource, namespace)]

    def _live(self, resource, namespace: str | None = None) -> list[tuple[str, str, object]]:
        """(namespace, name, stored object) of each object of ``resource`` not deleted, in ``namespace`` if given."""
        return [
            (ns, name, obj)
            for (kind, ns, name), obj in list(self.api.objects.items())
            if kind == resource and (namespace is None or ns == namespace) and not obj.deleted
        ]

    def _selected_deployments(self, namespace: str, selector: dict) -> list[tuple[str, dict]]:
        """(name, raw) of each Deployment in ``namespace`` whose pods ``selector`` (matchLabels) picks."""
        if not selector:
            return []
        selected = []
        for _, name, deployment in self._live(DEPLOYMENTS, namespace):
            pod_labels = deployment.raw["spec"]["template"]["metadata"].get("labels") or {}
            if all(pod_labels.get(key) == value for key, value in selector.items()):
                selected.append((name, deployment.raw))
        return selected

    def history(self, resource, namespace: str, name: str) -> list[dict]:
        """Every version the object has had (copies), oldest first: what a watch would have seen."""
        versions = self.api.objects[resource, namespace, name].history
        return [copy.deepcopy(version.raw) for version in versions if version is not None]

    def api_calls(self) -> set[tuple[str, str, str]]:
        """(API group, resource[/subresource], verb) of every namespaced request so far, as RBAC sees it."""
        calls = set()
        for request in list(self.api):
            path, method = str(request.url.path), request.method.value.upper()
            core = re.match(r"/api/v1/namespaces/[^/]+/(.+)", path)
            grouped = re.match(r"/apis/([^/]+)/[^/]+/namespaces/[^/]+/(.+)", path)
            if not (core or grouped):
                continue  # discovery and other non-resource URLs
            group, rest = ("", core.group(1)) if core else grouped.groups()
            resource, *named = rest.split("/")
            if len(named) > 1:
                resource = f"{resource}/{named[1]}"
            verbs = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
            listing = "watch" if request.params.get("watch") in ("true", "True", "1") else "list"
            calls.add((group, resource, verbs.get(method) or ("get" if named else listing)))
        return calls

    def requests_to(self, method: str, pattern: str) -> list:
        return [
            request
            for request in list(self.api)
            if request.method.value.lower() == method and re.search(pattern, str(request.url.path))
        ]

    # ---- cluster DNS: one loopback here, so names a pod could dial are rewritten to 127.0.0.1:PORT ---------
    def addresses(self, namespace: str) -> dict[str, str]:
        """``host:port`` → ``127.0.0.1:PORT`` for every name a pod in ``namespace`` could dial in a cluster.

        A Service's DNS names (``svc``, ``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local``; names of
        another namespace need at least ``svc.ns``) on each of its ports, when its selector picks the pods of a
        Deployment whose server is up. Names that would not resolve in a cluster are not here, so they fail.
        """
        found: dict[str, str] = {}
        for service_namespace, name, service in self._live(SERVICES):
            spec = service.raw.get("spec") or {}
            target = self._service_target(service_namespace, spec.get("selector") or {})
            if target is None:
                continue
            hosts = [f"{name}.{service_namespace}", f"{name}.{service_namespace}.svc"]
            hosts.append(f"{name}.{service_namespace}.svc.cluster.local")
            if service_namespace == namespace:
                hosts.append(name)
            for port in spec.get("ports") or []:
                for host in hosts:
                    found[f"{host}:{port['port']}"] = target
        return found | self._job_hostnames(namespace)

    def _job_hostnames(self, namespace: str) -> dict[str, str]:
        """``JOB-INDEX.SUBDOMAIN:PORT`` (and ``.NS``, ``.NS.svc``, ``.NS.svc.cluster.local``) of every index of an
        Indexed Job whose pod template's ``subdomain`` names a headless Service (``clusterIP: None``) of its
        namespace that selects its pods, on the Service's ports: one loopback port per index, the same for
        every pod of that index (its hostname stays). As the DNS for Services and Pods docs say, an index
        resolves once its pod is ready, or before (Pending, starting) when the Service sets
        ``publishNotReadyAddresses``."""
        found: dict[str, str] = {}
        for job_namespace, job_name, job in self._live(JOBS):
            if (job.raw.get("spec") or {}).get("completionMode") != "Indexed":
                continue
            spec = job.raw["spec"]
            template = spec["template"]
            subdomain, pod_labels = template["spec"].get("subdomain"), template.get("metadata", {}).get("labels") or {}
            key = (SERVICES, job_namespace, subdomain)
            service = self.api.objects[key] if subdomain and key in self.api.objects else None
            service_spec = (service.raw.get("spec") or {}) if service is not None and not service.deleted else {}
            selector = service_spec.get("selector") or {}
            if service_spec.get("clusterIP") != "None" or not selector:
                continue
            if not all(pod_labels.get(key) == value for key, value in selector.items()):
                continue
            ready = self._ready_indexes(job_namespace, job_name)
            for index in range(spec.get("completions", 1)):
                if index not in ready and not service_spec.get("publishNotReadyAddresses"):
                    continue  # the endpoints list a pod that is not ready only when the Service publishes it
                host = f"{job_name}-{index}.{subdomain}"
                hosts = [
                    f"{host}.{job_namespace}",
                    f"{host}.{job_namespace}.svc",
                    f"{host}.{job_namespace}.svc.cluster.local",
                ]
                if job_namespace == namespace:
                    hosts.append(host)
                for port in service_spec.get("ports") or []:
                    key = (job_namespace, job_name, index, port["port"])
                    local = self._worker_ports.setdefault(key, f"127.0.0.1:{free_port()}")
                    found.update({f"{name}:{port['port']}": local for name in hosts})
        return found

    def _ready_indexes(self, namespace: str, job: str) -> set[int]:
        """The indexes of an Indexed Job whose pod is ready (its ``Ready`` condition True)."""
        ready = set()
        for _, _, pod in self._live(PODS, namespace):
            metadata = pod.raw.get("metadata") or {}
            if (metadata.get("labels") or {}).get(JOB_NAME_LABEL) != job:
                continue
            conditions = (pod.raw.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                ready.add(int(metadata["annotations"][COMPLETION_INDEX]))
        return ready

    def _service_target(self, namespace: str, selector: dict) -> str | None:
        """``127.0.0.1:PORT`` of the server of the Deployment whose pods ``selector`` picks, if it serves."""
        for name, _ in self._selected_deployments(namespace, selector):
            template_hash = self.serving.get((namespace, name))
            if template_hash is not None and self.broken_answers:
                return self._broken_address
            if template_hash is not None:
                return self.servers[template_hash].url.removeprefix("http://")
        return None

    @staticmethod
    def resolve(text: str, addresses: dict[str, str]) -> str:
        """``text`` with each ``host:port`` of ``addresses`` (and ``http://host`` for port 80) rewritten."""
        for address, local in sorted(addresses.items(), key=lambda item: -len(item[0])):
            host, port = address.rsplit(":", 1)
            text = re.sub(rf"(?<![\w.-]){re.escape(address)}(?![\w])", local, text)
            if port == "80":
                text = re.sub(rf"(?<=http://){re.escape(host)}(?=[/?]|$)", local, text)
        return text

    # ---- the kubelet ------------------------------------------------------------------------------------
    def _log_file(self, pod_name: str) -> Path:
        return self.workdir / "pods" / f"{pod_name}.log"

    async def _kubelet(self) -> None:
        while True:
            async with self.api._lock:
                for (kind, namespace, name), obj in list(self.api.objects.items()):
                    if kind != PODS:
                        continue
                    if name in self.processes:
                        self._collect_log(name)
                    if obj.deleted:
                        self._stop_process(name)
                    elif obj.raw.get("status", {}).get("phase", "Pending") == "Pending" and not self.hold_pods:
                        if self.unschedulable:
                            self._leave_unscheduled(obj)
                        else:
                            self._start(obj, namespace, name)
                    elif name in self.processes and self.processes[name].poll() is not None:
                        self._finish(obj, name)
                    elif name in self.processes and self._past_deadline(obj, name):
                        self._stop_at_deadline(name)
                    elif name in self._restarts and time.monotonic() >= self._restarts[name]:
                        self._restart(obj, namespace, name)
            await asyncio.sleep(self.poll)

    def _collect_log(self, name: str) -> None:
        """Stamp the lines the container wrote since the last look, as the kubelet's log files do."""
        with self._log_file(name).open("rb") as log:
            log.seek(self._log_offsets.get(name, 0))
            written = log.read()
        complete = written[: written.rfind(b"\n") + 1]
        self._log_offsets[name] = self._log_offsets.get(name, 0) + len(complete)
        now = datetime.datetime.now(datetime.UTC)
        self.logs.setdefault(name, []).extend((now, line) for line in complete.decode(errors="replace").splitlines())

    def _environment(self, container: dict, pod: dict) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        environment["PYTHONPATH"] = str(REPO)
        name = pod["metadata"]["name"]
        for variable in container.get("env") or []:
            field = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
            if "value" in variable:
                environment[variable["name"]] = variable["value"]
            elif found := re.fullmatch(r"metadata\.(annotations|labels)\['([^']+)'\]", field):
                environment[variable["name"]] = (pod["metadata"].get(found.group(1)) or {}).get(found.group(2), "")
            elif field in ("metadata.name", "metadata.namespace"):
                environment[variable["name"]] = pod["metadata"][field.split(".")[1]]
            elif variable.get("valueFrom", {}).get("resourceFieldRef", {}).get("resource") == "limits.cpu":
                cpu = container["resources"]["limits"]["cpu"]
                environment[variable["name"]] = str(
                    max(1, int(float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)))
                )
        environment["TASKS_RESULT_FILE"] = str(self.workdir / "pods" / f"{name}.result")
        return environment

    def _resolved(self, container: dict, namespace: str, pod: dict) -> tuple[list[str], dict[str, str]]:
        """The container's args and environment with the cluster's names rewritten (``addresses``)."""
        addresses = self.addresses(namespace)
        environment = {key: self.resolve(value, addresses) for key, value in self._environment(container, pod).items()}
        return [self.resolve(argument, addresses) for argument in container.get("args", [])], environment

    def _leave_unscheduled(self, obj) -> None:
        """No node fits: the scheduler says why in the pod's PodScheduled condition, and the pod stays Pending."""
        scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        if scheduled.items() <= next(iter(obj.raw.get("status", {}).get("conditions") or []), {}).items():
            return
        condition = scheduled | {"message": UNSCHEDULABLE_MESSAGE, "lastTransitionTime": _now()}
        obj.patch({"status": None})
        obj.patch({"status": {"phase": "Pending", "conditions": [condition]}})

    def _run(self, pod: dict, namespace: str) -> None:
        """Start the pod's container (appending to its log, as a restarted container's log goes on)."""
        name, [container] = pod["metadata"]["name"], pod["spec"]["containers"]
        (self.workdir / "pods").mkdir(exist_ok=True)
        arguments, environment = self._resolved(container, namespace, pod)
        self.environments[name] = environment
        with self._log_file(name).open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "tasks", *arguments],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def _restart(self, obj, namespace: str, name: str) -> None:
        """The back-off is over: the crashed container runs again in the same pod."""
        del self._restarts[name]
        self._run(obj.raw, namespace)
        status = copy.deepcopy(obj.raw["status"])
        status["containerStatuses"][0].update(ready=True, started=True, state={"running": {"startedAt": _now()}})
        status["conditions"] = _with_ready(status.get("conditions"), True)
        obj.patch({"status": None})
        obj.patch({"status": status})

    def _past_deadline(self, obj, name: str) -> bool:
        deadline = obj.raw["spec"].get("activeDeadlineSeconds")
        return deadline is not None and time.monotonic() - self._started[name] > deadline

    def _stop_at_deadline(self, name: str) -> None:
        """The pod ran past its ``activeDeadlineSeconds``: the kubelet kills its container (``_finish`` then fails
        the pod, reason ``DeadlineExceeded``, whatever its restart policy)."""
        self._deadline_exceeded.add(name)
        self.processes[name].kill()
        self.processes[name].wait()

    def _start(self, obj, namespace: str, name: str) -> None:
        pod = obj.raw
        [container] = [c for c in pod["spec"]["containers"]]
        self.pods_run.append(copy.deepcopy(pod))
        self._started[name] = time.monotonic()
        self._run(pod, namespace)
        obj.patch(
            {
                "status": {
                    "phase": "Running",
                    "startTime": _now(),
                    "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "ready": True,
                            "restartCount": 0,
                            "image": container["image"],
                            "imageID": "",
                            "started": True,
                            "state": {"running": {"startedAt": _now()}},
                        }
                    ],
                }
            }
        )

    def _finish(self, obj, name: str) -> None:
        self._collect_log(name)
        code = self.processes.pop(name).returncode
        code = 128 - code if code < 0 else code  # killed by signal N: the runtime reports 128 + N (137: SIGKILL)
        container = obj.raw["spec"]["containers"][0]
        result = self.workdir / "pods" / f"{name}.result"
        message = result.read_text() if result.exists() else ""
        result.unlink(missing_ok=True)
        if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = [line for _, line in self.logs.get(name, [])][-_LOG_TAIL_LINES:]
            message = "\n".join(lines)[-_LOG_TAIL_BYTES:]
        terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "message": message,
            "startedAt": obj.raw["status"]["startTime"],
            "finishedAt": _now(),
        }
        status = copy.deepcopy(obj.raw["status"])
        if name in self._deadline_exceeded:
            status |= {
                "reason": "DeadlineExceeded",
                "message": "Pod was active on the node longer than the specified deadline",
            }
            status["phase"] = "Failed"
            status["containerStatuses"][0].update(ready=False, started=False, state={"terminated": terminated})
        elif code != 0 and obj.raw["spec"].get("restartPolicy") in ("OnFailure", "Always"):
            # Restarted in place after a back-off: the pod stays Running, the crash is the container's lastState.
            waiting = {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 10s restarting failed container={container['name']} pod={name}",
            }
            status["containerStatuses"][0].update(
                ready=False,
                started=False,
                restartCount=status["containerStatuses"][0].get("restartCount", 0) + 1,
                lastState={"terminated": terminated},
                state={"waiting": waiting},
            )
            self._restarts[name] = time.monotonic() + _CRASH_LOOP_SECONDS
        else:
            status["phase"] = "Succeeded" if code == 0 else "Failed"
            status["containerStatuses"][0].update(ready=False, started=False, state={"terminated": terminated})
        status["conditions"] = _with_ready(status.get("conditions"), False)  # its container is not ready now
        obj.patch({"status": None})
        obj.patch({"status": status})

    def _stop_process(self, name: str) -> None:
        self._restarts.pop(name, None)
        process = self.processes.pop(name, None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    async def _pod_log(self, request):
        """The container's log (``sinceSeconds``, ``tailLines``, ``timestamps``), followed while it runs."""
        name, params = request.name, {key: value.lower() for key, value in request.params.items()}
        lines = self.logs.get(name, [])
        sent = max(0, len(lines) - int(params["taillines"])) if params.get("taillines") else 0
        if params.get("sinceseconds"):
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=int(params["sinceseconds"]))
            sent = next((index for index, (stamp, _) in enumerate(lines) if stamp >= since), len(lines))
        yield b""  # the response starts even while there is nothing to send yet
        while True:
            running, lines = name in self.processes, self.logs.get(name, [])
            for stamp, line in lines[sent:]:
                prefix = f"{stamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')} " if params.get("timestamps") == "true" else ""
                yield f"{prefix}{line}\n".encode()
            sent = len(lines)
            if params.get("follow") != "true" or not running:
                return
            await asyncio.sleep(self.poll)

    # ---- the Deployment controller and the Service ------------------------------------------------------
    async def _deployment_controller(self) -> None:
        while True:
            for deployment in self.objects(DEPLOYMENTS):
                key = (deployment["metadata"]["namespace"], deployment["metadata"]["name"])
                generation = deployment["metadata"]["generation"]
                if self._generations.get(key) != generation:
                    self._generations[key] = generation
                    asyncio.get_running_loop().create_task(self._roll_out(key, deployment))
            await asyncio.sleep(self.poll)

    async def _set_status(self, key: tuple[str, str], status: dict) -> None:
        async with self.api._lock:
            obj = self.api.objects[DEPLOYMENTS, key[0], key[1]]
            if obj.deleted or obj.raw["metadata"]["generation"] != status["observedGeneration"]:
                return  # a newer generation took over
            obj.patch({"status": None})
            obj.patch({"status": status})

    async def _roll_out(self, key: tuple[str, str], deployment: dict) -> None:
        spec, generation = deployment["spec"], deployment["metadata"]["generation"]
        wanted = spec.get("replicas", 1)
        old = (deployment.get("status") or {}).get("availableReplicas", 0)
        template = json.dumps(spec["template"], sort_keys=True)
        template_hash = hashlib.sha256(template.encode()).hexdigest()[:10]
        pod_name = f"{key[1]}-{template_hash}-{secrets.token_hex(3)[:5]}"  # as its ReplicaSet names a pod
        refused = pod_security.forbidden_message(
            pod_name, self.api.namespace_labels(key[0]), spec["template"].get("spec") or {}
        )
        if refused:  # the ReplicaSet cannot create a pod: FailedCreate, and the rollout stalls
            failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refused}
            await self._set_status(
                key,
                {
                    "observedGeneration": generation,
                    "replicas": old,
                    "updatedReplicas": 0,
                    "availableReplicas": old,
                    "readyReplicas": old,
                    "conditions": [failure],
                },
            )
            return
        await self._set_status(
            key,
            {
                "observedGeneration": generation,
                "replicas": old + 1,
                "updatedReplicas": 0,
                "availableReplicas": old,
                "readyReplicas": old,
            },
        )
        if self.broken_rollouts and template_hash not in self.servers:
            return  # a new revision's pods never become ready; an earlier revision's still can
        if template_hash not in self.servers:
            args = spec["template"]["spec"]["containers"][0]["args"]
            model, flags = args[args.index("--model") + 1], _server_flags(args)
            server = ServerProcess(Path(model), *flags, log=self.workdir / f"server-{template_hash}.log")
            self.servers[template_hash] = server
            await asyncio.get_running_loop().run_in_executor(None, server.wait_ready)
        self.serving[key] = template_hash
        await self._set_status(
            key,
            {
                "observedGeneration": generation,
                "replicas": wanted,
                "updatedReplicas": wanted,
                "availableReplicas": wanted,
                "readyReplicas": wanted,
            },
        )

    async def _start_broken_server(self) -> str:
        """What the Service answers with ``broken_answers``: ``/ping`` up, ``/invocations`` what no model would."""

        async def ping(request):
            return aiohttp.web.json_response({})

        async def invocations(request):
            return aiohttp.web.json_response({"predictions": []})

        app = aiohttp.web.Application()
        app.router.add_get("/ping", ping)
        app.router.add_post("/invocations", invocations)
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
        return f"127.0.0.1:{port}"

    # ---- the HorizontalPodAutoscaler and disruption controllers, Namespaces -------------------------------
    def create_namespace(self, manifest: dict) -> None:
        """A Namespace object, as ``kubectl apply`` makes it; its labels opt it into Pod Security admission."""

        async def create() -> None:
            async with self.api._lock:
                self.api.objects[NAMESPACES, None, manifest["metadata"]["name"]] = copy.deepcopy(manifest)

        asyncio.run_coroutine_threadsafe(create(), self.loop).result(10)

    async def _autoscaler(self) -> None:
        """Each HPA keeps its Deployment between ``minReplicas`` and ``maxReplicas``, at what its metrics ask
        (``metrics_replicas[(namespace, hpa)]``; without metrics, the current count), written through the
        ``scale`` subresource by the kube-controller-manager, which then owns ``spec.replicas``."""
        while True:
            async with self.api._lock:
                for namespace, name, hpa in self._live(AUTOSCALERS):
                    spec = hpa.raw.get("spec") or {}
                    target = (DEPLOYMENTS, namespace, (spec.get("scaleTargetRef") or {}).get("name"))
                    if target not in self.api.objects:
                        continue
                    deployment = self.api.objects[target]
                    if deployment.deleted:
                        continue
                    current = deployment.raw["spec"].get("replicas", 1)
                    wanted = self.metrics_replicas.get((namespace, name), current)
                    desired = max(spec.get("minReplicas", 1), min(spec["maxReplicas"], wanted))
                    if desired != current:
                        live = {key: value for key, value in deployment.raw.items() if key != "status"}
                        scaled = server_side_apply.update(
                            live, {("spec", "replicas"): desired}, AUTOSCALER_MANAGER, subresource="scale"
                        )
                        scaled["metadata"]["generation"] = live["metadata"].get("generation", 0) + 1
                        deployment.patch(_replacing(live, scaled))
                    status = {"currentReplicas": current, "desiredReplicas": desired}
                    if hpa.raw.get("status") != status:
                        hpa.patch({"status": status})
            await asyncio.sleep(self.poll)

    async def _disruption_controller(self) -> None:
        """Each PodDisruptionBudget's status as the disruption controller keeps it (policy/v1): the pods
        expected (the selected Deployment's replicas), the healthy ones (its available replicas), and
        ``disruptionsAllowed`` = healthy - desired healthy, where desired healthy is ``minAvailable``, or the
        expected pods less ``maxUnavailable``. An eviction is allowed while it is at least 1."""
        while True:
            async with self.api._lock:
                for namespace, _, budget in self._live(BUDGETS):
                    spec = budget.raw.get("spec") or {}
                    selector = (spec.get("selector") or {}).get("matchLabels") or {}
                    expected = healthy = 0
                    for _, deployment in self._selected_deployments(namespace, selector):
                        expected += deployment["spec"].get("replicas", 1)
                        healthy += (deployment.get("status") or {}).get("availableReplicas", 0)
                    if "minAvailable" in spec:
                        desired = spec["minAvailable"]
                    else:
                        desired = max(0, expected - spec.get("maxUnavailable", 0))
                    status = {
                        "expectedPods": expected,
                        "currentHealthy": healthy,
                        "desiredHealthy": desired,
                        "disruptionsAllowed": max(0, healthy - desired),
                    }
                    if budget.raw.get("status") != status:
                        budget.patch({"status": status})
            await asyncio.sleep(self.poll)

    # ---- the training operator --------------------------------------------------------------------------
    async def _training_operator(self) -> None:
        while True:
            for job in self.objects(TFJOBS):
                if not job.get("status"):
                    await self._create_workers(job)
                else:
                    await self._report(job)
            await asyncio.sleep(self.poll)

    async def _create_workers(self, job: dict) -> None:
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        workers = job["spec"]["tfReplicaSpecs"]["Worker"]
        ports = [free_port() for _ in range(workers["replicas"])]
        job_uid = job["metadata"].get("uid") or hashlib.sha1(name.encode()).hexdigest()
        async with self.api._lock:
            for index in range(workers["replicas"]):
                template = copy.deepcopy(workers["template"])
                tf_config = {
                    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                    "task": {"type": "worker", "index": index},
                }
                for container in template["spec"]["containers"]:
                    container.setdefault("env", []).append({"name": "TF_CONFIG", "value": json.dumps(tf_config)})
                # The operator restarts ExitCode pods itself (it recreates them); the kubelet restarts the others.
                policy = workers.get("restartPolicy", "Never")
                template["spec"]["restartPolicy"] = "Never" if policy == "ExitCode" else policy
                labels = {
                    **template["metadata"].get("labels", {}),
                    "training.kubeflow.org/job-name": name,
                    "training.kubeflow.org/replica-index": str(index),
                }
                owner = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": name, "uid": job_uid}
                if not self._admitted(f"{name}-worker-{index}", namespace, template["spec"], owner, "tfjob-controller"):
                    continue  # the operator tries again on its next sync and is refused again: not simulated
                self.api.objects[PODS, namespace, f"{name}-worker-{index}"] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "spec": template["spec"],
                    "status": {"phase": "Pending"},
                    "metadata": {"name": f"{name}-worker-{index}", "namespace": namespace, "labels": labels},
                }
            self.api.objects[TFJOBS, namespace, name].patch(
                {
                    "status": {
                        "conditions": [{"type": "Created", "status": "True"}],
                        "replicaStatuses": {"Worker": {"active": 0}},
                    }
                }
            )

    async def _report(self, job: dict) -> None:
        namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
        pods = [
            pod
            for pod in self.objects(PODS, namespace)
            if (pod["metadata"].get("labels") or {}).get("training.kubeflow.org/job-name") == name
        ]
        phases = [pod.get("status", {}).get("phase") for pod in pods]
        counts = {
            "active": phases.count("Running"),
            "succeeded": phases.count("Succeeded"),
            "failed": phases.count("Failed"),
        }
        restarts = sum(
            status.get("restartCount", 0)
            for pod in pods
            for status in pod.get("status", {}).get("containerStatuses") or []
        )
        conditions = [{"type": "Created", "status": "True"}]
        if restarts > job["spec"].get("runPolicy", {}).get("backoffLimit", restarts):
            conditions.append({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"})
        elif counts["failed"]:
            conditions.append({"type": "Failed", "status": "True", "reason": "TFJobFailed"})
        elif counts["succeeded"] == job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"]:
            conditions.append({"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded"})
        async with self.api._lock:
            obj = self.api.objects[TFJOBS, namespace, name]
            if not obj.deleted:
                obj.patch({"status": None})
                obj.patch({"status": {"conditions": conditions, "replicaStatuses": {"Worker": counts}}})

    # ---- the Job controller (batch/v1) -----------------------------------------------------------------------
    async def _job_controller(self) -> None:
        while True:
            async with self.api._lock:
                for namespace, name, obj in self._live(JOBS):
                    self._sync_job(obj, namespace, name)
            await asyncio.sleep(self.poll)

    def _sync_job(self, obj, namespace: str, name: str) -> None:
        """Count the Job's finished pods once each, apply its pod failure policy and backoff limit, re-create a
        failed index, and end the Job ``Complete`` or ``Failed`` (deleting its active pods)."""
        spec, status = obj.raw["spec"], copy.deepcopy(obj.raw.get("status") or {})
        if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in status.get("conditions") or []):
            return
        status.setdefault("startTime", _now())
        for counter in ("active", "succeeded", "failed"):
            status.setdefault(counter, 0)
        completed = {int(index) for index in filter(None, status.get("completedIndexes", "").split(","))}
        pods = [
            pod.raw
            for _, _, pod in self._live(PODS, namespace)
            if (pod.raw["metadata"].get("labels") or {}).get(JOB_NAME_LABEL) == name
        ]
        failure = None
        for pod in pods:
            pod_name, phase = pod["metadata"]["name"], pod.get("status", {}).get("phase")
            if phase not in ("Succeeded", "Failed") or pod_name in self._counted:
                continue
            self._counted.add(pod_name)
            if phase == "Succeeded":
                status["succeeded"] += 1
                completed.add(int(pod["metadata"]["annotations"][COMPLETION_INDEX]))
                continue
            action, why = self._pod_failure_action(spec, pod)
            if action != "Ignore":
                status["failed"] += 1
            if action == "FailJob":
                failure = failure or ("PodFailurePolicy", why)
        if failure is None and status["failed"] > spec.get("backoffLimit", 6):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        status["completedIndexes"] = ",".join(str(index) for index in sorted(completed))
        active = {
            int(pod["metadata"]["annotations"][COMPLETION_INDEX])
            for pod in pods
            if pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        }
        if failure:
            reason, message = failure
            self.api.delete_pods(namespace, JOB_NAME_LABEL, name, active_only=True)
            status["active"] = 0
            status["conditions"] = [{"type": "Failed", "status": "True", "reason": reason, "message": message}]
        elif len(completed) >= spec.get("completions", 1):
            status["active"] = 0
            status["completionTime"] = _now()
            status["conditions"] = [{"type": "Complete", "status": "True", "reason": "CompletionsReached"}]
        else:
            room = spec.get("parallelism", 1) - len(active)
            for index in sorted(set(range(spec.get("completions", 1))) - completed - active)[: max(room, 0)]:
                if self._create_job_pod(obj.raw, namespace, name, index):
                    active.add(index)
            status["active"] = len(active)
        if status != obj.raw.get("status"):
            obj.patch({"status": None})
            obj.patch({"status": status})

    @staticmethod
    def _pod_failure_action(spec: dict, pod: dict) -> tuple[str, str]:
        """The action of the first ``podFailurePolicy`` rule a failed pod matches (``Count`` when none), and
        the controller's message for it."""
        statuses = pod.get("status", {}).get("containerStatuses") or []
        conditions = pod.get("status", {}).get("conditions") or []
        for index, rule in enumerate((spec.get("podFailurePolicy") or {}).get("rules") or []):
            codes = rule.get("onExitCodes")
            for status in statuses if codes else []:
                code = ((status.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0) or codes.get("containerName") not in (None, status["name"]):
                    continue
                if (code in codes["values"]) == (codes["operator"] == "In"):
                    pod_name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
                    return rule["action"], (
                        f"Container {status['name']} for pod {pod_name} failed with exit code {code} "
                        f"matching {rule['action']} rule at index {index}"
                    )
            for wanted in rule.get("onPodConditions") or []:
                if any(c["type"] == wanted["type"] and c["status"] == wanted.get("status", "True") for c in conditions):
                    return rule["action"], f"Pod matched {rule['action']} rule at index {index}"
        return "Count", ""

    def _create_job_pod(self, job: dict, namespace: str, name: str, index: int) -> bool:
        """Pod ``NAME-INDEX-xxxxx`` of an Indexed Job, as the Job controller creates it; False when admission
        (Pod Security) refuses it: then no pod, a Warning ``FailedCreate`` event on the Job instead."""
        template = copy.deepcopy(job["spec"]["template"])
        metadata, spec = template.get("metadata") or {}, template["spec"]
        uid = job["metadata"].get("uid") or hashlib.sha1(name.encode()).hexdigest()
        labels = {
            **(metadata.get("labels") or {}),
            JOB_NAME_LABEL: name,
            "job-name": name,
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
            COMPLETION_INDEX: str(index),
        }
        spec["hostname"] = f"{name}-{index}"
        for container in spec["containers"]:
            field = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}
            container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "valueFrom": field})
        pod_name = f"{name}-{index}-{secrets.token_hex(3)[:5]}"
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": True}
        if not self._admitted(pod_name, namespace, spec, owner, "job-controller"):
            return False
        self.api.objects[PODS, namespace, pod_name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": namespace,
                "labels": labels,
                "annotations": {**(metadata.get("annotations") or {}), COMPLETION_INDEX: str(index)},
                "ownerReferences": [owner | {"blockOwnerDeletion": True}],
                "creationTimestamp": _now(),
            },
            "spec": spec,
            "status": {"phase": "Pending"},
        }
        return True

    def _admitted(self, pod_name: str, namespace: str, spec: dict, owner: dict, controller: str) -> bool:
        """Whether admission (Pod Security) lets a controller create the pod; a refusal is a Warning
        ``FailedCreate`` event on the owner, worded as controllers word it (``Error creating: ...``)."""
        refused = pod_security.forbidden_message(pod_name, self.api.namespace_labels(namespace), spec)
        if refused:
            involved = {key: owner[key] for key in ("apiVersion", "kind", "name", "uid")} | {"namespace": namespace}
            self.api.record_event(involved, "FailedCreate", f"Error creating: {refused}", controller)
        return not refused
