"""The monitor DAGs (plugins/nlp_pipeline/monitoring.py): one per platform, hourly, production_model >> monitor >>
detect_drift >> signal_drift | no_drift; drift updates the platform's Asset, which its training DAG is scheduled on, at
most once per model version a day, and is told through the nlp_alerts topic; the local monitor step runs with the
capture root, the production model as baseline and the run's window."""

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import AirflowSkipException  # noqa: E402
from nlp_pipeline import assets, commands, eks, local, monitoring, pipeline, sagemaker  # noqa: E402
from nlp_pipeline.params import eks_params, local_params, monitor_params, sagemaker_params  # noqa: E402

from tasks import cli  # noqa: E402

PLATFORMS = {"local": (local, local_params), "sagemaker": (sagemaker, sagemaker_params), "eks": (eks, eks_params)}
NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
PRODUCTION = {
    "model": "/artefacts/nlp_local/x/model/try1-abc123",
    "version": "fp32-1a2b3c4d",
    "digest": "sha256:1",
    "data_fingerprint": "sha256:0f1e2d3c4b5a69788796",
}
RESULT = {
    "status": "drift",
    "records": 412,
    "drifted": ["token_length_psi", "positive_share"],
    "window": {"start": "2026-12-03T16:00:00+00:00", "end": "2026-12-03T17:00:00+00:00"},
    "statistics": [{"name": "token_length_psi", "value": 1.7, "status": "drift"}],
    "uri": "/artefacts/nlp_monitor_local/20261203T170000/monitoring/try1-abc123",
}


@pytest.fixture(scope="module", params=sorted(PLATFORMS))
def monitor_dag(request):
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("NLP_MONITOR_SCHEDULE", raising=False)
        return request.param, monitoring.build_monitor(PLATFORMS[request.param][0])


def test_each_platform_has_an_hourly_monitor_dag_of_the_documented_tasks(monitor_dag):
    name, dag = monitor_dag
    assert dag.dag_id == f"nlp_monitor_{name}" and not dag.catchup and dag.max_active_runs == 1
    assert dag.timetable.expression == "0 * * * *" and dag.params.keys() == monitor_params().keys()
    downstream = {task.task_id: task.downstream_task_ids for task in dag.tasks}
    assert downstream == {
        "production_model": {"monitor", "signal_drift"},
        "monitor": {"detect_drift", "signal_drift"},
        "detect_drift": {"signal_drift", "no_drift"},
        "signal_drift": {"notify_drift"},
        "no_drift": set(),
        "notify_drift": set(),
    }
    drift = assets.drift_detected(name)
    assert drift.name == f"nlp_drift_detected_{name}"
    signal = dag.get_task("signal_drift")
    assert signal.outlets == [drift] and signal.inlets == [drift], "the event, and the last events for the cooldown"
    assert all(task.outlets == [] for task in dag.tasks if task.task_id != "signal_drift")


@pytest.mark.parametrize("name", sorted(PLATFORMS))
def test_each_training_dag_runs_on_its_timetable_new_source_data_or_its_platforms_drift(name):
    platform, params = PLATFORMS[name]
    dag = pipeline.build_pipeline(f"nlp_{name}", platform, params=params(), doc_md=name, tags=[])
    condition = dag.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny", "either Asset starts a run, not both together"
    assert list(condition.objects) == [assets.SOURCE_DATA, assets.drift_detected(name)]
    assert dag.timetable.timetable.expression == "0 0 * * 0"


@pytest.mark.parametrize(
    ("status", "branch"), [("drift", "signal_drift"), ("ok", "no_drift"), ("not_enough_data", "no_drift")]
)
def test_only_drift_takes_the_signal_branch_too_few_pairs_never_does(monitor_dag, status, branch):
    _, dag = monitor_dag
    assert dag.get_task("detect_drift").python_callable(RESULT | {"status": status}) == branch


def monitor_context(dag_id: str = "nlp_monitor_local", **fields) -> dict:
    context = task_context(
        dag_id, "x", {name: param.value for name, param in monitor_params().items()}, logical_date=NOW, run_id="r1"
    )
    return context | {"data_interval_end": fields.get("data_interval_end", pendulum.instance(NOW))}


