"""Telling someone a run failed (the DAGs' ``on_failure_callback``) or the endpoint's traffic drifted (the monitor
DAGs' ``notify_drift``), through the amazon provider's SNS notifier.

Airflow calls a DAG's failure callback once per failed run: when a task failed its last try (a try that will
be retried does not fail the run) and when the run passed its ``dagrun_timeout``. Where to send the alert is
the Airflow Variable ``nlp_alerts``, read when a run fails (parsing the DAG reads nothing):

    {"sns_topic_arn": "arn:aws:sns:eu-west-1:123456789012:nlp-alerts", "aws_conn_id": "aws_default"}

``aws_conn_id`` is optional (default ``aws_default``), as is ``region_name`` (default: the connection's).
Unset, the failure or drift is only logged. The message names the DAG, the run, why it failed, the task Airflow
blames (the last to fail, or for a timeout the last still running) and the links to its log and the run.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

from airflow.sdk import Variable
from airflow.sdk.bases.notifier import BaseNotifier

log = logging.getLogger(__name__)

ALERTS_VARIABLE = "nlp_alerts"
_FIELDS = {"sns_topic_arn", "aws_conn_id", "region_name"}
_SUBJECT_LIMIT = 100  # SNS refuses a longer Subject


class AlertsConfigError(ValueError):
    """When the ``nlp_alerts`` Variable is not the JSON object described in this module."""


def alert_settings() -> dict | None:
    """The ``nlp_alerts`` Variable, checked: None when unset."""
    raw = Variable.get(ALERTS_VARIABLE, default=None)
    if raw is None:
        return None
    try:
        settings = json.loads(raw)
    except json.JSONDecodeError as error:
        raise AlertsConfigError(f"the Variable {ALERTS_VARIABLE} is not JSON ({error})") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("sns_topic_arn"), str):
        raise AlertsConfigError(
            f"the Variable {ALERTS_VARIABLE} must be a JSON object with a string sns_topic_arn, got {raw!r}"
        )
    if unknown := sorted(set(settings) - _FIELDS):
        raise AlertsConfigError(
            f"the Variable {ALERTS_VARIABLE} has unknown key(s) {unknown}; allowed: {sorted(_FIELDS)}"
        )
    return settings


def run_url(dag_id: str, run_id: str) -> str:
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
    return f"{base_url}/dags/{dag_id}/runs/{quote(run_id)}"


def failure_message(context) -> tuple[str, str]:
    """(subject, message) for the failed run of a DAG failure callback's ``context``."""
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    reason = context.get("reason") or "failed"
    lines = [f"DAG {dag_id}, run {run_id}: failed ({reason})."]
    if ti := context.get("ti"):
        lines.append(f"Task {ti.task_id} (try {ti.try_number}) failed or was still running; its log: {ti.log_url}")
    lines.append(f"The run: {run_url(dag_id, run_id)}")
    subject = f"{dag_id} run failed ({reason})"[:_SUBJECT_LIMIT]
    return subject, "\n".join(lines)


def publish(subject: str, message: str, context, level: int = logging.INFO) -> bool:
    """Publish ``message`` to the SNS topic the ``nlp_alerts`` Variable names; False (and a warning) when it is
    unset. The message is logged at ``level`` in any case."""
    log.log(level, "%s", message)
    settings = alert_settings()
    if settings is None:
        log.warning("nobody is told: set the Variable %s to send alerts (docs/operations.md)", ALERTS_VARIABLE)
        return False
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    SnsNotifier(
        aws_conn_id=settings.get("aws_conn_id", "aws_default"),
        region_name=settings.get("region_name"),
        target_arn=settings["sns_topic_arn"],
        subject=subject[:_SUBJECT_LIMIT],
        message=message,
    ).notify(context)
    log.info("alert published to %s", settings["sns_topic_arn"])
    return True


class RunFailureNotifier(BaseNotifier):
    """Publishes a failed run to the SNS topic the ``nlp_alerts`` Variable names; logs it in any case."""

    def notify(self, context) -> None:
        publish(*failure_message(context), context, level=logging.ERROR)
