"""The local platform: every step is its ``python -m tasks`` command in a subprocess of the worker.

Artefacts are folders under the artefact root (artefacts.py: local, or uploaded to s3://), the registry
is a SQLite file beside them, and the endpoint is the long-running local server of ``deploy-local``,
swapped in place. XCom carries each artefact's ``uri`` (under the root) and the local copy the next steps
of the run read.

Capture and monitoring (monitoring.py): ``deploy`` starts the server with the run's capture settings
(commands.capture_flags; a run whose ``capture_sample_rate`` is null keeps the recorded ones) writing to
``capture_root()``, and records them beside the endpoint's state. A running server keeps the settings it was started
with, so when the run asks for others ``deploy`` restarts it with them on the model it serves (a short outage while
that known-good model loads again; if it does not start, it is started again as it was and the task fails), then
swaps the new model in as usual: a model that fails to load still leaves the old one served. ``monitor``
(nlp_monitor_local) runs the monitor step over ``capture_root()`` against the production model's folder.

Tuning: ``plan_trials`` runs ``tune plan`` into the run's ``tune`` folder, starts the search in a folder of its own
(``tune/search/tryN``: the plan's output stays as verified, and a cleared tuning group starts afresh) and sets its
deadline (``limits.TUNING_BUDGET`` from now); ``trial`` is mapped over the plan's trials (``expand``) in the pool
``limits.TUNING_POOL``, each a ``train --score-only`` run on its share of the CPUs until the deadline; and
``choose_setting`` runs ``tune select`` and publishes the search with its tuning.json. A trial that fails on its
last try, or finds the deadline passed, reports itself failed rather than raising: a failed mapped instance would
leave ``choose_setting`` upstream_failed, and ``tune select`` chooses among the trials that scored.
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import Variable, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from nlp_pipeline import artefacts, commands, decisions, limits, monitoring, policy
from nlp_pipeline.assets import MODEL_CANDIDATES, MODEL_PRODUCTION, STAGED_DATA, model_event
from nlp_pipeline.links import EVALUATION_LINKS, EndpointUrlLink, RegisteredModelCardLink, linked, persist_evaluation
from nlp_pipeline.operators.local import StepTimeout, cpu_share, run_step, run_step_json
from nlp_pipeline.platform import XCom
from tasks.endpoint import state as endpoint_state
from tasks.runtime import step_result
from tasks.runtime.cpu import available_cores
from tasks.tuning.plan import PLAN, SCORES, TRIALS
from tasks.tuning.results import TUNING

log = logging.getLogger(__name__)

DAG_ID = "nlp_local"  # dags/nlp_local.py; the maintenance DAG collects this DAG's folder only
ROLLOUT_START = "deploy"  # the first task of the rollout: choose_rollout's branch target
# quantize runs on the machine the local endpoint serves on: there is nowhere else to measure, so nothing moves it.
_, TARGET_HARDWARE = decisions.compression_hardware("this machine", None, str, "")
SEARCH = "search"  # plan_trials' XCom with the search's folder, where the trials write
DEADLINE = "deadline"  # plan_trials' XCom with the search's deadline (ISO 8601, UTC): no trial runs past it
CAPTURE_SETTINGS = "capture.json"  # in the endpoint's state folder: the capture flags its server was started with


def production_model(context=None) -> dict | None:
    """The registry's production model (``model``, ``version``, ``data_fingerprint``, ``config``), or None."""
    return run_step_json(*commands.command("registry", {}, registry=artefacts.registry_file(), action="production"))


def run_once(context, step: str, folder: str, params, **given) -> Path:
    """The step's output: an earlier try's of this run and command when it is complete and verifies (a retry
    after a later failure, e.g. an upload), otherwise this try's new folder, written by running the step."""
    command = commands.command(step, params, **given)
    if reused := artefacts.reusable_output(context, folder, command):
        return reused
    output = artefacts.claim_try(context, folder, command)
    run_step(*command, commands.flag("output"), output)
    return output


@task(outlets=[STAGED_DATA])
def stage_dataset(**context) -> dict:
    output = run_once(context, "stage", "staged", context["params"])
    uri = artefacts.publish(context, "staged", output)
    return {"data": str(output), "uri": uri} | step_result.result_of("stage", output)


