"""A Kubernetes cluster for the nlp_eks tests: kmock's API emulator on 127.0.0.1 plus the parts that act.

kmock's ``KubernetesEmulator`` stores objects and serves create, read, list, watch, patch and delete over
HTTP. ``FakeKubernetes`` runs it in a thread with its own event loop, and adds what a cluster does:

- the API server: label selectors on lists; server-side apply (``application/apply-patch+yaml``) creating a
  missing object and replacing the fields the manager applied; ``metadata.generation`` bumped when a
  Deployment's spec changes; ``pods/log`` (``follow``, ``timestamps``, ``sinceSeconds``, ``tailLines``);
  the Service proxy, answered by the Deployment's server;
- a kubelet: a pod runs its container here, ``python -m tasks ARGS`` with the container's env (the CPU limit
  resolved for ``OMP_NUM_THREADS``) and ``TASKS_RESULT_FILE`` pointed at a file that becomes the termination
  message (or, with ``FallbackToLogsOnError``, the log's last lines after a failure); deleting the pod stops
  it. The artefact volume is a folder of the test, mounted at its own path (Variable ``nlp_k8s_volume_path``);
- the Deployment controller: each new generation starts ``python -m tasks serve`` on the template's model,
  and reports the rollout (``observedGeneration``, updated and available replicas) once it answers
  ``/ping``; ``broken_rollouts`` keeps a new revision (a pod template not seen before) from ever becoming available;
- the training operator: a TFJob gets one pod per worker, each with its ``TF_CONFIG``, and the conditions
  ``Succeeded`` or ``Failed`` from them; deleting it deletes its pods first (foreground deletion).

``hold_pods`` keeps new pods Pending (not started) until it is cleared; ``broken_answers`` makes the Service
answer what no model would.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import kmock
import yaml

from tests.conftest import REPO, ServerProcess, free_port

PODS = kmock.resource("v1/pods")
DEPLOYMENTS = kmock.resource("apps/v1/deployments")
TFJOBS = kmock.resource("kubeflow.org/v1/tfjobs")
SERVICES = kmock.resource("v1/services")
_SERVER_FIELDS = ("generation", "uid", "resourceVersion", "creationTimestamp")
_LOG_TAIL_LINES, _LOG_TAIL_BYTES = 80, 2048  # what Kubernetes keeps of the log for FallbackToLogsOnError


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


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator with the API server behaviour the pipeline relies on."""

    async def _handle(self, request):
        if request.resource == TFJOBS and request.action == kmock.action.DELETE:
            async with self._lock:
                self._delete_workers(request.namespace, request.name)
        elif request.resource is not None and request.data and isinstance(request.data, dict):
            async with self._lock:
                self._prepare(request)
        return await super()._handle(request)

    def _delete_workers(self, namespace: str, job: str) -> None:
        """Foreground deletion: a TFJob's pods go before it does."""
        for (kind, pod_namespace, _), obj in list(self.objects.items()):
            if kind == PODS and pod_namespace == namespace and not obj.deleted:
                if (obj.raw["metadata"].get("labels") or {}).get("training.kubeflow.org/job-name") == job:
                    obj.delete()

    def _prepare(self, request) -> None:
        """Turn a server-side apply into the emulator's create or patch, and count a Deployment's generations."""
        key = (request.resource, request.namespace, request.name)
        exists = key in self.objects and not self.objects[key].deleted
        applying = "apply-patch" in request.headers.get("Content-Type", "")
        old = self.objects[key].raw if exists else {}
        if applying and not exists:
            self.objects[key] = {}
        elif applying:
            metadata = request.data.setdefault("metadata", {})
            kept = {name: old["metadata"][name] for name in _SERVER_FIELDS if name in old["metadata"]}
            replaced = _replacing({k: v for k, v in old.items() if k != "status"}, request.data)
            replaced["metadata"] = _replacing({k: v for k, v in old["metadata"].items() if k not in kept}, metadata)
            request.data.clear()
            request.data.update(replaced)
        if request.resource == PODS and request.action == kmock.action.CREATE:
            request.data["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}
        if request.resource == DEPLOYMENTS and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            generation = old.get("metadata", {}).get("generation", 0)
            spec = request.data.get("spec")
            changed = spec is not None and {k: v for k, v in spec.items() if v is not None} != old.get("spec")
            request.data.setdefault("metadata", {})["generation"] = generation + 1 if changed or not old else generation

    async def _serve_list(self, request):
        listed = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector:
            listed["items"] = [
                item for item in listed["items"] if _selected(item.get("metadata", {}).get("labels") or {}, selector)
            ]
        return listed


class FakeKubernetes:
    """The API server on 127.0.0.1 and the cluster's actors, in a thread; ``stop()`` ends both."""

    def __init__(self, workdir: Path, poll: float = 0.2):
        self.workdir, self.poll = workdir, poll
        self.volume = workdir / "volume"
        self.volume.mkdir(parents=True, exist_ok=True)
        self.hold_pods = self.broken_rollouts = self.broken_answers = False
        self.processes: dict[str, subprocess.Popen] = {}  # pod name -> its container's process
        self.logs: dict[str, list[tuple[datetime.datetime, str]]] = {}  # pod name -> (time, line) as written
        self._log_offsets: dict[str, int] = {}
        self.pods_run: list[dict] = []  # every pod the kubelet started, as created
        self.servers: dict[str, ServerProcess] = {}  # pod-template hash -> its server
        self.serving: dict[tuple[str, str], str] = {}  # (namespace, deployment) -> template hash serving now
        self._generations: dict[tuple[str, str], int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fake Kubernetes API server did not start")

    # ---- lifecycle ---------------------------------------------------------------------------------------
    async def _main(self) -> None:
        async with ApiServer() as api, kmock.Server(api) as server:
            self.api, self.url, self.loop = api, str(server.url).rstrip("/"), asyncio.get_running_loop()
            api.resources["v1/events"] = {}
            api.resources["v1/services"] = {}
            api[PODS, kmock.subresource("log")] << self._pod_log
            api["post", re.compile(r"/api/v1/namespaces/[^/]+/services/[^/]+/proxy/.*")] << self._proxy
            self._stopping = asyncio.Event()
            self._ready.set()
            actors = asyncio.gather(self._kubelet(), self._deployment_controller(), self._training_operator())
            await self._stopping.wait()
            actors.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await actors
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for server_process in self.servers.values():
            server_process.stop()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(60)

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

    def objects(self, resource, namespace: str | None = None) -> list[dict]:
        """The live objects of a resource (copies), for assertions."""
        return [
            copy.deepcopy(obj.raw)
            for (kind, ns, _), obj in list(self.api.objects.items())
            if kind == resource and (namespace is None or ns == namespace) and not obj.deleted
        ]

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
        for (kind, service_namespace, name), service in list(self.api.objects.items()):
            spec = service.raw.get("spec") or {}
            if kind != SERVICES or service.deleted:
                continue
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
        return found

    def _service_target(self, namespace: str, selector: dict) -> str | None:
        """``127.0.0.1:PORT`` of the server of the Deployment whose pods ``selector`` picks, if it serves."""
        if not selector:
            return None
        for (kind, deployment_namespace, name), deployment in list(self.api.objects.items()):
            if kind != DEPLOYMENTS or deployment_namespace != namespace or deployment.deleted:
                continue
            pod_labels = deployment.raw["spec"]["template"]["metadata"].get("labels") or {}
            if all(pod_labels.get(key) == value for key, value in selector.items()):
                template_hash = self.serving.get((namespace, name))
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
                        self._start(obj, namespace, name)
                    elif name in self.processes and self.processes[name].poll() is not None:
                        self._finish(obj, name)
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

    def _environment(self, container: dict, name: str) -> dict[str, str]:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        environment["PYTHONPATH"] = str(REPO)
        for variable in container.get("env") or []:
            if "value" in variable:
                environment[variable["name"]] = variable["value"]
            elif variable.get("valueFrom", {}).get("resourceFieldRef", {}).get("resource") == "limits.cpu":
                cpu = container["resources"]["limits"]["cpu"]
                environment[variable["name"]] = str(
                    max(1, int(float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)))
                )
        environment["TASKS_RESULT_FILE"] = str(self.workdir / "pods" / f"{name}.result")
        return environment

    def _resolved(self, container: dict, namespace: str, name: str) -> tuple[list[str], dict[str, str]]:
        """The container's args and environment with the cluster's names rewritten (``addresses``)."""
        addresses = self.addresses(namespace)
        environment = {key: self.resolve(value, addresses) for key, value in self._environment(container, name).items()}
        return [self.resolve(argument, addresses) for argument in container.get("args", [])], environment

    def _start(self, obj, namespace: str, name: str) -> None:
        pod = obj.raw
        [container] = [c for c in pod["spec"]["containers"]]
        (self.workdir / "pods").mkdir(exist_ok=True)
        self.pods_run.append(copy.deepcopy(pod))
        arguments, environment = self._resolved(container, namespace, name)
        with self._log_file(name).open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "tasks", *arguments],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
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
        container = obj.raw["spec"]["containers"][0]
        result = self.workdir / "pods" / f"{name}.result"
        message = result.read_text() if result.exists() else ""
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
        status["phase"] = "Succeeded" if code == 0 else "Failed"
        status["containerStatuses"][0].update(ready=False, started=False, state={"terminated": terminated})
        obj.patch({"status": None})
        obj.patch({"status": status})

    def _stop_process(self, name: str) -> None:
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
            model = args[args.index("--model") + 1]
            server = ServerProcess(Path(model), log=self.workdir / f"server-{template_hash}.log")
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

    async def _proxy(self, request):
        import aiohttp

        namespace, service = re.match(r"/api/v1/namespaces/([^/]+)/services/([^/:]+)", request.url.path).groups()
        template_hash = self.serving.get((namespace, service))
        if template_hash is None:
            raise kmock.KubernetesError(status=503, reason="ServiceUnavailable", message="no endpoints available")
        if self.broken_answers:
            return {"predictions": []}
        path = request.url.path.split("/proxy", 1)[1]
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.servers[template_hash].url + path, data=request.body, headers={"Content-Type": "application/json"}
            ) as response,
        ):
            return await response.json()

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
        async with self.api._lock:
            for index in range(workers["replicas"]):
                template = copy.deepcopy(workers["template"])
                tf_config = {
                    "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                    "task": {"type": "worker", "index": index},
                }
                for container in template["spec"]["containers"]:
                    container.setdefault("env", []).append({"name": "TF_CONFIG", "value": json.dumps(tf_config)})
                labels = {
                    **template["metadata"].get("labels", {}),
                    "training.kubeflow.org/job-name": name,
                    "training.kubeflow.org/replica-index": str(index),
                }
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
        phases = [
            pod.get("status", {}).get("phase")
            for pod in self.objects(PODS, namespace)
            if (pod["metadata"].get("labels") or {}).get("training.kubeflow.org/job-name") == name
        ]
        counts = {
            "active": phases.count("Running"),
            "succeeded": phases.count("Succeeded"),
            "failed": phases.count("Failed"),
        }
        conditions = [{"type": "Created", "status": "True"}]
        if counts["failed"]:
            conditions.append({"type": "Failed", "status": "True", "reason": "TFJobFailed"})
        elif phases and counts["succeeded"] == len(phases):
            conditions.append({"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded"})
        async with self.api._lock:
            obj = self.api.objects[TFJOBS, namespace, name]
            if not obj.deleted:
                obj.patch({"status": None})
                obj.patch({"status": {"conditions": conditions, "replicaStatuses": {"Worker": counts}}})
