"""The local platform's endpoint: ``deploy-local``, ``rollback``, ``status`` and ``stop-local``.

``deploy-local --model DIR --state DIR`` starts ``python -m tasks serve --state DIR`` detached (its own
session, so it outlives the command and the Airflow task that ran it) and waits until it answers ``/ping``.
When an endpoint already runs from that state folder, the command instead asks it over the owner-only
control socket to swap in the new model; the server verifies its content digest (``--model-digest``, and
the one sealed in the folder), loads, warms and smoke-checks it beside the old one, records the switch in
``state.json`` and switches only if all of that succeeded. Either way the command fails, naming the reason,
unless the new model is the one being served; when it fails, the endpoint serves what it served before.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import IO

from tasks.config import DeployLocalArguments, EndpointArguments, ServeArguments
from tasks.endpoint import control_client
from tasks.endpoint import state as endpoint_state
from tasks.endpoint.state import client_url
from tasks.errors import EndpointError

log = logging.getLogger(__name__)

_STATUS_TIMEOUT = 10.0
_LOG_TAIL_LINES = 20


def deploy(args: DeployLocalArguments) -> None:
    folder = endpoint_state.prepare(args.state)
    model = args.model if "://" in args.model else str(Path(args.model).expanduser().absolute())
    running = _live_status(folder)
    if running is None:
        _start(args, model, folder)
        answer = _call(folder, {"action": "status"}, _STATUS_TIMEOUT)
    else:
        log.info(
            "rolling %s out to the endpoint at %s: load, warm up and smoke-check beside %s",
            model,
            running["url"],
            (running["current"] or {}).get("version"),
        )
        answer = _call(folder, {"action": "deploy", "model": model, "digest": args.model_digest}, args.timeout)
    print(summary(answer))


def rollback(args: EndpointArguments) -> None:
    folder = Path(args.state).absolute()
    running = _live_status(folder)
    if running is None:
        raise EndpointError(f"no endpoint runs from {folder}; start one with `python -m tasks deploy-local`")
    serving = (running["current"] or {}).get("version")
    if args.expect_version and serving != args.expect_version:
        print(f"nothing to roll back: the endpoint serves {serving}, not {args.expect_version}")
        return
    print(summary(_call(folder, {"action": "rollback"}, args.timeout)))


def status(args: EndpointArguments) -> None:
    folder = Path(args.state).absolute()
    answer = _live_status(folder)
    if answer is None:
        recorded = endpoint_state.read(folder)
        if recorded is None:
            raise EndpointError(f"no endpoint was ever started from {folder}")
        last = (recorded.get("current") or {}).get("version", "nothing")
        raise EndpointError(f"the endpoint of {folder} is not running (pid {recorded.get('pid')} served {last})")
    print(json.dumps(answer, sort_keys=True) if args.json else summary(answer))


def stop(args: EndpointArguments) -> None:
    """SIGTERM the endpoint: it finishes the requests in flight, then exits."""
    folder = Path(args.state).absolute()
    answer = _live_status(folder)
    if answer is None:
        print(f"no endpoint runs from {folder}")
        return
    os.kill(answer["pid"], signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while endpoint_state.pid_alive(answer["pid"]):
        if time.monotonic() > deadline:
            raise EndpointError(f"the endpoint (pid {answer['pid']}) did not stop within {args.timeout:.0f} s")
        time.sleep(0.1)
    print(f"stopped the endpoint at {answer['url']} (pid {answer['pid']})")


def summary(answer: dict) -> str:
    current, previous = answer.get("current"), answer.get("previous")
    lines = [
        f"endpoint  {answer['url']}  (pid {answer['pid']}, up since {answer['started_at']})",
        f"serving   {_deployment(current)}",
        f"previous  {_deployment(previous)}",
        "history (latest last):",
        *(
            f"  {entry['at']}  {entry['action']:<8} {entry['version'] or '-':<19} {entry['model']}"
            f"  {entry['result']}{': ' + entry['reason'] if entry.get('reason') else ''}"
            for entry in answer.get("history", [])[-5:]
        ),
    ]
    return "\n".join(lines)


def _deployment(record: dict | None) -> str:
    if not record:
        return "-"
    return f"{record['version']}  {record.get('digest') or 'no digest'}  {record['model']}  (since {record['since']})"


def _call(folder: Path, request: dict, timeout: float) -> dict:
    answer = control_client.call(folder / endpoint_state.CONTROL_SOCKET, request, timeout)
    if not answer.get("ok"):
        raise EndpointError(answer.get("error", f"the endpoint refused {request}"))
    return answer


def _live_status(folder: Path) -> dict | None:
    """The running endpoint's own account of itself, or None when none answers on the folder's socket."""
    try:
        return _call(folder, {"action": "status"}, _STATUS_TIMEOUT)
    except control_client.NotRunning:
        return None


def _start(args: DeployLocalArguments, model: str, folder: Path) -> None:
    _require_free_port(args.host, args.port)
    kept = [spec for spec in fields(ServeArguments) if spec.name not in ("model", "state")]
    flags = [flag for spec in kept if (flag := _flag(spec, getattr(args, spec.name)))]
    flags += [f"--model={model}", f"--state={folder}"]
    with (folder / endpoint_state.SERVER_LOG).open("ab") as output:
        process = spawn_server(flags, output, detached=True)
    url = client_url(args.host, args.port)
    log.info(
        "started the endpoint (pid %d) at %s; waiting for %s to load, warm up and pass its smoke check",
        process.pid,
        url,
        model,
    )
    try:
        wait_ready(url, process, args.timeout, folder / endpoint_state.SERVER_LOG)
    except EndpointError:
        terminate(process)
        raise


def _flag(spec, value: object) -> str | None:
    """``value`` as the flag of the ServeArguments field ``spec``. A bool flag is a switch (tasks.cli): given when
    on; when off, left out, or said off (``--no-capture-text``) when the field may be not given (None), since the
    server would then take its environment's value."""
    flag = f"--{spec.name.replace('_', '-')}"
    if isinstance(value, bool):
        return flag if value else (f"--no-{flag[2:]}" if spec.default is None else None)
    return f"{flag}={value}"


def spawn_server(
    flags: list[str], output: IO, *, detached: bool = False, environment: dict[str, str] | None = None
) -> subprocess.Popen:
    """``python -m tasks serve FLAGS`` with its output in ``output``; ``detached``: in a session of its own;
    ``environment``: variables added to this process's (what a SageMaker model's Environment sets)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tasks", "serve", *flags],
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=detached,
        env={**os.environ, **environment} if environment else None,
    )


def wait_ready(url: str, process: subprocess.Popen, timeout: float, log_file: Path) -> str:
    """Wait until ``url/ping`` answers 200 and return the model version; EndpointError with the log's tail
    if the server exits, reports that its model failed, or is not ready within ``timeout`` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EndpointError(f"the server exited with {process.returncode}:\n{_tail(log_file)}")
        try:
            answer = httpx.get(f"{url}/ping", timeout=2)
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 200:
            return answer.json()["model_version"]
        if answer is not None and answer.status_code == 503 and answer.json().get("status") == "failed":
            raise EndpointError(f"the server could not serve its model: {answer.json()['error']}")
        time.sleep(0.25)
    raise EndpointError(f"the server was not ready within {timeout:.0f} s:\n{_tail(log_file)}")


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM, 30 s to drain and exit, then SIGKILL."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _require_free_port(host: str, port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise EndpointError(f"cannot listen on {host}:{port}: {error.strerror}; pass another --port") from None


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join(lines[-_LOG_TAIL_LINES:])
