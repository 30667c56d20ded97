"""The state folder of a local endpoint: what runs, where, what it serves, and what it served before.

::

    STATE/              mode 0700: only its owner may enter it, so only its owner may reach the socket
      state.json        pid, url, control socket, current and previous model, history of rollouts
      control.sock      the server's owner-only control socket (deploy, rollback, status)
      server.log        the detached server's output

The server is the only writer of ``state.json`` (one writer, no lost updates); it replaces the file
atomically, so a reader never sees half of it. The commands read it to find the server.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from tasks.errors import EndpointError

STATE_FILE = "state.json"
CONTROL_SOCKET = "control.sock"
SERVER_LOG = "server.log"
HISTORY_KEPT = 200
# sun_path holds 108 bytes on Linux, terminator included.
_MAX_SOCKET_PATH = 107


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def prepare(folder: str | os.PathLike) -> Path:
    """The state folder, created if needed and closed to everyone but its owner."""
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    if len(os.fsencode(folder / CONTROL_SOCKET)) > _MAX_SOCKET_PATH:
        raise EndpointError(
            f"{folder}: the path is too long for the control socket (at most {_MAX_SOCKET_PATH - len(CONTROL_SOCKET) - 1}"
            " bytes); choose a shorter --state folder"
        )
    return folder


def read(folder: str | os.PathLike) -> dict | None:
    """The recorded state, or None when no endpoint was ever started from ``folder``."""
    path = Path(folder) / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except ValueError as error:
        raise EndpointError(f"{path}: not valid JSON ({error}); remove it to start afresh") from None
    if not isinstance(state, dict):
        raise EndpointError(f"{path}: expected a JSON object, got {type(state).__name__}; remove it to start afresh")
    return state


def write(folder: Path, state: dict) -> None:
    """Replace ``state.json`` in one rename; EndpointError naming it when it cannot (the old file stays)."""
    work = folder / f".{STATE_FILE}.tmp-{os.getpid()}"
    try:
        work.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(work, folder / STATE_FILE)
    except OSError as error:
        with contextlib.suppress(OSError):
            work.unlink()
        raise EndpointError(f"{folder / STATE_FILE} could not be written: {error.strerror or error}") from error


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; an exited process that its parent has not reaped yet (a zombie) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def client_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
