"""How the local platform runs a step: output into the task log, bad input not retried, the rest retried; each try
writes a folder of its own, and a retry reuses an earlier try's finished output."""

import json
import logging
import sys
from pathlib import Path

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline.operators.local import run_step, run_step_json  # noqa: E402


def test_a_step_streams_its_output_and_returns_its_last_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nlp_pipeline.steps")
    assert run_step_json("registry", "--registry", tmp_path / "registry.sqlite", "--action", "production") is None
    assert any("python -m tasks registry --registry" in record.message for record in caplog.records)


def test_a_bad_flag_fails_at_once_without_retries(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"registry failed on a bad flag, not retried: .*--action"):
        run_step("registry", "--registry", tmp_path / "r.sqlite", "--action", "explode")


def test_bad_data_fails_at_once_without_retries(tmp_path, minilm_path):
    from airflow.sdk.exceptions import AirflowFailException

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n7\t1\t2\ta\tb\n")
    with pytest.raises(AirflowFailException, match="failed on bad data"):
        run_step("stage", "--source", tmp_path / "raw", "--output", tmp_path / "staged", "--tokenizer", minilm_path)


def test_other_failures_are_retried(tmp_path):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException, match="rollback exited with 1: .*no endpoint runs from") as raised:
        run_step("rollback", "--state", tmp_path / "nothing")
    assert not isinstance(raised.value, AirflowFailException)


# ---- the local tasks: one folder per try, and a retry reuses finished work ------------------------------------------
STAGED = {"data": "/staged/try1", "uri": "/staged/try1", "fingerprint": "sha256:0f"}


def train_context(try_number: int = 1, run_id: str = "scheduled__2026-05-01T00:00:00+00:00", **params) -> dict:
    from nlp_pipeline.params import local_params, pipeline_params

    defaults = {name: param.value for name, param in (pipeline_params() | local_params()).items()}
    return task_context(
        "nlp_local",
        "train",
        defaults | params,
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id=run_id,
        try_number=try_number,
    )


@pytest.fixture
def fake_train(tmp_path, monkeypatch) -> list[list[str]]:
    """The train step as it writes its --output (whole and sealed), on a local root with no production model;
    the commands it ran."""
    from nlp_pipeline import local

    from tasks.runtime.outputs import atomic_output

    ran = []

    def run_step(step, *flags):
        flags = [str(flag) for flag in flags]
        ran.append([step, *flags])
        with atomic_output(flags[flags.index("--output") + 1]) as work:
            (work / "saved_model").mkdir()
            (work / "saved_model" / "weights").write_text(f"trained by command {len(ran)}")
            (work / "metrics.json").write_text('{"accuracy": 0.9}')

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr(local, "production_model", lambda context=None: None)
    monkeypatch.setattr(local, "run_step", run_step)
    return ran


def test_a_retried_train_reuses_the_finished_model_instead_of_training_again(fake_train, monkeypatch, caplog):
    from nlp_pipeline import artefacts, local

    from tasks.runtime import digest

    publish = artefacts.publish

    def failing_upload(context, step, folder):
        if context["ti"].try_number == 1:
            raise OSError("the upload failed")
        return publish(context, step, folder)

    monkeypatch.setattr(artefacts, "publish", failing_upload)
    with pytest.raises(OSError, match="the upload failed"):
        local.train.function(STAGED, None, **train_context(1))
    caplog.set_level(logging.INFO, logger="nlp_pipeline.artefacts")
    trained = local.train.function(STAGED, None, **train_context(2))

    assert len(fake_train) == 1, "trained once"
    assert trained["model"] == trained["uri"] and trained["model"].endswith("/nlp_local/20260501T000000Z/model/try1")
    assert f"reusing try1's output (digest {digest.verify(trained['model'])})" in caplog.text
    assert trained["metrics"] == {"accuracy": 0.9}
    assert "--checkpoint-dir" in fake_train[0], "a failed try's checkpoints are where the next try looks"


def test_a_rerun_of_train_keeps_the_production_bytes_and_writes_a_folder_of_its_own(fake_train):
    from nlp_pipeline import local

    from tasks.runtime import digest

    production = local.train.function(STAGED, None, **train_context(1))
    registered = digest.verify(production["model"])  # what the registry entry records
    rerun = local.train.function(STAGED, None, **train_context(1, run_id="backfill__2026-05-01T00:00:00+00:00"))

    assert len(fake_train) == 2 and rerun["model"] != production["model"]
    assert digest.verify(production["model"], registered) == registered, "the production bytes are unchanged"
    assert Path(production["model"], "saved_model", "weights").read_text() == "trained by command 1"
    assert Path(rerun["model"], "saved_model", "weights").read_text() == "trained by command 2"


