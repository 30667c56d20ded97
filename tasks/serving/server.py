"""``python -m tasks serve``: the inference server (SageMaker endpoint, Kubernetes Deployment, local endpoint).

FastAPI on uvicorn, with the HTTP contract of docs/architecture.md::

    GET  /ping          200 when it can serve: the model is loaded and warm, and its worker is alive and not stuck
    POST /invocations   {"instances": [...]} -> predictions (TF Serving's shape), labels, probabilities, model_version
    GET  /metrics       Prometheus text: requests by status, latency, batch sizes, queue, shed requests, timeouts,
                        tokenisation and model time, resident memory, model version, data capture (records
                        written, dropped and buffered, write errors)

The model loads in the background after the server starts listening, so ``/ping`` can say 503 meanwhile.
Client mistakes are 4xx with ``{"error": "..."}``; SIGTERM stops accepting and lets in-flight requests finish.
With ``--state DIR`` the server is a local endpoint whose model is swapped in place (``tasks.serving.model_swap``, ``tasks.endpoint.control_server``).
With ``--capture-dir`` it keeps a record of each pair of a sampled request (``tasks.serving.capture``): the request
only hands its pairs to a bounded buffer, a writer thread writes them, and SIGTERM writes what is buffered.

Nothing a client sends can stall it: parsing and tokenising run on a worker thread, never on the event loop that
answers ``/ping``; a bounded queue sheds overload with 503 and Retry-After (``tasks.serving.batching``); a request
that cannot be answered within ``--request-timeout`` gets 503; slow headers (``tasks.serving.connections``) and
slow bodies (408) are cut off. A fault is a 500 that says "internal error" and a request id, whose details are
only in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from tasks.config import ServeArguments
from tasks.endpoint.control_server import LocalEndpoint
from tasks.endpoint.state import client_url
from tasks.errors import EndpointError
from tasks.serving.contract import JSON_TYPES
from tasks.serving.model_swap import ModelSlot

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_STEP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# A request id the client sends (X-Request-Id) is used when it is this safe to log; otherwise one is made.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
REQUEST_ID_HEADER = "X-Request-Id"
# Retry-After while no model can serve (loading, or its worker dead or stuck).
_UNAVAILABLE_RETRY_SECONDS = 5


class Metrics:
    """The server's Prometheus collectors, in a registry of its own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "invocations_requests", "Invocation requests by HTTP status.", ["status"], registry=self.registry
        )
        self.latency = Histogram(
            "invocations_latency_seconds", "Invocation latency.", buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.batch_size = Histogram(
            "model_batch_size", "Pairs per model call.", buckets=_BATCH_BUCKETS, registry=self.registry
        )
        self.model = Gauge("model_info", "The model being served (value 1).", ["version"], registry=self.registry)
        self.queued = Gauge(
            "queued_pairs",
            "Pairs admitted and waiting for a model call (tokenising or queued).",
            registry=self.registry,
        )
        self.shed = Counter(
            "invocations_shed", "Requests refused with 503 because the queue was full.", registry=self.registry
        )
        self.timeouts = Counter(
            "invocations_timeouts", "Requests answered 503 after waiting --request-timeout.", registry=self.registry
        )
        self.client_timeouts = Counter(
            "client_timeouts",
            "Connections cut because a client sent its headers (headers) or body (body) too slowly.",
            ["phase"],
            registry=self.registry,
        )
        self.tokenization = Histogram(
            "tokenization_seconds",
            "Tokenising one request's text pairs, with its wait for the tokeniser thread.",
            buckets=_STEP_BUCKETS,
            registry=self.registry,
        )
        self.model_time = Histogram(
            "model_seconds", "One model call (a batch).", buckets=_STEP_BUCKETS, registry=self.registry
        )
        self.capture_records = Counter(
            "capture_records",
            "Capture records written (in files published under --capture-dir).",
            registry=self.registry,
        )
        self.capture_dropped = Counter(
            "capture_dropped_records",
            "Capture records dropped: the buffer was full, or their write or upload failed.",
            registry=self.registry,
        )
        self.capture_buffered = Gauge(
            "capture_buffered_records", "Capture records waiting for the writer.", registry=self.registry
        )
        self.capture_errors = Counter(
            "capture_write_errors", "Capture files that could not be written or uploaded.", registry=self.registry
        )
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and the rest

    def serving(self, version: str) -> None:
        self.model.clear()
        self.model.labels(version=version).set(1)


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class BodyTimeout(Exception):
    """The client did not send its whole body in time."""


def create_app(args: ServeArguments, load_model=None, capture_rng=None):
    """The ASGI app; ``load_model(source)`` returns a ServedModel (the default loads, warms and smoke-checks it).

    With ``args.state``, the app also records what it serves in that state folder and takes rollouts on its
    owner-only control socket there (a local endpoint). With ``args.capture_dir`` it captures sampled requests,
    sampled by ``capture_rng`` (a ``random.Random``; default: unseeded).
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from tasks.serving import invocations
    from tasks.serving.batching import DynamicBatcher, Overloaded
    from tasks.serving.served_model import ServedModel, labels, probabilities

    load_model = load_model or (
        lambda source, digest: ServedModel.load(source, args.max_seq_length, args.padding, args.max_batch_size, digest)
    )
    metrics = Metrics()
    endpoint = (
        LocalEndpoint(args.state, client_url(args.host, listening_port(args)), args.model) if args.state else None
    )

    def changed() -> None:
        if endpoint is not None:
            endpoint.record(slot)  # first: a change it cannot record is undone, and the metrics must not show it
        if slot.current is not None:
            metrics.serving(slot.current.version)

    slot = ModelSlot(load_model, on_change=changed, **(endpoint.recalled() if endpoint else {}))
    capture = _capture_writer(args, metrics, capture_rng)

    async def load_first_model() -> None:
        with contextlib.suppress(EndpointError):  # the reason is logged and /ping reports it
            await slot.deploy(args.model, args.model_digest, action="start")

    @asynccontextmanager
    async def lifespan(app):
        batcher = DynamicBatcher(
            max_batch_size=args.max_batch_size,
            max_wait=args.max_wait_ms / 1000,
            max_queued_pairs=args.max_queued_pairs,
            stuck_after=args.request_timeout,
            on_batch=metrics.batch_size.observe,
            on_model_seconds=metrics.model_time.observe,
            on_queued=metrics.queued.set,
        )
        batcher.start()
        app.state.batcher = batcher
        # Parsing and tokenising: CPU work kept off the event loop, one request at a time beside the model.
        app.state.prepare = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        if endpoint is not None:
            await endpoint.open_control(slot)
        if capture is not None:
            capture.start()
        loading = asyncio.create_task(load_first_model())
        yield
        if endpoint is not None:
            endpoint.close_control()
        loading.cancel()
        await batcher.stop()
        app.state.prepare.shutdown(wait=False, cancel_futures=True)
        if capture is not None:  # after the last request: what they offered is written, in what the drain left
            asked = app.state.stop_requested or time.monotonic()
            left = max(0.0, args.graceful_timeout - (time.monotonic() - asked))
            await asyncio.to_thread(capture.stop, left)

    app = FastAPI(title="nlp-workflow inference", lifespan=lifespan)
    app.state.metrics = metrics
    app.state.stop_requested = None  # when SIGTERM came (uvicorn_server): --graceful-timeout counts from then

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def server_fault(request, exc: Exception):
        return fault(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.get("/ping")
    async def ping(request: Request):
        model = slot.model
        if model is None:
            status = {"status": "failed", "error": slot.load_error} if slot.load_error else {"status": "loading"}
            return JSONResponse(status, status_code=503)
        if problem := request.app.state.batcher.health():
            return JSONResponse({"status": "unhealthy", "error": problem}, status_code=503)
        return {"status": "ready", "model_version": model.version, "model_digest": model.digest}

    @app.get("/metrics")
    async def prometheus_metrics():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/invocations",
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": invocations.REQUEST_SCHEMA}}}
        },
        responses={
            400: {"description": "bad request"},
            408: {"description": "the body arrived too slowly"},
            413: {"description": "body too large"},
            415: {"description": "not JSON"},
            500: {"description": "internal error, with a request id"},
            503: {"description": "not now (Retry-After): model not loaded, queue full, no answer in time, worker down"},
        },
    )
    async def invoke(request: Request):
        started = time.perf_counter()
        request_id = _request_id(request)
        try:
            response = await _invoke(request, request_id)
        except Exception as failure:  # a fault of the server or its model, never a client mistake
            response = fault(request, failure, request_id)
        response.headers[REQUEST_ID_HEADER] = request_id
        metrics.requests.labels(status=str(response.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _invoke(request: Request, request_id: str):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            return error(415, f"content type {content_type or 'none'!r} is not supported; send application/json")
        batcher = request.app.state.batcher
        if full := batcher.full():  # shed before reading or parsing anything: a flood costs next to nothing
            metrics.shed.inc()
            return error(503, f"overloaded: {full}", {"Retry-After": str(full.retry_after), "Connection": "close"})
        try:
            body = await _read_body(request, args.max_body_bytes, args.body_timeout)
        except BodyTimeout:
            metrics.client_timeouts.labels(phase="body").inc()
            message = f"the body did not arrive within {args.body_timeout:g} s"
            return error(408, message, {"Connection": "close"})
        except ClientDisconnect:
            return error(400, "the client disconnected before sending its whole body", {"Connection": "close"})
        if body is None:
            return error(413, f"the body is larger than {args.max_body_bytes} bytes", {"Connection": "close"})
        model = slot.model  # read once: this request is encoded, scored and labelled by one model
        if model is None:
            message = "the model is not loaded yet; retry when /ping answers 200"
            return error(503, message, {"Retry-After": str(_UNAVAILABLE_RETRY_SECONDS)})
        if problem := batcher.health():
            return error(503, problem, {"Retry-After": str(_UNAVAILABLE_RETRY_SECONDS)})
        limits = invocations.Limits(args.max_instances, model.max_seq_length, model.vocab_size, args.max_sentence_chars)
        loop, prepare, ticket = asyncio.get_running_loop(), request.app.state.prepare, None
        try:
            async with asyncio.timeout(args.request_timeout):
                pairs = await loop.run_in_executor(prepare, invocations.read, body, limits)
                ticket = batcher.admit(len(pairs))
                encoded = await _encode(loop, prepare, model, pairs)
                logits = await batcher.submit(model, encoded, ticket)
        except invocations.InvalidRequest as failure:
            return error(400, str(failure))
        except Overloaded as overloaded:
            metrics.shed.inc()
            return error(503, f"overloaded: {overloaded}", {"Retry-After": str(overloaded.retry_after)})
        except TimeoutError:
            metrics.timeouts.inc()
            message = f"no answer within {args.request_timeout:g} s (the model is busy); retry later"
            return error(503, message, {"Retry-After": str(max(1, round(args.request_timeout)))})
        finally:
            if ticket is not None:
                batcher.release(ticket)
        shares = probabilities(logits).tolist()
        answer = JSONResponse(  # raises on a value JSON cannot carry (NaN): a 500, and nothing captured
            {
                "predictions": logits.tolist(),
                "labels": labels(logits),
                "probabilities": shares,
                "model_version": model.version,
            }
        )
        if capture is not None and capture.sampled():  # only answered requests are captured
            texts = None if isinstance(pairs[0], invocations.Encoded) else pairs
            capture.offer(request_id, model.version, model.unk_token_id, encoded, shares, texts)
        return answer

    async def _encode(loop, prepare, model, pairs):
        if isinstance(pairs[0], invocations.Encoded):
            return pairs
        started = time.perf_counter()
        encoded = await loop.run_in_executor(prepare, model.encode, pairs)
        metrics.tokenization.observe(time.perf_counter() - started)
        return encoded

    return app


def _capture_writer(args: ServeArguments, metrics: Metrics, rng):
    """The capture writer, counting into ``metrics``; None when ``--capture-dir`` is empty (capture off)."""
    if not args.capture_dir:
        return None
    from tasks.serving.capture import CaptureWriter

    writer = CaptureWriter.from_arguments(
        args,
        on_written=metrics.capture_records.inc,
        on_dropped=metrics.capture_dropped.inc,
        on_error=metrics.capture_errors.inc,
        rng=rng,
    )
    metrics.capture_buffered.set_function(writer.buffered)
    return writer


def fault(request, failure: Exception, request_id: str | None = None) -> JSONResponse:
    """A 500 that names no internals: "internal error" and the request id; the details and trace go to the log."""
    request_id = request_id or _request_id(request)
    log.error("%s %s failed (request id %s)", request.method, request.url.path, request_id, exc_info=failure)
    return JSONResponse(
        {"error": f"internal error (request id {request_id})", "request_id": request_id},
        status_code=500,
        headers={REQUEST_ID_HEADER: request_id},
    )


def _request_id(request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


async def _read_body(request, limit: int, timeout: float) -> bytes | None:
    """The body, or None as soon as it exceeds ``limit`` bytes (declared or streamed); BodyTimeout when it has
    not all arrived within ``timeout`` seconds."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout from None
    return b"".join(chunks)


def listening_port(args: ServeArguments) -> int:
    return args.port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))


