"""The server under adversity, over real HTTP on 127.0.0.1: the app and uvicorn as ``serve`` runs them, in this
process, serving a stand-in model whose speed the test sets. Overload is shed with 503 and Retry-After, a request
that waits too long gets 503, a stuck or dead model worker fails ``/ping``, slow clients are cut off, deeply
nested JSON is a 400, and a fault's 500 names no internals. (The real model under the same attacks, and the
tokeniser: test_server.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from tasks.config import ServeArguments
from tasks.serving.served_model import Encoded
from tests.conftest import free_port

PAIR = {"sentence1": "The company posted a profit.", "sentence2": "The firm reported earnings."}


class StandIn:
    """A model that takes ``seconds`` per call (``hang``: until released), or raises ``fault``."""

    version, digest, max_seq_length, vocab_size = "fp32-standin", "", 128, 30522

    def __init__(self, seconds: float = 0.0, fault: BaseException | None = None):
        self.seconds, self.fault, self.calls = seconds, fault, 0
        self.release = threading.Event()

    def encode(self, pairs):
        return [Encoded([101, 102], [0, 0], [1, 1]) for _ in pairs]

    def predict(self, pairs):
        self.calls += 1
        if self.fault is not None:
            raise self.fault
        self.release.wait(self.seconds)
        return np.zeros((len(pairs), 2), dtype=np.float32)


@contextlib.contextmanager
def serving(model: StandIn, **flags):
    """``serve``'s app and uvicorn settings on 127.0.0.1 in a thread, ready once ``/ping`` answers 200."""
    import uvicorn

    from tasks.serving.server import create_app, uvicorn_config

    args = ServeArguments(host="127.0.0.1", port=free_port(), **flags)
    server = uvicorn.Server(uvicorn_config(args, create_app(args, load_model=lambda source, digest: model)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{args.port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield url
    finally:
        model.release.set()
        server.should_exit = True
        thread.join(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ping", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def test_a_flood_beyond_the_queue_is_shed_with_503_and_retry_after_and_every_request_is_answered():
    model = StandIn(seconds=0.2)
    with serving(model, max_batch_size=4, max_instances=8, max_queued_pairs=8, max_wait_ms=1) as url:

        async def flood():
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                return await asyncio.gather(
                    *(client.post("/invocations", json={"instances": [PAIR]}) for _ in range(48))
                )

        responses = asyncio.run(flood())
        statuses = [response.status_code for response in responses]
        assert set(statuses) == {200, 503} and len(statuses) == 48, statuses
        shed = [response for response in responses if response.status_code == 503]
        assert all(int(response.headers["Retry-After"]) >= 1 for response in shed)
        assert all(response.json()["error"].startswith("overloaded: ") for response in shed)
        assert statuses.count(200) >= 8, "the queue's worth is served"
        assert metric(url, "invocations_shed_total") == len(shed)
        assert metric(url, "queued_pairs") == 0, "every admitted pair left the queue"
        assert httpx.get(f"{url}/ping").status_code == 200, "overload is not ill health"


def test_a_request_that_waits_too_long_is_503_and_a_stuck_worker_fails_ping_until_it_recovers():
    model = StandIn(seconds=60)
    with serving(model, request_timeout=1) as url:
        started = time.monotonic()
        answer = httpx.post(f"{url}/invocations", json={"instances": [PAIR]}, timeout=30)
        assert answer.status_code == 503 and "no answer within 1 s" in answer.json()["error"]
        assert answer.headers["Retry-After"] == "1" and time.monotonic() - started < 5
        waited = time.monotonic()
        while (ping := httpx.get(f"{url}/ping", timeout=5)).status_code == 200:
            assert time.monotonic() - waited < 10, "a model call stuck beyond --request-timeout never fails /ping"
            time.sleep(0.1)
        assert ping.status_code == 503 and "the model worker is stuck" in ping.json()["error"]
        assert metric(url, "invocations_timeouts_total") == 1
        model.release.set()  # the call ends: the worker serves again
        model.seconds = 0
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/ping").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.post(f"{url}/invocations", json={"instances": [PAIR]}).status_code == 200


class WorkerKilled(BaseException):
    """Not an Exception: what no handler catches, so the model worker's task ends."""


def test_a_dead_model_worker_fails_ping():
    model = StandIn(fault=WorkerKilled("the worker died"))
    with serving(model, request_timeout=1) as url:
        answer = httpx.post(f"{url}/invocations", json={"instances": [PAIR]}, timeout=30)
        assert answer.status_code == 503
        ping = httpx.get(f"{url}/ping")
        assert ping.status_code == 503 and ping.json() == {
            "status": "unhealthy",
            "error": "the model worker is not running",
        }


def raw_connection(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    return connection


def closed_within(connection: socket.socket, seconds: float) -> bytes:
    """What the server sends until it closes the connection; fails if it is still open after ``seconds``."""
    connection.settimeout(seconds)
    received = b""
    try:
        while chunk := connection.recv(4096):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"the connection is still open after {seconds} s; received {received!r}") from None
    return received


def test_a_client_that_stalls_its_body_gets_408_and_is_disconnected():
    with serving(StandIn(), body_timeout=1) as url:
        connection = raw_connection(url)
        connection.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        answer = closed_within(connection, 5)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"the body did not arrive within 1 s" in answer
        assert metric(url, 'client_timeouts_total{phase="body"}') == 1


@pytest.mark.parametrize(
    ("sent", "timeouts", "within"),
    [
        (b"", {"header_timeout": 30, "keep_alive_timeout": 1}, 5),
        (b"POST /invocations HTTP/1.1\r\nHost: x\r\n", {"header_timeout": 1, "keep_alive_timeout": 30}, 5),
    ],
    ids=["idle", "slow-headers"],
)
def test_a_connection_that_never_completes_its_headers_is_closed(sent, timeouts, within):
    with serving(StandIn(), **timeouts) as url:
        connection = raw_connection(url)
        connection.sendall(sent)
        assert closed_within(connection, within) == b""
        assert metric(url, 'client_timeouts_total{phase="headers"}') == 1
        assert httpx.post(f"{url}/invocations", json={"instances": [PAIR]}).status_code == 200


def test_slow_headers_on_a_kept_alive_connection_are_cut_off_too():
    with serving(StandIn(), header_timeout=1, keep_alive_timeout=30) as url:
        connection = raw_connection(url)
        connection.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        connection.settimeout(5)
        assert connection.recv(4096).startswith(b"HTTP/1.1 200 ")
        connection.sendall(b"GET /ping HTTP/1.1\r\n")
        assert closed_within(connection, 5) == b""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "the body nests JSON arrays and objects more than 8 levels deep"),
        # UTF-16 (which Python's json.loads would take) hides brackets and quotes from a byte scan.
        (("[" * 5000 + "\u4e22" + "]" * 5000).encode("utf-16"), "the body is not UTF-8"),
        # A string that never closes: a scan that restarts at every quote would take minutes.
        (b'"' + b'\\"' * 100_000, "the body is not valid JSON"),
        (b'{"instances": [{"sentence1": "a \\ud800 b", "sentence2": "b"}]}', "instances[0].sentence1 is not Unicode"),
    ],
    ids=["nested", "utf-16", "unclosed-string", "lone-surrogate"],
)
def test_hostile_json_is_a_400_not_a_crash(body, message):
    with serving(StandIn()) as url:
        headers = {"content-type": "application/json"}
        answer = httpx.post(f"{url}/invocations", content=body, headers=headers, timeout=30)
        assert answer.status_code == 400 and answer.json()["error"].startswith(message), answer.text


def test_a_fault_is_a_500_with_a_request_id_and_no_internals(caplog):
    with serving(StandIn(fault=RuntimeError("kernel exploded at 0x7f3a"))) as url:
        answer = httpx.post(f"{url}/invocations", json={"instances": [PAIR]}, headers={"X-Request-Id": "abc-123"})
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal error (request id abc-123)", "request_id": "abc-123"}
        assert answer.headers["X-Request-Id"] == "abc-123"
        made_up = httpx.post(f"{url}/invocations", json={"instances": [PAIR]}, headers={"X-Request-Id": "a b"})
        assert made_up.json()["request_id"] != "a b" and len(made_up.json()["request_id"]) == 32
        assert httpx.get(f"{url}/ping").status_code == 200
    faults = [record for record in caplog.records if "request id abc-123" in record.getMessage()]
    assert len(faults) == 1 and "kernel exploded" in str(faults[0].exc_info[1])