def test_the_local_deploy_hands_the_registry_entrys_digest_to_deploy_local(tmp_path, monkeypatch):
    from nlp_pipeline import local

    from tasks import cli

    digest = "sha256:" + "a" * 64
    entry = {"id": 1, "model": str(tmp_path / "model" / "try1"), "version": "fp32-aaaa", "digest": digest}
    ran = []
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    monkeypatch.setattr(local, "run_step", lambda *command: ran.append([str(part) for part in command]))
    monkeypatch.setattr(
        local, "run_step_json", lambda *command: {"url": "http://127.0.0.1:1", "current": {"version": "fp32-aaaa"}}
    )
    local.deploy.function(entry, **train_context())

    [(step, *flags)] = ran
    arguments = cli.parse(step, flags)
    assert step == "deploy-local" and (arguments.model, arguments.model_digest) == (entry["model"], digest)


# ---- tuning trials side by side: each on a share of the CPUs -------------------------------------------------------
def test_a_step_given_cpus_is_told_them_in_its_environment(tmp_path, monkeypatch):
    """No preexec_fn (unsafe in a threaded worker): the step is told its CPUs in NLP_CPUS and pins itself
    (tasks/runtime/cpu.py, before its thread pools are sized); a step given none is told nothing."""
    from tasks.runtime.cpu import CPUS_ENV

    package = tmp_path / "tasks"
    package.mkdir()
    (package / "__main__.py").write_text(f"import json, os\nprint(json.dumps(os.environ.get({CPUS_ENV!r})))\n")
    monkeypatch.chdir(tmp_path)  # `python -m tasks` finds this package first
    monkeypatch.delenv(CPUS_ENV, raising=False)
    assert run_step_json("cpus") is None
    assert json.loads(run_step("cpus", cpus={3, 1})) == "1,3"


def test_trials_at_once_hold_disjoint_cpu_shares_until_they_end(tmp_path, monkeypatch):
    from nlp_pipeline.operators import local

    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    locks = tmp_path / "shares"
    with local.cpu_share(8, 4, locks) as first, local.cpu_share(8, 4, locks) as second:
        assert (first, second) == (frozenset({0, 1}), frozenset({2, 3}))
        with local.cpu_share(8, 4, locks) as third, local.cpu_share(8, 4, locks) as fourth:
            assert third | fourth == frozenset({4, 5, 6, 7}) and not third & fourth
            pass
        with local.cpu_share(8, 4, locks) as again:
            assert again == frozenset({4, 5}), "an ended trial's share is free again"
    with local.cpu_share(2, 1, locks) as whole:
        assert whole is None, "one share: no pinning"


def test_a_trial_finding_every_share_held_waits_for_its_own(tmp_path, monkeypatch):
    """More trials at once than shares (a pool given more slots by hand): the extra one waits for share
    map_index % shares rather than run on every CPU beside the others."""
    import threading

    from nlp_pipeline.operators import local

    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    locks, got, acquired = tmp_path / "shares", [], threading.Event()

    def fifth():
        with local.cpu_share(4, 2, locks, index=5) as share:
            got.append(share)
            acquired.set()

    with local.cpu_share(4, 2, locks) as first:
        with local.cpu_share(4, 2, locks) as second:
            assert (first, second) == (frozenset({0, 1}), frozenset({2, 3}))
            waiting = threading.Thread(target=fifth, daemon=True)
            waiting.start()
            assert not acquired.wait(0.5), f"ran beside the others on {got}"
        assert acquired.wait(30) and got == [frozenset({2, 3})], "share 5 % 2 = 1, once its holder ended"
    waiting.join(30)