@task
def plan_trials(staged: dict, **context) -> list[dict]:
    """The search's trials (``tune plan`` into the run's ``tune`` folder): what ``trial`` is mapped over; none when
    ``tuning_trials`` is 0, so ``trial`` is skipped. Pushes the search's own folder (XCom ``search``, the plan in
    it) and its deadline (XCom ``deadline``)."""
    params = context["params"]
    if not params["tuning_trials"]:
        log.info("tuning is off (tuning_trials is 0): training takes the run's Params")
        return []
    command = commands.command("tune", params, action="plan")
    plan = run_once(context, "tune", "tune", params, action="plan") / PLAN
    search = artefacts.claim_try(context, "tune/search", command)
    search.mkdir()
    shutil.copyfile(plan, search / PLAN)
    deadline = datetime.now(UTC) + limits.TUNING_BUDGET
    context["ti"].xcom_push(key=SEARCH, value=str(search))
    context["ti"].xcom_push(key=DEADLINE, value=deadline.isoformat())
    trials = json.loads(plan.read_text())["trials"]
    log.info("%d trials planned; the search in %s ends by %s", len(trials), search, deadline)
    return trials


def _failed(trial: dict, reason: str) -> dict:
    """A trial ``tune select`` counts failed (it has no metrics.json)."""
    log.error("%s %s; tune select counts it failed", trial["name"], reason)
    return {"name": trial["name"], "status": "failed"}


@task(pool=limits.TUNING_POOL, map_index_template="{{ task.op_kwargs['trial']['name'] }}")
def trial(trial: dict, staged: dict, search: str, deadline: str, **context) -> dict:
    """One planned trial: ``train --score-only`` on its setting for at most ``tuning_max_steps`` steps, written to
    the search's ``trials/NAME`` and stopped early by the others' scores (``scores/``), on its share of the CPUs:
    cores // the pool's slots; stopped at the search's ``deadline``. Failed on its last try (or past the deadline),
    it is reported failed, not raised."""
    params, folder = context["params"], Path(search)
    left = (datetime.fromisoformat(deadline) - datetime.now(UTC)).total_seconds()
    if left <= 0:
        return _failed(trial, f"started after the search's deadline {deadline}")
    output = folder / TRIALS / trial["name"]
    command = commands.trial_command(
        params,
        trial,
        data=staged["data"],
        output=output,
        early_stopping_dir=folder / SCORES,
        max_steps=commands.values("tune", params)["max_steps"],
    )
    cores = available_cores()
    try:
        shares, locks = limits.tuning_pool_slots(cores), artefacts.airflow_home() / "nlp-cpu-shares"
        with cpu_share(cores, shares, locks, index=context["ti"].map_index) as cpus:
            run_step(*command, cpus=cpus, timeout=left)
    except StepTimeout as error:
        return _failed(trial, f"was stopped at the search's deadline {deadline} ({error})")
    except Exception as error:
        ti = context["ti"]
        if ti.try_number <= ti.max_tries and not isinstance(error, AirflowFailException):
            raise  # a retry may still score it
        return _failed(trial, f"failed on its last try: {error}")
    return {"name": trial["name"], "setting": trial["setting"]} | step_result.result_of("train", output)


@task(task_id=decisions.CHOOSE_SETTING, trigger_rule="none_failed")
def choose_setting(trials: list[dict], **context) -> dict | None:
    """The best trial's setting (``tune select``: highest validation accuracy, then F1), with the search published
    under the artefact root; None when tuning is off."""
    if not trials:
        return None
    search = Path(context["ti"].xcom_pull(task_ids="plan_trials", key=SEARCH))
    tuning = run_step_json(*commands.command("tune", context["params"], action="select", output=search))
    uri = artefacts.publish(context, "tune", search)
    best = tuning["best"]
    log.info("best of %d trials: %s (accuracy %s, F1 %s)", len(trials), best["name"], best["accuracy"], best["f1"])
    return decisions.chosen_setting(tuning, f"{uri}/{TUNING}")


def tune(staged: XCom) -> XCom:
    """The tuning stage: plan, the trials mapped over the plan (a few at once, as the pool allows), the choice."""
    planned = plan_trials(staged)
    trials = trial.partial(staged=staged, search=planned[SEARCH], deadline=planned[DEADLINE]).expand(trial=planned)
    chosen = choose_setting(planned)
    trials >> chosen
    return chosen


