"""The monitor DAG of a platform: does the traffic its endpoint serves still look like its model's training data?

    production_model >> monitor >> detect_drift ─┬─► signal_drift >> notify_drift
                                                 └─► no_drift

Hourly (``NLP_MONITOR_SCHEDULE``), ``monitor`` runs ``python -m tasks monitor`` (docs/monitoring.md) over the window
of captured traffic that ends at the run's logical date (a scheduled run: its data interval's end; a manual run
without one: when it was triggered) and is ``window_minutes`` long, against the traffic baseline in the production
model's card. ``detect_drift`` branches on its status: ``drift`` goes to ``signal_drift``, ``ok`` and
``not_enough_data`` (too few pairs: never drift) to ``no_drift``. ``signal_drift`` updates the platform's Asset
``nlp_drift_detected_<platform>`` (assets.drift_detected), on which the platform's training DAG is scheduled, so a
retraining run starts; never from a backfill (past windows, judged against today's model); at most once per
production model version within ``DRIFT_COOLDOWN``, so traffic that stays drifted does not queue a retraining every
hour while the first one runs (it reads the Asset's last events, ``inlet_events``). A signal is then told through
the ``nlp_alerts`` SNS topic (alerts.py) by ``notify_drift``, a task of its own: a failed notice is retried, and
never holds back the retraining. That retraining does not bypass the training cache (retraining the same data with
the same seed gives the same model): with the source data unchanged it is skipped, and the signal's log and the
notice say that it needs new source data (``retraining_note``).

The platform contract. ``build_monitor(platform)`` takes a platform module (local, sagemaker, eks) that provides,
besides ``production_model(context)`` (platform.Platform; here its dict must name ``model``, the baseline, and
should name ``version``, the event's and the cooldown's key, else the model stands for it):

``capture_root() -> str``
    Where the endpoint its training DAG deploys writes its capture: ``artefacts.capture_uri(ROOT, TRAINING_DAG_ID)``
    under the platform's artefact root. Its ``deploy`` hands ``commands.capture_flags(params, capture_root())`` to
    the server (local: deploy-local's flags; SageMaker: the model's Environment, tasks.config.CAPTURE_ENV, and the
    endpoint config's DataCaptureConfig; EKS: the server Deployment's args), and its ``monitor`` reads it.

``monitor(production: XCom) -> XCom``
    Adds the task ``MONITOR`` (``monitor``) taking ``production_model``'s XCom. It runs the monitor step with
    ``commands.command("monitor", context["params"], **monitor_arguments(context, production, capture_root()),
    output=...)`` (the platform may replace ``baseline`` by where its job sees the model, a mounted
    ``model.tar.gz``), writing into a folder of the monitor DAG's run under the artefact root, and returns the step
    result ``step_result.RESULTS["monitor"]`` (``status``, ``records``, ``drifted``, ``window``, ``statistics``) with
    ``uri``: where the monitoring folder (monitoring.json, monitoring.png) was published. Local: a subprocess;
    SageMaker: a Processing job; EKS: a pod. Its time limit is limits.py's ``monitor`` of the platform.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronTriggerTimetable, task
from airflow.sdk.exceptions import AirflowSkipException

from nlp_pipeline import alerts, limits
from nlp_pipeline.alerts import RunFailureNotifier
from nlp_pipeline.assets import SOURCE_DATA, drift_detected
from nlp_pipeline.decisions import BACKFILL
from nlp_pipeline.params import monitor_params
from nlp_pipeline.pipeline import DEFAULT_ARGS
from tasks.config import MONITOR_DRIFT

log = logging.getLogger(__name__)

MONITOR = "monitor"  # the platform's monitor task
SIGNAL_DRIFT, NO_DRIFT = "signal_drift", "no_drift"  # detect_drift's branches
# At most one drift signal per production model version within this long: the retraining it started has a day to
# replace the model before drift of the same model starts another.
DRIFT_COOLDOWN = timedelta(hours=24)


def dag_id(platform_name: str) -> str:
    """``nlp_monitor_<platform>``: the monitor DAG of ``platform_name`` (local, sagemaker, eks)."""
    return f"nlp_monitor_{platform_name}"


def window_end(context) -> datetime:
    """Where the run's window ends: its logical date, else when it was triggered (a manual run without one).

    Under the cron timetable a scheduled (or backfilled) run's logical date is its data interval's end, the hour it
    ran for. The data interval itself is not used: a run triggered with a logical date (``airflow dags trigger -l``,
    TriggerDagRunOperator) gets one computed from when it was triggered (airflow/api/common/trigger_dag.py), which
    would watch the hour before now instead of the hour asked for."""
    dag_run = context["dag_run"]
    return dag_run.logical_date or dag_run.run_after


def monitor_arguments(context, production: dict, capture: str) -> dict:
    """The monitor step's inputs of this run (``capture``, ``baseline``, ``window_end``), beside the run's Params:
    what every platform's ``monitor`` passes to ``commands.command("monitor", ...)``."""
    return {
        "capture": capture,
        "baseline": production["model"],
        "window_end": window_end(context).astimezone(UTC).isoformat(),
    }


