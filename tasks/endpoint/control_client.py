"""The client side of a local endpoint's control socket: what ``deploy-local``, ``rollback``, ``status`` and
``stop-local`` send the running server (the protocol is in ``tasks.endpoint.control_server``)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tasks.errors import EndpointError


class NotRunning(EndpointError):
    """Nothing listens on the control socket."""


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