@task
def train(staged: dict, tuned: dict | None, **context) -> dict:
    params = decisions.tuned_params(context["params"], tuned)
    decisions.skip_training_if_cached(production_model(), staged["fingerprint"], params)
    # One checkpoint folder per run, outside the try folders, so a retry resumes where a failed try stopped.
    checkpoints = artefacts.step_folder(context, "model") / "checkpoints"
    tuning = tuned and tuned["tuning"]
    output = run_once(context, "train", "model", params, data=staged["data"], checkpoint_dir=checkpoints, tuning=tuning)
    metrics = json.loads((output / "metrics.json").read_text())
    return {"model": str(output), "uri": artefacts.publish(context, "model", output), "metrics": metrics}


@task
def quantize(staged: dict, trained: dict, **context) -> dict:
    params = context["params"]
    if unquantized := decisions.unquantized_candidate(params, trained):
        log.info("quantisation is off for this run: the FP32 model is the candidate")
        return unquantized | {"uri": trained["uri"]}
    output = run_once(
        context,
        "quantize",
        "quantized",
        params,
        model=trained["model"],
        data=staged["data"],
        target_hardware=TARGET_HARDWARE,
    )
    report = step_result.result_of("quantize", output)
    return {"model": str(output), "uri": artefacts.publish(context, "quantized", output)} | report


@linked(*EVALUATION_LINKS)
@task
def evaluate(staged: dict, candidate: dict, **context) -> dict:
    production = production_model()
    output = run_once(
        context,
        "evaluate",
        "evaluation",
        context["params"],
        **policy.thresholds(context),
        model=candidate["model"],
        data=staged["data"],
        champion=production and production["model"],
    )
    persist_evaluation(context, artefacts.publish(context, "evaluation", output), candidate["uri"])
    return {"evaluation": str(output), "model": candidate["uri"]} | step_result.result_of("evaluate", output)


def _register(evaluation: dict, status: str, context) -> dict:
    """The registry entry, which is also the task's event on MODEL_CANDIDATES."""
    config = decisions.training_config(decisions.run_params(context)[0])
    entry = run_step_json(*commands.registration(artefacts.registry_file(), evaluation, status, config, context))
    model_event(context, MODEL_CANDIDATES, entry)
    return entry


@linked(RegisteredModelCardLink())
@task(outlets=[MODEL_CANDIDATES])
def register(evaluation: dict, **context) -> dict:
    """Record the promoted candidate: approved, or a candidate still waiting for a person's approval."""
    status = "candidate" if policy.requires_approval(context) else "approved"
    return _register(evaluation, status, context)


@linked(RegisteredModelCardLink())
@task(outlets=[MODEL_CANDIDATES])
def reject(evaluation: dict, **context) -> dict:
    """Record the rejected candidate, archived with the gate's reasons."""
    for reason in evaluation["reasons"]:
        log.info("gate: %s", reason)
    return _register(evaluation, "archived", context)


@linked(EndpointUrlLink())
@task(trigger_rule="none_failed_min_one_success")
def deploy(entry: dict, **context) -> dict:
    state, port = artefacts.endpoint_state(context), context["params"]["endpoint_port"]
    capture = commands.capture_flags(context["params"], capture_root(), served_capture(state))
    restart_for_capture(state, port, capture)
    # The entry's digest: deploy-local refuses a model whose bytes are not the ones registered.
    run_step(
        *commands.command(
            "deploy-local",
            {},
            model=entry["model"],
            state=state,
            port=port,
            model_digest=entry.get("digest"),
            **capture,
        )
    )
    record_capture(state, capture)
    status = run_step_json(*commands.command("status", {}, state=state, json=True))
    served = status["current"]["version"]
    if served != entry["version"]:
        raise AirflowFailException(f"the endpoint serves {served} after the rollout, not {entry['version']}")
    EndpointUrlLink.persist(context, public_url(status["url"]))
    return {"url": status["url"], "version": served, "state": str(state)}


def capture_root() -> str:
    """Where the local endpoint writes its capture and nlp_monitor_local reads it: ROOT/capture/nlp_local."""
    return artefacts.capture_uri(artefacts.root(), DAG_ID)