def model_version(production: dict) -> str:
    """The production model's version, or its location where the platform knows no version."""
    return production.get("version") or production["model"]


def build_monitor(platform) -> DAG:
    """The monitor DAG of ``platform`` (a module keeping the contract above), ``nlp_monitor_<its name>``."""
    platform_name = platform.__name__.rpartition(".")[2]
    asset = drift_detected(platform_name)
    with DAG(
        dag_id(platform_name),
        schedule=CronTriggerTimetable(os.environ.get("NLP_MONITOR_SCHEDULE", "@hourly"), timezone="UTC"),
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        params=monitor_params(),
        tags=["nlp", "monitoring", platform_name],
        doc_md=_doc(platform_name, asset.name),
        on_failure_callback=RunFailureNotifier(),
    ) as dag:

        @task
        def production_model(**context) -> dict:
            """The model the endpoint serves: the baseline the traffic is compared with."""
            production = platform.production_model(context)
            if production is None:
                raise AirflowSkipException(
                    f"no production model on {platform_name} yet: nothing serves, nothing to watch"
                )
            log.info("watching the traffic of %s (%s)", model_version(production), production["model"])
            return production

        @task.branch
        def detect_drift(result: dict) -> str:
            """``signal_drift`` when the window drifted; ``no_drift`` when it did not or had too few pairs."""
            for statistic in result["statistics"]:
                log.info("%-28s %-12s %s", statistic["name"], statistic["status"], statistic["value"])
            log.info(
                "%s: %s pairs, status %s (%s)", result["window"], result["records"], result["status"], result["uri"]
            )
            return SIGNAL_DRIFT if result["status"] == MONITOR_DRIFT else NO_DRIFT

        @task(task_id=SIGNAL_DRIFT, inlets=[asset], outlets=[asset])
        def signal_drift(production: dict, result: dict, **context) -> dict:
            """The event on the drift Asset, which starts a retraining run, unless the run is a backfill or this
            model's drift was signalled within DRIFT_COOLDOWN (then skipped: no event)."""
            version = model_version(production)
            if context["dag_run"].run_type == BACKFILL:
                raise AirflowSkipException(
                    f"a backfill run never signals drift: its window {result['window']} is in the past and was"
                    f" judged against today's production model {version}, so it starts no retraining (see its report"
                    f" {result['uri']})"
                )
            if earlier := last_signal(context["inlet_events"][asset], version, datetime.now(UTC)):
                raise AirflowSkipException(
                    f"drift of {version} was signalled at {earlier.timestamp.isoformat()} (run "
                    f"{(earlier.extra or {}).get('run_id')}); no new signal within {DRIFT_COOLDOWN}"
                )
            extra = drift_extra(production, result, context)
            context["outlet_events"][asset].extra = extra
            log.info("drift of %s in %s: %s; %s updated", version, result["window"], result["drifted"], asset.name)
            log.warning("%s", retraining_note(extra))
            return extra

        @task
        def notify_drift(extra: dict, **context) -> bool:
            """Tell the ``nlp_alerts`` topic that the traffic drifted and retraining starts."""
            return alerts.publish(*drift_message(extra, platform_name, asset.name), context)

        production = production_model()
        result = platform.monitor(production)
        signal = signal_drift(production, result)
        detect_drift(result) >> [signal, EmptyOperator(task_id=NO_DRIFT)]
        notify_drift(signal)
    limits.apply(dag, platform_name)
    return dag


