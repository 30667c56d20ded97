"""The server side of a local endpoint: it records itself in its state folder and takes rollouts on its
owner-only control socket (``python -m tasks serve --state DIR``, as ``deploy-local`` starts it).

No admin port is opened: a swap is requested over a Unix socket that only the user running the server can
reach. The socket file is mode 0600 inside a 0700 folder, and the server also asks the kernel who is
calling (``SO_PEERCRED``) and refuses any other user. One request per connection, one JSON object per
line each way (``tasks.endpoint.control_client`` sends them)::

    -> {"action": "deploy", "model": "/abs/path", "digest": "sha256:..."}
    <- {"ok": true, ...} | {"ok": false, "error": "..."}

Every answer (a refusal too) describes what the server serves from its own memory, which is also what its
``state.json`` names: a change it cannot record there is refused (``tasks.serving.model_swap``). A request
that fails unexpectedly is answered with the failure, never dropped, so the caller is never left guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

from tasks.endpoint import state as endpoint_state
from tasks.errors import EndpointError, describe
from tasks.serving.model_swap import Deployment, ModelSlot

log = logging.getLogger(__name__)

Handler = Callable[[dict], Awaitable[dict]]
_MAX_REQUEST_BYTES = 64 * 1024
_REFUSED_READ_SECONDS = 5  # how long a refused caller's request is waited for before the answer


def peer_uid(sock) -> int:
    """The user id of the process at the other end of a connected Unix socket (Linux ``SO_PEERCRED``)."""
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


async def serve(path: Path, handle: Handler) -> asyncio.AbstractServer:
    """Listen on ``path`` (replacing a stale socket file) and answer each request with ``handle``."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await _answer(reader, writer, handle)
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the caller went away; a rollout it started still completes
        finally:
            writer.close()

    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(connection, path=path, limit=_MAX_REQUEST_BYTES)
    path.chmod(0o600)
    return server


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handle: Handler) -> dict:
    uid = peer_uid(writer.get_extra_info("socket"))
    if uid != os.getuid():
        log.warning("refused a control request from uid %d (the server runs as uid %d)", uid, os.getuid())
        # Take the request off the socket first: closing it with unread data resets the connection, and the
        # caller would see a broken pipe instead of this answer.
        with contextlib.suppress(ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError):
            await asyncio.wait_for(reader.readuntil(b"\n"), _REFUSED_READ_SECONDS)
        return {"ok": False, "error": f"uid {uid} may not control this endpoint; only its owner may"}
    try:
        request = json.loads(await reader.readuntil(b"\n"))
    except (ValueError, asyncio.LimitOverrunError) as error:
        return {"ok": False, "error": f"the request is not one line of JSON: {describe(error)}"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "the request must be a JSON object"}
    return await handle(request)


class LocalEndpoint:
    def __init__(self, state: str, url: str, model: str):
        self.folder = endpoint_state.prepare(state)
        self.url = url
        self.socket = self.folder / endpoint_state.CONTROL_SOCKET
        self.started_at = endpoint_state.now()
        self._model = model
        self._server: asyncio.AbstractServer | None = None

    def recalled(self) -> dict:
        """What the last server in this folder served: its model becomes the previous one, its history goes on."""
        recorded = endpoint_state.read(self.folder) or {}
        current = Deployment.from_dict(recorded.get("current"))
        previous = Deployment.from_dict(recorded.get("previous"))
        if current is not None and current.model != self._model:
            previous = current
        return {"previous": previous, "history": recorded.get("history", [])}

    def record(self, slot: ModelSlot) -> None:
        endpoint_state.write(self.folder, self.describe(slot))

    def describe(self, slot: ModelSlot) -> dict:
        return {
            "pid": os.getpid(),
            "url": self.url,
            "control_socket": str(self.socket),
            "started_at": self.started_at,
            **slot.describe(),
        }

    async def open_control(self, slot: ModelSlot) -> None:
        self._server = await serve(self.socket, lambda request: self.handle(slot, request))

    def close_control(self) -> None:
        if self._server is not None:
            self._server.close()
            self.socket.unlink(missing_ok=True)

    async def handle(self, slot: ModelSlot, request: dict) -> dict:
        action = request.get("action")
        try:
            if action == "deploy":
                model, digest = request.get("model"), request.get("digest", "")
                if not isinstance(model, str) or not model:
                    return {"ok": False, "error": 'deploy needs "model": a model folder or URI'}
                if not isinstance(digest, str):
                    return {"ok": False, "error": '"digest" must be a string: the content digest the model must have'}
                await slot.deploy(model, digest)
            elif action == "rollback":
                await slot.rollback()
            elif action != "status":
                return {"ok": False, "error": f"unknown action {action!r}; use deploy, rollback or status"}
        except EndpointError as rejected:
            return {**self.describe(slot), "ok": False, "error": str(rejected)}
        except Exception as failure:  # a fault of ours: the caller still learns what happened and what is served
            log.exception("%s failed", action)
            return {**self.describe(slot), "ok": False, "error": f"{action} failed: {describe(failure)}"}
        return {**self.describe(slot), "ok": True}
