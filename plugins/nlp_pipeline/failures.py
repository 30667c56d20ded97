"""How a failed step reaches Airflow, the same on every platform.

A step exits 2 on a bad flag and 3 on bad data (``tasks.errors.NOT_RETRYABLE``): a retry fails the same way,
so the task fails at once. Any other failure may pass on a retry, so the task's retries with back-off apply.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tasks.errors import NOT_RETRYABLE


def step_failure(step: str, exit_code: int, detail: str) -> AirflowException:
    """The exception a task raises for ``step`` having failed with ``exit_code``."""
    if exit_code in NOT_RETRYABLE:
        return AirflowFailException(f"{step} failed on {NOT_RETRYABLE[exit_code]}, not retried: {detail}")
    return AirflowException(f"{step} exited with {exit_code}: {detail}")