def test_the_window_ends_at_the_logical_date_else_the_trigger_time():
    """A scheduled run of the cron timetable: its logical date is its data interval's end, the hour it ran for."""
    context = monitor_context()
    assert monitoring.window_end(context) == NOW
    context["dag_run"] = SimpleNamespace(logical_date=NOW - timedelta(hours=2), run_after=NOW)
    assert monitoring.window_end(context) == NOW - timedelta(hours=2)
    context["dag_run"] = SimpleNamespace(logical_date=None, run_after=NOW)
    assert monitoring.window_end(context) == NOW


def test_a_run_triggered_with_a_logical_date_watches_the_window_before_it_not_before_now():
    """``airflow dags trigger -l`` and TriggerDagRunOperator give a logical date, but Airflow computes the data
    interval from when the run was triggered (airflow/api/common/trigger_dag.py): its end is now."""
    asked = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    context = monitor_context(data_interval_end=pendulum.instance(NOW))
    context["dag_run"] = SimpleNamespace(logical_date=asked, run_after=NOW, run_type="manual")
    assert monitoring.window_end(context) == asked


def test_no_production_model_skips_the_run(monitor_dag, monkeypatch):
    name, dag = monitor_dag
    monkeypatch.setattr(PLATFORMS[name][0], "production_model", lambda context=None: None)
    with pytest.raises(AirflowSkipException, match=f"no production model on {name} yet"):
        dag.get_task("production_model").python_callable(**monitor_context())


class Events:
    """The drift Asset's inlet_events as the task runner hands them: ``after(moment)`` filters by time."""

    def __init__(self, *events):
        self.events, self.asked = list(events), []

    def after(self, moment):
        self.asked.append(moment)
        return [event for event in self.events if event.timestamp > moment]


def event(hours_ago: float, version: str) -> SimpleNamespace:
    moment = datetime.now(UTC) - timedelta(hours=hours_ago)
    return SimpleNamespace(timestamp=moment, extra={"version": version, "run_id": f"run-{hours_ago}"})


def signal(events: Events):
    dag = monitoring.build_monitor(local)
    context = monitor_context()
    drift = assets.drift_detected("local")
    context["inlet_events"] = {drift: events}
    extra = dag.get_task("signal_drift").python_callable(PRODUCTION, RESULT, **context)
    return extra, context["outlet_events"][drift].extra


def test_drift_updates_the_asset_with_the_model_the_window_and_the_report():
    extra, recorded = signal(Events(event(30, PRODUCTION["version"]), event(2, "fp32-other")))
    assert (
        extra
        == recorded
        == {
            "version": PRODUCTION["version"],
            "model": PRODUCTION["model"],
            "drifted": RESULT["drifted"],
            "window": RESULT["window"],
            "records": RESULT["records"],
            "uri": RESULT["uri"],
            "data_fingerprint": PRODUCTION["data_fingerprint"],
            "dag_id": "nlp_monitor_local",
            "run_id": "r1",
        }
    )


def test_the_signal_says_retraining_needs_new_source_data(caplog, monkeypatch):
    """Retraining the same data with the same seed gives the same model, so the training cache skips a drift-started
    run when the source has not changed: the signal's log and the notice say so, naming the data it was trained on."""
    with caplog.at_level("WARNING", logger="nlp_pipeline.monitoring"):
        extra, _ = signal(Events())
    [note] = [record.getMessage() for record in caplog.records if "nlp_source_data" in record.getMessage()]
    assert "the training cache skips it" in note and PRODUCTION["data_fingerprint"][:19] in note
    assert "new labelled pairs" in note
    _, message = monitoring.drift_message(extra, "local", "nlp_drift_detected_local")
    assert note in message
    _, unknown = monitoring.drift_message(extra | {"data_fingerprint": None}, "local", "nlp_drift_detected_local")
    assert "nlp_source_data has not changed since fp32-1a2b3c4d was trained, the training cache" in unknown


def test_drift_of_a_model_signalled_within_a_day_is_not_signalled_again():
    events = Events(event(23, PRODUCTION["version"]))
    with pytest.raises(
        AirflowSkipException, match=r"drift of fp32-1a2b3c4d was signalled at .* \(run run-23\); no new"
    ):
        signal(events)
    [since] = events.asked
    assert abs(datetime.now(UTC) - since - monitoring.DRIFT_COOLDOWN) < timedelta(minutes=1)