def last_signal(events, version: str, now: datetime):
    """The latest event of ``events`` (the drift Asset's ``inlet_events``) for ``version`` within DRIFT_COOLDOWN of
    ``now``, or None."""
    recent = [event for event in events.after(now - DRIFT_COOLDOWN) if (event.extra or {}).get("version") == version]
    return max(recent, key=lambda event: event.timestamp, default=None)


def drift_extra(production: dict, result: dict, context) -> dict:
    """The drift event's ``extra``: which model drifted, in which window, on which statistics, and where the
    monitoring report is; the retraining run reads it from its triggering event."""
    return {
        "version": model_version(production),
        "model": production["model"],
        "drifted": result["drifted"],
        "window": result["window"],
        "records": result["records"],
        "uri": result["uri"],
        "data_fingerprint": production.get("data_fingerprint"),
        "dag_id": context["dag"].dag_id,
        "run_id": context["run_id"],
    }


def retraining_note(extra: dict) -> str:
    """What the retraining a drift signal starts can do: it retrains only on changed source data. The training cache
    skips a run whose data and configuration are the production model's, since the same data with the same seed
    gives the same model; a drift signal does not bypass it."""
    trained_on = f" (data fingerprint {extra['data_fingerprint'][:19]})" if extra.get("data_fingerprint") else ""
    return (
        f"Retraining needs new source data: if {SOURCE_DATA.name} has not changed since {extra['version']} was trained"
        f"{trained_on}, the training cache skips it, since the same data with the same configuration gives the same"
        f" model. Add new labelled pairs like the drifted traffic to the source data and update {SOURCE_DATA.name}."
    )


def drift_message(extra: dict, platform_name: str, asset_name: str) -> tuple[str, str]:
    """(subject, message) of the drift notice."""
    window = extra["window"]
    lines = [
        f"The traffic of {extra['version']} ({platform_name}) drifted from its training data in"
        f" {window['start']} .. {window['end']} ({extra['records']} pairs): {', '.join(extra['drifted'])}.",
        f"Monitoring report: {extra['uri']}",
        f"{asset_name} was updated: a retraining run of the training DAG starts.",
        retraining_note(extra),
        f"The monitor run: {alerts.run_url(extra['dag_id'], extra['run_id'])}",
    ]
    return f"{extra['dag_id']}: drift in the traffic of {extra['version']}", "\n".join(lines)


def _doc(platform_name: str, asset_name: str) -> str:
    return f"""
### {dag_id(platform_name)}: watch the {platform_name} endpoint's traffic for drift

Hourly (`NLP_MONITOR_SCHEDULE`), `monitor` compares the last `window_minutes` of the traffic the endpoint captured
(the training DAG's Params `capture_sample_rate`, `capture_text`) with the production model's training data:
token lengths (PSI), paraphrase share, mean confidence, low-confidence share, unknown-token rate, each against its
threshold Param. Too few pairs (`min_records`) is "not enough data", never drift. On drift, `signal_drift` updates
the Asset `{asset_name}`, which starts a retraining run, at most once per model version a day (never from a
backfill), and `notify_drift` tells the SNS topic of the Variable `nlp_alerts`. That run retrains only on new source
data: with `{SOURCE_DATA.name}` unchanged, the training cache skips it. See docs/monitoring.md.
"""