def served_capture(state: Path) -> dict:
    """The capture flags the endpoint of ``state`` was started with (``CAPTURE_SETTINGS``); {} (off) when none are
    recorded: an endpoint started before capture existed, or never."""
    try:
        return json.loads((state / CAPTURE_SETTINGS).read_text())
    except FileNotFoundError:
        return {}


def record_capture(state: Path, capture: dict) -> None:
    """Record the running endpoint's capture flags, replaced in one rename."""
    work = endpoint_state.prepare(state) / f".{CAPTURE_SETTINGS}.tmp"
    work.write_text(json.dumps(capture, sort_keys=True) + "\n")
    work.replace(state / CAPTURE_SETTINGS)


def restart_for_capture(state: Path, port: int, capture: dict) -> None:
    """Restart the running endpoint with ``capture`` when it captures otherwise: stop it (it drains its requests and
    flushes its capture), then start it on the model it served. deploy-local then swaps the run's model in as
    always. An endpoint not running is started with ``capture`` by deploy-local itself. When the server does not
    start with ``capture``, the model it served is started again with the capture it had, and the error raised: the
    endpoint keeps serving what it served, and the run's model is not rolled out on an untested server."""
    running, was = endpoint_state.read(state), served_capture(state)
    if was == capture or not running or not running.get("current") or not endpoint_state.pid_alive(running["pid"]):
        return
    current = running["current"]
    log.warning(
        "the endpoint captures %s, this run asks for %s: restarting it with them on %s, then rolling out",
        was or "nothing",
        capture or "nothing",
        current["version"],
    )
    run_step(*commands.command("stop-local", {}, state=state))
    try:
        _start(state, port, current, capture)
    except Exception:
        log.error(
            "the endpoint did not start with capture %s: starting %s again as it was", capture, current["version"]
        )
        _start(state, port, current, was)
        raise
    record_capture(state, capture)


def _start(state: Path, port: int, served: dict, capture: dict) -> None:
    """Start the stopped endpoint of ``state`` on the model it ``served`` (its state's ``current``) with ``capture``."""
    model_digest = served.get("digest") or None
    run_step(
        *commands.command(
            "deploy-local", {}, model=served["model"], state=state, port=port, model_digest=model_digest, **capture
        )
    )


def public_url(url: str) -> str:
    """Where a person's browser reaches the endpoint at the worker's ``url``: the Variable
    ``nlp_endpoint_public_url`` where the two differ (docker-compose publishes the scheduler's port 8080 on the
    host's 8090), else ``url``."""
    return Variable.get("nlp_endpoint_public_url", default=None) or url


@task(task_id=monitoring.MONITOR)
def monitor(production: dict, **context) -> dict:
    """nlp_monitor_local's monitor step: the window of ``capture_root()`` against the production model's traffic
    baseline, written into the run's ``monitoring`` folder."""
    given = monitoring.monitor_arguments(context, production, capture_root())
    output = run_once(context, "monitor", "monitoring", context["params"], **given)
    uri = artefacts.publish(context, "monitoring", output)
    return step_result.result_of("monitor", output) | {"uri": uri}


@task
def smoke_test(deployed: dict) -> dict:
    return run_step_json(*commands.command("smoke-test", {}, url=deployed["url"], expect_version=deployed["version"]))


@task(outlets=[MODEL_PRODUCTION])
def mark_production(entry: dict, smoke: dict, **context) -> dict:
    log.info("%s passed its smoke test at %s", entry["version"], smoke["url"])
    promoted = run_step_json(
        *commands.command("registry", {}, registry=artefacts.registry_file(), action="promote", id=entry["id"])
    )
    model_event(context, MODEL_PRODUCTION, promoted)
    return promoted


@task(trigger_rule="one_failed")
def rollback(**context) -> None:
    """Undo a rollout whose smoke test failed; a deploy that never switched left nothing to undo."""
    deployed = context["ti"].xcom_pull(task_ids="deploy")
    if not deployed:
        raise AirflowSkipException("nothing was deployed, so nothing to roll back")
    run_step(*commands.command("rollback", {}, state=deployed["state"], expect_version=deployed["version"]))
