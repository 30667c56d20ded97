"""The task image's ``HEALTHCHECK``: ``python -m tasks healthcheck`` exits 0 when the container is healthy.

One image runs every step, so the check first reads what the container runs, from PID 1's command line
(``dumb-init -- nlp-task-entrypoint ARGS``). A container serving a model is healthy while ``GET /ping``
answers 200 on the server's port: ``--port``, else ``$SAGEMAKER_BIND_TO_PORT``, else 8080, as ``serve``
decides. A container running a batch step (stage, train, quantize, ...) has no server to ask: it is
healthy while it runs, and its exit status tells the rest.

Only the standard library is imported, and the CLI builds no flag parser for a step given no flags: the check
runs every 30 seconds beside the server.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from tasks.config import HealthcheckArguments
from tasks.errors import TaskError

DEFAULT_PORT = 8080
_ENTRYPOINT = "nlp-task-entrypoint"


def container_arguments(cmdline: Sequence[str]) -> list[str]:
    """The arguments given to the entrypoint (what follows it on the command line), or the whole line."""
    for index, part in enumerate(cmdline):
        if Path(part).name == _ENTRYPOINT:
            return list(cmdline[index + 1 :])
    return list(cmdline)


def serving_port(arguments: Sequence[str], environ: Mapping[str, str]) -> int | None:
    """The port ``serve`` listens on, or None when the arguments run another step."""
    if not arguments or arguments[0] != "serve":
        return None
    port = 0
    for index, argument in enumerate(arguments):
        if argument == "--port" and index + 1 < len(arguments):
            port = int(arguments[index + 1])
        elif argument.startswith("--port="):
            port = int(argument.partition("=")[2])
    return port or int(environ.get("SAGEMAKER_BIND_TO_PORT") or DEFAULT_PORT)


def ping(port: int, timeout: float = 5.0) -> str | None:
    """None when ``/ping`` answers 200 on 127.0.0.1:PORT, else what went wrong."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=timeout) as answer:
            return None if answer.status == 200 else f"/ping answered {answer.status}"
    except urllib.error.HTTPError as error:
        return f"/ping answered {error.code}" + (": the model is still loading" if error.code == 503 else "")
    except OSError as error:
        return f"nothing answers on port {port}: {error}"


def check(cmdline_file: Path) -> tuple[bool, str]:
    """Whether the container whose command line is in ``cmdline_file`` is healthy, and why."""
    cmdline = cmdline_file.read_bytes().rstrip(b"\0").split(b"\0")
    arguments = container_arguments([part.decode(errors="replace") for part in cmdline])
    port = serving_port(arguments, os.environ)
    if port is None:
        return True, f"runs `{' '.join(arguments[:1]) or 'nothing'}`, which serves no HTTP"
    problem = ping(port)
    return problem is None, problem or f"/ping answers on port {port}"


def run(args: HealthcheckArguments) -> None:
    """Print ``healthy: WHY``, or fail (exit 1) with ``unhealthy: WHY``."""
    healthy, reason = check(Path(args.cmdline))
    if not healthy:
        raise TaskError(f"unhealthy: {reason}")
    print(f"healthy: {reason}")
