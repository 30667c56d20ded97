"""``python -m tasks serve``: the inference server (SageMaker endpoint, Kubernetes Deployment, local endpoint).

FastAPI on uvicorn, with the HTTP contract of docs/architecture.md::

    GET  /ping          200 once the model is loaded and warm, 503 before
    POST /invocations   {"instances": [...]} -> predictions (TF Serving's shape), labels, probabilities, model_version
    GET  /metrics       Prometheus text: requests by status, latency, batch sizes, model version

The model loads in the background after the server starts listening, so ``/ping`` can say 503 meanwhile.
Client mistakes are 4xx with ``{"error": "..."}``; SIGTERM stops accepting and lets in-flight requests finish.
With ``--state DIR`` the server is a local endpoint whose model is swapped in place (``tasks.serving.model_swap``, ``tasks.endpoint.control_server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException

from tasks.config import ServeArguments
from tasks.endpoint.control_server import LocalEndpoint
from tasks.endpoint.state import client_url
from tasks.errors import EndpointError, describe
from tasks.serving.model_swap import ModelSlot

log = logging.getLogger(__name__)

JSON_TYPES = ("application/json",)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The server's Prometheus collectors, in a registry of its own."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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

    def serving(self, version: str) -> None:
        self.model.clear()
        self.model.labels(version=version).set(1)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(args: ServeArguments, load_model=None):
    """The ASGI app; ``load_model(source)`` returns a ServedModel (the default loads, warms and smoke-checks it).

    With ``args.state``, the app also records what it serves in that state folder and takes rollouts on its
    owner-only control socket there (a local endpoint).
    """
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from tasks.serving import invocations
    from tasks.serving.batching import DynamicBatcher
    from tasks.serving.served_model import ServedModel, labels, probabilities

    load_model = load_model or (lambda source: ServedModel.load(source, args.max_seq_length, args.padding))
    metrics = Metrics()
    endpoint = (
        LocalEndpoint(args.state, client_url(args.host, listening_port(args)), args.model) if args.state else None
    )

    def changed() -> None:
        if slot.current is not None:
            metrics.serving(slot.current.version)
        if endpoint is not None:
            endpoint.record(slot)

    slot = ModelSlot(load_model, on_change=changed, **(endpoint.recalled() if endpoint else {}))

    async def load_first_model() -> None:
        with contextlib.suppress(EndpointError):  # the reason is logged and /ping reports it
            await slot.deploy(args.model, action="start")

    @asynccontextmanager
    async def lifespan(app):
        batcher = DynamicBatcher(
            max_batch_size=args.max_batch_size,
            max_wait=args.max_wait_ms / 1000,
            on_batch=metrics.batch_size.observe,
        )
        batcher.start()
        app.state.batcher = batcher
        if endpoint is not None:
            await endpoint.open_control(slot)
        loading = asyncio.create_task(load_first_model())
        yield
        if endpoint is not None:
            endpoint.close_control()
        loading.cancel()
        await batcher.stop()

    app = FastAPI(title="nlp-workflow inference", lifespan=lifespan)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def server_fault(request, exc: Exception):
        # Only a fault of the server or its model lands here, never a client mistake: logged with its trace.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, f"internal error: {describe(exc)}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        return error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.get("/ping")
    async def ping():
        model = slot.model
        if model is None:
            status = {"status": "failed", "error": slot.load_error} if slot.load_error else {"status": "loading"}
            return JSONResponse(status, status_code=503)
        return {"status": "ready", "model_version": model.version}

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
            413: {"description": "body too large"},
            415: {"description": "not JSON"},
            503: {"description": "model not loaded"},
        },
    )
    async def invoke(request: Request):
        started = time.perf_counter()
        response = await _invoke(request)
        metrics.requests.labels(status=str(response.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _invoke(request: Request):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in JSON_TYPES:
            return error(415, f"content type {content_type or 'none'!r} is not supported; send application/json")
        body = await _read_body(request, args.max_body_bytes)
        if body is None:
            return error(413, f"the body is larger than {args.max_body_bytes} bytes")
        model = slot.model  # read once: this request is encoded, scored and labelled by one model
        if model is None:
            return error(503, "the model is not loaded yet; retry when /ping answers 200")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as failure:
            return error(400, f"the body is not valid JSON: {failure}")
        limits = invocations.Limits(args.max_instances, model.max_seq_length, model.vocab_size)
        try:
            pairs = invocations.parse(payload, limits)
        except invocations.InvalidRequest as failure:
            return error(400, str(failure))
        encoded = pairs if isinstance(pairs[0], invocations.Encoded) else model.encode(pairs)
        logits = await request.app.state.batcher.submit(model, encoded)
        return JSONResponse(
            {
                "predictions": logits.tolist(),
                "labels": labels(logits),
                "probabilities": probabilities(logits).tolist(),
                "model_version": model.version,
            }
        )

    return app


async def _read_body(request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def listening_port(args: ServeArguments) -> int:
    return args.port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))


def run(args: ServeArguments) -> None:
    import uvicorn

    from tasks.runtime import cpu

    cpu.configure_tensorflow(cpu.configure_environment("fp32"))
    port = listening_port(args)
    app = create_app(args)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=int(args.graceful_timeout),
        access_log=False,
    )
    log.info(
        "serving %s on %s:%d (batches of up to %d pairs, %.1f ms wait)",
        args.model,
        args.host,
        port,
        args.max_batch_size,
        args.max_wait_ms,
    )
    asyncio.run(uvicorn.Server(config).serve())
