"""Running one ``python -m tasks`` step in a subprocess of the Airflow worker (the local platform).

The command is the same one a SageMaker job or a Kubernetes pod runs. Its output streams into the task log
line by line; a failure is raised as every platform raises it (failures.py). Steps that run side by side (the
tuning trials) each get a share of the CPUs (``cpu_share``), named in the step's environment (``CPUS_ENV``): the step
pins itself to them and sizes its thread pools to them (tasks/runtime/cpu.py), which keeps it to its threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

from nlp_pipeline.failures import step_failure
from tasks.runtime.cpu import CPUS_ENV

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 30  # what a stopped step gets to finish (a server drains in 25 s) before SIGKILL


class StepTimeout(Exception):
    """A step stopped because it ran past the ``timeout`` it was given (a tuning trial past its search's deadline)."""


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, STOP_GRACE_SECONDS to finish, then SIGKILL: a step that ignores SIGTERM must not hang the task."""
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_step(step: str, *flags: object, cpus: Collection[int] | None = None, timeout: float | None = None) -> str:
    """Run the step and return the last line it printed (steps print their result there); on ``cpus`` only when
    given (named in its environment: it pins itself), else on every CPU the worker may use. A step still running
    after ``timeout`` seconds is stopped and raises StepTimeout."""
    command = [sys.executable, "-m", "tasks", step, *map(str, flags)]
    log.info("$ %s%s", shlex.join(command), f" (on CPUs {sorted(cpus)})" if cpus is not None else "")
    env = None if cpus is None else os.environ | {CPUS_ENV: ",".join(map(str, sorted(cpus)))}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        _stop(process)

    timer = None if timeout is None else threading.Timer(max(timeout, 0), expire)
    if timer:
        timer.daemon = True
        timer.start()
    last = ""
    try:
        for line in process.stdout:
            line = line.rstrip()
            log.info("%s", line)
            last = line or last
        code = process.wait()
    finally:
        if timer:
            timer.cancel()
        if process.poll() is None:  # the task was stopped (or timed out): stop the step with it
            _stop(process)
    if timed_out.is_set():
        raise StepTimeout(f"{step} ran past its {timeout:.0f} s and was stopped: {last}")
    if code != 0:
        raise step_failure(step, code, last)
    return last


def run_step_json(step: str, *flags: object):
    """Run a step that prints one line of JSON last, and return it parsed."""
    return json.loads(run_step(step, *flags))


@contextlib.contextmanager
def cpu_share(cores: int, shares: int, locks: Path, index: int = 0) -> Iterator[frozenset[int] | None]:
    """One of ``shares`` disjoint sets of ``cores // shares`` of the CPUs this process may use, held until the block
    ends (an exclusive lock on its file in ``locks``, which the kernel drops if the process dies), so steps running
    at once never share a CPU: the first free one, else (more steps at once than shares: a pool given more slots by
    hand) share ``index % shares``, waited for. None (every CPU) when there is one share."""
    size = cores // shares
    if shares <= 1 or size < 1:
        yield None
        return
    usable = sorted(os.sched_getaffinity(0))
    locks.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        taken = None
        for each in range(shares):
            handle = stack.enter_context((locks / f"share-{each}-of-{shares}.lock").open("a"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            taken = each
            break
        if taken is None:
            taken = index % shares
            log.warning("all %d CPU shares in %s are held: waiting for share %d", shares, locks, taken)
            handle = stack.enter_context((locks / f"share-{taken}-of-{shares}.lock").open("a"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield frozenset(usable[taken * size : (taken + 1) * size])
