"""Running one ``python -m tasks`` step in a subprocess of the Airflow worker (the local platform).

The command is the same one a SageMaker job or a Kubernetes pod runs. Its output streams into the task log
line by line; a failure is raised as every platform raises it (failures.py).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys

from nlp_pipeline.failures import step_failure

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 30  # what a stopped step gets to finish (a server drains in 25 s) before SIGKILL


def run_step(step: str, *flags: object) -> str:
    """Run the step and return the last line it printed (steps print their result there)."""
    command = [sys.executable, "-m", "tasks", step, *map(str, flags)]
    log.info("$ %s", shlex.join(command))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    last = ""
    try:
        for line in process.stdout:
            line = line.rstrip()
            log.info("%s", line)
            last = line or last
        code = process.wait()
    finally:
        if process.poll() is None:  # the task was stopped (or timed out): stop the step with it
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:  # a step that ignores SIGTERM must not hang the task
                process.kill()
                process.wait()
    if code != 0:
        raise step_failure(step, code, last)
    return last


def run_step_json(step: str, *flags: object):
    """Run a step that prints one line of JSON last, and return it parsed."""
    return json.loads(run_step(step, *flags))