def test_a_share_held_by_a_process_that_died_is_free(tmp_path, monkeypatch):
    """The kernel drops a dead process's lock: a killed trial never keeps its CPUs from the next."""
    import subprocess

    from nlp_pipeline.operators import local

    monkeypatch.setattr(local.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    holder = (
        "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True);"
        " sys.stdin.read()"
    )
    (tmp_path / "shares").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / "shares" / "share-0-of-2.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "held"
        with local.cpu_share(4, 2, tmp_path / "shares") as share:
            assert share == frozenset({2, 3}), "share 0 is another process's"
    finally:
        process.kill()
        process.wait()
    with local.cpu_share(4, 2, tmp_path / "shares") as share:
        assert share == frozenset({0, 1})


def test_tuning_off_plans_no_trial_and_chooses_nothing(monkeypatch):
    """tuning_trials 0: plan_trials runs no step and maps no trial (Airflow skips ``trial``), choose_setting hands
    train None, and train takes the run's Params."""
    from nlp_pipeline import local

    def no_step(*command, **options):
        raise AssertionError(f"ran {command}")

    monkeypatch.setattr(local, "run_step", no_step)
    monkeypatch.setattr(local, "run_step_json", no_step)
    context = train_context(tuning_trials=0)
    assert local.plan_trials.function(STAGED, **context) == []
    assert local.choose_setting.function([], **context) is None
    assert context["ti"].xcom == {}, "no search folder pushed"


# ---- the local search: its own folder, one deadline, a failed trial counted failed ---------------------------------
TRIALS = [{"name": f"trial-00{index}", "setting": {"learning_rate": 1e-4 * (index + 1)}} for index in range(2)]


@pytest.fixture
def fake_plan(tmp_path, monkeypatch) -> list[list[str]]:
    """``tune plan`` as it writes its --output (whole, sealed), on a local root; the commands it ran."""
    from nlp_pipeline import local

    from tasks.runtime.outputs import atomic_output

    ran = []

    def run_step(step, *flags, **options):
        flags = [str(flag) for flag in flags]
        ran.append([step, *flags])
        with atomic_output(flags[flags.index("--output") + 1]) as work:
            (work / "plan.json").write_text(json.dumps({"seed": 42, "trials": TRIALS}))

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr(local, "run_step", run_step)
    return ran


def plan_context(try_number: int = 1) -> dict:
    context = train_context(try_number, tuning_trials=2)
    context["ti"].task_id = "plan_trials"
    return context


def test_the_search_has_a_folder_of_its_own_for_each_try_of_the_plan(fake_plan):
    """Trials and ``tune select`` write into the search's folder, never into the plan's verified output; a cleared
    tuning group (plan_trials again, a later try) starts an empty search rather than reuse stale scores."""
    from nlp_pipeline import local

    from tasks.runtime import digest

    first = plan_context(1)
    assert local.plan_trials.function(STAGED, **first) == TRIALS
    search = Path(first["ti"].xcom[("plan_trials", local.SEARCH)])
    [plan] = [path.parent for path in search.parents[1].glob("try*/plan.json")]
    sealed = digest.verify(plan)
    assert json.loads((search / "plan.json").read_text())["trials"] == TRIALS, "tune select reads the plan there"
    assert plan not in search.parents and search != plan
    (search / "scores").mkdir()
    (search / "plan.json").write_text("changed by the search")
    assert digest.verify(plan, sealed) == sealed, "the plan's output is unchanged"

    again = plan_context(2)
    local.plan_trials.function(STAGED, **again)
    cleared = Path(again["ti"].xcom[("plan_trials", local.SEARCH)])
    assert cleared != search and not (cleared / "scores").exists()


def test_the_plan_sets_the_searchs_deadline_its_budget_from_now(fake_plan):
    from datetime import UTC, datetime

    from nlp_pipeline import limits, local

    context = plan_context()
    before = datetime.now(UTC)
    local.plan_trials.function(STAGED, **context)
    deadline = datetime.fromisoformat(context["ti"].xcom[("plan_trials", local.DEADLINE)])
    assert before + limits.TUNING_BUDGET <= deadline <= datetime.now(UTC) + limits.TUNING_BUDGET


@pytest.fixture
def trial_step(monkeypatch) -> list[dict]:
    """The trial's ``run_step``: what each call was given (its command and options); raising what ``fail`` holds."""
    from nlp_pipeline import local

    calls = []

    def run_step(*command, **options):
        calls.append({"command": [str(part) for part in command], **options})
        if calls[-1].get("fail"):
            raise calls[-1]["fail"]

    monkeypatch.setattr(local, "run_step", run_step)
    monkeypatch.setattr(local.step_result, "result_of", lambda step, output: {"accuracy": 0.8})
    return calls


def run_trial(tmp_path, deadline, try_number=1, max_tries=2, **params):
    from nlp_pipeline import local

    context = train_context(try_number, tuning_trials=2, **params)
    context["ti"].max_tries = max_tries
    return local.trial.function(TRIALS[0], STAGED, str(tmp_path / "search"), deadline.isoformat(), **context)


def test_a_trial_runs_its_step_with_the_time_left_to_the_searchs_deadline(tmp_path, trial_step, monkeypatch):
    from datetime import UTC, datetime, timedelta

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    result = run_trial(tmp_path, datetime.now(UTC) + timedelta(minutes=5), tuning_max_steps=7)
    [call] = trial_step
    assert 240 < call["timeout"] <= 300
    assert call["command"][call["command"].index("--max-steps") + 1] == "7"
    assert result["name"] == "trial-000" and result["accuracy"] == 0.8


def test_a_trial_that_starts_after_the_searchs_deadline_runs_nothing_and_counts_failed(tmp_path, trial_step):
    from datetime import UTC, datetime, timedelta

    result = run_trial(tmp_path, datetime.now(UTC) - timedelta(seconds=1))
    assert result == {"name": "trial-000", "status": "failed"} and not trial_step


def test_a_trial_whose_step_fails_is_retried_then_counted_failed_on_its_last_try(tmp_path, monkeypatch, caplog):
    """A failed trial fails no run: choose_setting (none_failed) would be upstream_failed by a failed mapped trial,
    so the last try reports the trial failed (``tune select`` counts it so) instead of raising."""
    from datetime import UTC, datetime, timedelta

    from airflow.sdk.exceptions import AirflowException
    from nlp_pipeline import local

    def failing(*command, **options):
        raise AirflowException("train exited with 1: out of memory")

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(local, "run_step", failing)
    deadline = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(AirflowException, match="out of memory"):
        run_trial(tmp_path, deadline, try_number=1, max_tries=2)
    assert run_trial(tmp_path, deadline, try_number=3, max_tries=2) == {"name": "trial-000", "status": "failed"}
    assert "trial-000 failed on its last try" in caplog.text and "out of memory" in caplog.text


def test_choose_setting_chooses_among_the_trials_that_scored_when_one_failed(tmp_path, monkeypatch):
    """The real ``tune select`` on a search whose first trial failed (no metrics.json) and second scored."""
    from nlp_pipeline import local

    search = tmp_path / "search"
    (search / "trials" / "trial-001").mkdir(parents=True)
    space = {"learning_rate": {"type": "log", "range": [1e-5, 1e-3]}}
    plan = {"seed": 42, "objective": "validation accuracy", "max_steps": 4, "early_stopping": "auto"}
    (search / "plan.json").write_text(json.dumps(plan | {"space": space, "trials": TRIALS}))
    scores = {"accuracy": 0.75, "f1": 0.8, "val_loss": 0.5, "epochs_run": 1, "stopped_early": False}
    (search / "trials" / "trial-001" / "metrics.json").write_text(json.dumps(scores))
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    context = train_context(tuning_trials=2)
    context["ti"].xcom[("plan_trials", local.SEARCH)] = str(search)
    trials = [{"name": "trial-000", "status": "failed"}, {"name": "trial-001", "accuracy": 0.75}]
    chosen = local.choose_setting.function(trials, **context)
    assert chosen["best"]["name"] == "trial-001" and chosen["setting"] == TRIALS[1]["setting"]
    assert chosen["trials"] == 2


def test_a_step_past_its_timeout_is_stopped(tmp_path, monkeypatch):
    import time

    from nlp_pipeline.operators import local

    package = tmp_path / "tasks"
    package.mkdir()
    (package / "__main__.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(local, "STOP_GRACE_SECONDS", 1)
    started = time.monotonic()
    with pytest.raises(local.StepTimeout, match="train ran past its 1 s and was stopped: started"):
        local.run_step("train", timeout=1)
    assert time.monotonic() - started < 10


def test_each_mapped_trial_is_named_after_its_trial():
    """The grid and the logs show trial-003 rather than map index 3: the task's op_kwargs hold the expanded trial."""
    from types import SimpleNamespace

    import jinja2
    from nlp_pipeline import local

    template = local.trial.partial(staged={}, search="", deadline="").expand(trial=TRIALS).operator.map_index_template
    rendered = jinja2.Template(template).render(task=SimpleNamespace(op_kwargs={"trial": {"name": "trial-003"}}))
    assert rendered == "trial-003"


# ---- capture: the run's settings reach the endpoint, a running one included -------------------------------------------
CAPTURED = {"capture_sample_rate": 0.25, "capture_text": True}
OFF = {"capture_sample_rate": 0}


class StartFailed(RuntimeError):
    """deploy-local failing to start the server (the port taken, the disk full)."""


def deploy_with(tmp_path, monkeypatch, running: dict | None = None, fails=None, **params) -> list[list[str]]:
    """Run local.deploy with ``params``; ``running``: the endpoint's state.json (its pid this process: alive);
    ``fails(command)``: which steps raise StartFailed (after being recorded)."""
    import os

    from nlp_pipeline import local

    monkeypatch.delenv("NLP_DEFAULT_CAPTURE_SAMPLE_RATE", raising=False)
    state = tmp_path / "nlp_local" / "endpoint"
    if running is not None:
        state.mkdir(parents=True, exist_ok=True)
        (state / "state.json").write_text(json.dumps({"pid": os.getpid()} | running))
    ran = []

    def run_step(*command):
        ran.append([str(part) for part in command])
        if fails and fails(ran[-1]):
            raise StartFailed(f"{command[0]} failed")

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    monkeypatch.setattr(local, "run_step", run_step)
    monkeypatch.setattr(local, "run_step_json", lambda *command: {"url": "http://127.0.0.1:1", "current": ENTRY})
    context = train_context(**params)
    context["params"] |= {"endpoint_port": 8080}
    local.deploy.function(ENTRY, **context)
    return ran


ENTRY = {"id": 2, "model": "/artefacts/model/try1-bbbbbb", "version": "fp32-bbbb", "digest": "sha256:" + "b" * 64}
SERVED = {"model": "/artefacts/model/try1-aaaaaa", "version": "fp32-aaaa", "digest": "sha256:" + "a" * 64, "since": "x"}


def test_the_local_deploy_starts_the_endpoint_with_the_runs_capture_settings(tmp_path, monkeypatch):
    from nlp_pipeline import local

    from tasks import cli

    [(step, *flags)] = deploy_with(tmp_path, monkeypatch, **CAPTURED)
    arguments = cli.parse(step, flags)
    assert step == "deploy-local" and arguments.capture_dir == f"{tmp_path}/capture/nlp_local"
    assert (arguments.capture_sample_rate, arguments.capture_text) == (0.25, True)
    recorded = json.loads((tmp_path / "nlp_local" / "endpoint" / local.CAPTURE_SETTINGS).read_text())
    assert recorded == {"capture_dir": arguments.capture_dir, "capture_sample_rate": 0.25, "capture_text": True}


def test_capture_off_passes_no_capture_flag(tmp_path, monkeypatch):
    for params in ({}, OFF):
        [(step, *flags)] = deploy_with(tmp_path, monkeypatch, **params)
        assert step == "deploy-local" and not [flag for flag in flags if flag.startswith("--capture")]


def test_a_deploy_with_the_default_params_keeps_the_endpoints_capture_without_a_restart(tmp_path, monkeypatch):
    """A retraining run started by drift or the schedule takes the defaults (capture_sample_rate null): its model is
    served with the capture the endpoint had, so the monitor keeps getting traffic, and nothing restarts."""
    from nlp_pipeline import local

    from tasks import cli

    deploy_with(tmp_path, monkeypatch, **CAPTURED)
    ran = deploy_with(tmp_path, monkeypatch, running={"current": SERVED})
    assert [command[0] for command in ran] == ["deploy-local"]
    swapped = cli.parse(ran[0][0], ran[0][1:])
    assert (swapped.capture_dir, swapped.capture_sample_rate, swapped.capture_text) == (
        f"{tmp_path}/capture/nlp_local",
        0.25,
        True,
    )
    recorded = json.loads((tmp_path / "nlp_local" / "endpoint" / local.CAPTURE_SETTINGS).read_text())
    assert recorded == {"capture_dir": swapped.capture_dir, "capture_sample_rate": 0.25, "capture_text": True}


def test_a_failed_capture_restart_starts_the_served_model_again_with_its_former_capture(tmp_path, monkeypatch):
    """The server stopped for a capture change fails to start with it: the model it served is started again with the
    capture it had (none), so the endpoint serves and a later rollback has one to roll back; then the task fails,
    and the run's model is not swapped in."""
    from tasks import cli

    deploy_with(tmp_path, monkeypatch, **OFF)
    ran = []

    def fails(command):
        ran.append(command)
        return command[0] == "deploy-local" and "--capture-dir" in command

    with pytest.raises(StartFailed):
        deploy_with(tmp_path, monkeypatch, running={"current": SERVED}, fails=fails, **CAPTURED)
    assert [command[0] for command in ran] == ["stop-local", "deploy-local", "deploy-local"]
    restored = cli.parse(ran[-1][0], ran[-1][1:])
    assert (restored.model, restored.model_digest, restored.capture_dir) == (SERVED["model"], SERVED["digest"], "")


def test_a_failed_capture_restart_leaves_the_endpoint_serving_as_before(tmp_path, monkeypatch):
    from nlp_pipeline import local

    from tasks import cli

    deploy_with(tmp_path, monkeypatch, **CAPTURED)
    before = json.loads((tmp_path / "nlp_local" / "endpoint" / local.CAPTURE_SETTINGS).read_text())
    attempts = []

    def fails(command):
        attempts.append(command)
        return command[0] == "deploy-local" and len(attempts) == 2  # the restart with the new capture

    with pytest.raises(StartFailed):
        deploy_with(tmp_path, monkeypatch, running={"current": SERVED}, fails=fails, **OFF)
    assert [command[0] for command in attempts] == ["stop-local", "deploy-local", "deploy-local"]
    failed, restored = (cli.parse(command[0], command[1:]) for command in attempts[1:])
    assert failed.capture_dir == "" and failed.model == SERVED["model"]
    assert (restored.model, restored.model_digest) == (SERVED["model"], SERVED["digest"])
    assert (restored.capture_dir, restored.capture_sample_rate, restored.capture_text) == (
        before["capture_dir"],
        0.25,
        True,
    )
    assert json.loads((tmp_path / "nlp_local" / "endpoint" / local.CAPTURE_SETTINGS).read_text()) == before


def test_a_running_endpoint_capturing_otherwise_is_restarted_on_its_model_before_the_swap(tmp_path, monkeypatch):
    """deploy-local's swap keeps a running server's settings: the server is stopped, started again with the run's
    capture on the model it served (known to load), and only then is the run's model swapped in, so a model that
    fails to load still leaves one served."""
    from tasks import cli

    ran = deploy_with(tmp_path, monkeypatch, running={"current": SERVED}, **CAPTURED)
    assert [command[0] for command in ran] == ["stop-local", "deploy-local", "deploy-local"]
    restarted, swapped = (cli.parse(command[0], command[1:]) for command in ran[1:])
    assert (restarted.model, restarted.model_digest) == (SERVED["model"], SERVED["digest"])
    assert (swapped.model, swapped.model_digest) == (ENTRY["model"], ENTRY["digest"])
    assert restarted.capture_sample_rate == swapped.capture_sample_rate == 0.25
    assert restarted.capture_dir == swapped.capture_dir == f"{tmp_path}/capture/nlp_local"


def test_capture_turned_off_restarts_an_endpoint_that_captures(tmp_path, monkeypatch):
    deploy_with(tmp_path, monkeypatch, running={"current": SERVED}, **CAPTURED)
    ran = deploy_with(tmp_path, monkeypatch, running={"current": SERVED}, **OFF)
    assert [command[0] for command in ran] == ["stop-local", "deploy-local", "deploy-local"]
    assert not [part for command in ran for part in command if part.startswith("--capture")]


def test_an_endpoint_already_capturing_as_asked_is_only_swapped(tmp_path, monkeypatch):
    deploy_with(tmp_path, monkeypatch, **CAPTURED)
    ran = deploy_with(tmp_path, monkeypatch, running={"current": SERVED}, **CAPTURED)
    assert [command[0] for command in ran] == ["deploy-local"]
    assert [command[0] for command in deploy_with(tmp_path, monkeypatch, running={"current": SERVED}, **OFF)] == [
        "stop-local",
        "deploy-local",
        "deploy-local",
    ], "capture off asked of a capturing endpoint"


def test_an_endpoint_not_running_is_not_restarted_but_started_by_deploy_local(tmp_path, monkeypatch):
    ran = deploy_with(tmp_path, monkeypatch, running={"current": SERVED, "pid": 2**22 + 1}, **CAPTURED)
    assert [command[0] for command in ran] == ["deploy-local"]