def uvicorn_config(args: ServeArguments, app):
    """How uvicorn serves ``app``: request headers and idle connections timed (bodies: ``_read_body``)."""
    import uvicorn

    from tasks.serving.connections import header_timeout_protocol

    cut = app.state.metrics.client_timeouts.labels(phase="headers").inc
    return uvicorn.Config(
        app,
        host=args.host,
        port=listening_port(args),
        http=header_timeout_protocol(args.header_timeout, cut),
        timeout_keep_alive=args.keep_alive_timeout,
        log_config=None,
        timeout_graceful_shutdown=int(args.graceful_timeout),
        access_log=False,
    )


def uvicorn_server(config):
    """uvicorn's server for ``config``, noting in its app's state when it was asked to stop: one --graceful-timeout
    covers both the drain of in-flight requests and the capture writer's flush after it."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            state = self.config.app.state
            state.stop_requested = state.stop_requested or time.monotonic()
            super().handle_exit(sig, frame)

    return Server(config)


def run(args: ServeArguments) -> None:
    from tasks.runtime import cpu

    cpu.configure_tensorflow(cpu.configure_environment("fp32"))
    config = uvicorn_config(args, create_app(args))
    log.info(
        "serving %s on %s:%d (batches of up to %d pairs, %.1f ms wait, at most %d pairs queued)",
        args.model,
        args.host,
        config.port,
        args.max_batch_size,
        args.max_wait_ms,
        args.max_queued_pairs,
    )
    asyncio.run(uvicorn_server(config).serve())