def test_a_backfilled_window_never_signals_drift():
    """A backfill watches past windows, judged against today's production model: its drift starts no retraining."""
    dag = monitoring.build_monitor(local)
    context = monitor_context()
    context["dag_run"] = SimpleNamespace(logical_date=NOW, run_after=NOW, run_type="backfill")
    drift = assets.drift_detected("local")
    context["inlet_events"] = {drift: Events()}
    with pytest.raises(AirflowSkipException, match="a backfill run never signals drift"):
        dag.get_task("signal_drift").python_callable(PRODUCTION, RESULT, **context)
    assert context["outlet_events"][drift].extra == {}


def test_a_model_without_a_version_is_known_by_its_location():
    assert monitoring.model_version({"model": "s3://b/model"}) == "s3://b/model"
    assert monitoring.model_version(PRODUCTION) == PRODUCTION["version"]


def test_the_drift_notice_names_the_model_the_statistics_the_report_and_the_run(monkeypatch):
    published = []
    monkeypatch.setattr(monitoring.alerts, "publish", lambda *args: published.append(args) or True)
    dag = monitoring.build_monitor(local)
    extra = monitoring.drift_extra(PRODUCTION, RESULT, monitor_context())
    assert dag.get_task("notify_drift").python_callable(extra, **monitor_context()) is True
    [(subject, message, _)] = published
    assert subject == "nlp_monitor_local: drift in the traffic of fp32-1a2b3c4d"
    assert "token_length_psi, positive_share" in message and RESULT["uri"] in message
    assert "nlp_drift_detected_local was updated" in message and "/dags/nlp_monitor_local/runs/r1" in message


# ---- local: the monitor step -----------------------------------------------------------------------------------------
def test_the_local_monitor_reads_the_capture_root_against_the_production_model_over_the_runs_window(
    tmp_path, monkeypatch
):
    ran = []

    def run_step(*command, **_):
        ran.append([str(part) for part in command])
        raise AirflowSkipException("recorded")  # stop once the command is known

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "artefacts"))
    monkeypatch.setattr(local, "run_step", run_step)
    context = monitor_context()
    context["params"] |= {"window_minutes": 30, "psi_threshold": 0.3}
    with pytest.raises(AirflowSkipException):
        local.monitor.function(PRODUCTION, **context)
    [(step, *flags)] = ran
    arguments = cli.parse(step, flags)
    assert step == "monitor" and arguments.capture == f"{tmp_path}/artefacts/capture/nlp_local"
    assert arguments.baseline == PRODUCTION["model"] and arguments.window_end == "2026-12-03T17:00:00+00:00"
    assert (arguments.window_minutes, arguments.psi_threshold) == (30, 0.3)
    assert arguments.output.startswith(f"{tmp_path}/artefacts/nlp_monitor_local/20261203T170000")
    assert local.capture_root() == f"{tmp_path}/artefacts/capture/nlp_local"


def test_the_local_monitor_returns_the_step_result_and_the_published_report(tmp_path, monkeypatch):
    report = {
        "status": "ok",
        "window": RESULT["window"],
        "records": 150,
        "min_records": 100,
        "drifted": [],
        "statistics": [
            {"name": "token_length_psi", "value": 0.01, "baseline": None, "threshold": 0.2, "status": "pass"}
        ],
    }

    def run_step(step, *flags, **_):
        output = flags[list(flags).index(commands.flag("output")) + 1]
        output.mkdir(parents=True)
        (output / "monitoring.json").write_text(json.dumps(report))
        return ""

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "artefacts"))
    monkeypatch.setattr(local, "run_step", run_step)
    result = local.monitor.function(PRODUCTION, **monitor_context())
    assert (result["status"], result["records"], result["drifted"]) == ("ok", 150, [])
    assert json.loads(Path(result["uri"], "monitoring.json").read_text()) == report


def test_the_maintenance_dag_collects_the_monitor_runs_folders_too(tmp_path, monkeypatch):
    from nlp_pipeline import maintenance

    ran = []
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    (tmp_path / "registry.sqlite").write_text("")
    monkeypatch.setattr(maintenance, "run_step", lambda *command: ran.append([str(part) for part in command]))
    maintenance.collect_garbage.function()
    [(step, *flags)] = ran
    assert cli.parse(step, flags).dag_ids() == ["nlp_local", "nlp_monitor_local"]
