"""Running one ``python -m tasks`` step in a subprocess of the Airflow worker (the local platform).

The command is the same one a SageMaker job or a Kubernetes pod runs. Its output streams into the task log
line by line. Exit 2 (bad flag) and 3 (bad data) mean retrying cannot help: the task fails at once. Any
other failure is raised as retryable, so the task's retries with back-off apply.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import sys

from airflow.sdk.exceptions import AirflowException, AirflowFailException

log = logging.getLogger(__name__)

BAD_INPUT_EXIT_CODES = {2: "a bad flag", 3: "bad data"}


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
        if process.poll() is None:  # the task was stopped: stop the step with it
            process.terminate()
            process.wait()
    if code in BAD_INPUT_EXIT_CODES:
        raise AirflowFailException(f"{step} failed on {BAD_INPUT_EXIT_CODES[code]}, not retried: {last}")
    if code != 0:
        raise AirflowException(f"{step} exited with {code}: {last}")
    return last


def run_step_json(step: str, *flags: object):
    """Run a step that prints one line of JSON last, and return it parsed."""
    return json.loads(run_step(step, *flags))
