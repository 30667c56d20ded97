"""The owner-only control channel of a local endpoint: a Unix socket in its state folder.

No admin port is opened: a swap is requested over a Unix socket that only the user running the server can
reach. The socket file is mode 0600 inside a 0700 folder, and the server also asks the kernel who is
calling (``SO_PEERCRED``) and refuses any other user. One request per connection, one JSON object per
line each way::

    -> {"action": "deploy", "model": "/abs/path"}       <- {"ok": true, ...} | {"ok": false, "error": "..."}
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

from tasks.errors import EndpointError, describe

log = logging.getLogger(__name__)


class NotRunning(EndpointError):
    """Nothing listens on the control socket."""


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


def call(path: Path, request: dict, timeout: float) -> dict:
    """Send ``request`` to the endpoint listening on ``path`` and return its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
            client.sendall(json.dumps(request).encode() + b"\n")
            answer = client.makefile("rb").readline()
        except FileNotFoundError:
            raise NotRunning(f"no endpoint is running: {path} does not exist") from None
        except ConnectionRefusedError:
            raise NotRunning(f"no endpoint is running: nothing listens on {path}") from None
        except PermissionError:
            raise EndpointError(f"{path}: permission denied; only the endpoint's owner may control it") from None
        except TimeoutError:
            raise EndpointError(
                f"the endpoint did not answer {request.get('action')!r} within {timeout:.0f} s; it may still finish:"
                " see `python -m tasks status`"
            ) from None
    if not answer:
        raise EndpointError(f"the endpoint closed {path} without answering (did it stop?)")
    return json.loads(answer)
