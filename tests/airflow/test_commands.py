"""The step contract across the Airflow/tasks boundary: every command a platform builds parses with the real CLI
(``tasks.cli.parse``) into the run's Param values, and each Param that sets a flag offers exactly what the flag
accepts (type, default, range, help)."""

import json
import math
import sys
from pathlib import Path

import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

import pendulum  # noqa: E402
from nlp_pipeline import commands, local, policy, sagemaker  # noqa: E402
from nlp_pipeline.commands import PARAM_FLAGS, STEP_ARGUMENTS  # noqa: E402
from nlp_pipeline.params import (  # noqa: E402
    FORM_NOTES,
    eks_params,
    local_params,
    monitor_params,
    pipeline_params,
    sagemaker_params,
)

from tasks import cli  # noqa: E402
from tasks.config import flag_schema  # noqa: E402
from tasks.errors import ConfigError  # noqa: E402

SCHEMA_KEYS = (
    "type",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "items",
    "minItems",
    "maxItems",
)
NUDGE = 1e-6  # how far inside (or outside) an exclusive bound a probe goes
# What the run's first task fixed: the promotion policy, here a strict one that no Param value can loosen.
RUN_POLICY = policy.DEFAULTS | {"min_accuracy": 0.9, "min_f1": 0.95, "max_int8_loss": 0.001, "champion_margin": 0}
POLICY_XCOM = {(policy.TASK_ID, "return_value"): RUN_POLICY}


def every_param() -> dict:
    """The training DAGs' Params and the monitor DAGs': every Param that sets a flag is one of them."""
    return pipeline_params() | monitor_params()


def flag_params() -> dict:
    params = every_param()
    return {spec.param: params[spec.param] for spec in PARAM_FLAGS}


def defaults(extra: dict) -> dict:
    return {name: param.value for name, param in (pipeline_params() | extra).items()}


def value_type(schema: dict) -> str:
    """The JSON type of a Param's values: ``integer`` for ``["null", "integer"]`` (optional: the step decides)."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    [given] = [name for name in types if name != "null"]
    return given


def edge(schema: dict):
    """The farthest value a flag's schema allows: its upper bound, else its lower one; an enum's last value."""
    if "enum" in schema:
        return schema["enum"][-1]
    nudge = 1 if value_type(schema) == "integer" else NUDGE
    if "maximum" in schema:
        return schema["maximum"]
    if "exclusiveMaximum" in schema:
        return schema["exclusiveMaximum"] - nudge
    if "minimum" in schema:
        return schema["minimum"]
    if "exclusiveMinimum" in schema:
        return schema["exclusiveMinimum"] + nudge
    return None


def edge_params(extra: dict) -> dict:
    """Every Param that sets a flag at the edge of its range: what a user may still enter."""
    values = defaults(extra)
    for name, param in flag_params().items():
        if (value := edge(param.schema)) is not None:
            values[name] = value
    return values


PARAM_SETS = {"defaults": defaults, "edges": edge_params}


def parsed(command: list[str]):
    step, *flags = command
    return cli.parse(step, flags)


def assert_carries(arguments, step: str, params: dict) -> None:
    """The parsed arguments hold the run's Param value of every flag a Param sets for ``step``, and the evaluate
    step the run's promotion policy's thresholds."""
    if step == "evaluate":
        assert {name: getattr(arguments, name) for name in policy.THRESHOLDS} == {
            name: RUN_POLICY[name] for name in policy.THRESHOLDS
        }
    for spec in PARAM_FLAGS:
        if spec.step != step:
            continue
        got, wanted = getattr(arguments, spec.field), params[spec.param]
        if isinstance(got, str) and got.startswith("/opt/ml/processing/input/"):
            continue  # an s3:// source or model, mounted into the SageMaker job
        if isinstance(wanted, float):
            assert math.isclose(got, wanted, rel_tol=1e-12), (step, spec.field, got, wanted)
        else:
            assert got == wanted, (step, spec.field, got, wanted)


# ---- the Params and the flags -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", PARAM_FLAGS, ids=lambda spec: f"{spec.param}->{spec.step}.{spec.field}")
def test_a_param_that_sets_a_flag_offers_the_flags_type_default_range_and_help(spec):
    assert STEP_ARGUMENTS[spec.step] is cli.STEPS[spec.step].arguments, "commands and the CLI name the same class"
    schema = flag_schema(STEP_ARGUMENTS[spec.step], spec.field)
    param = every_param()[spec.param]
    assert param.value == schema["default"]
    assert {key: param.schema.get(key) for key in SCHEMA_KEYS} == {key: schema.get(key) for key in SCHEMA_KEYS}
    first = next(other for other in PARAM_FLAGS if other.param == spec.param)
    if first == spec:  # the flag's help, and what the form says beyond it
        assert param.description == schema["description"] + FORM_NOTES.get(spec.param, "")


def probes(schema: dict) -> list[tuple[object, bool]]:
    """(value, allowed) pairs on both sides of each bound of a numeric schema."""
    nudge = 1 if value_type(schema) == "integer" else NUDGE
    found = []
    for key, inside, outside in (
        ("minimum", 0, -nudge),
        ("maximum", 0, nudge),
        ("exclusiveMinimum", nudge, 0),
        ("exclusiveMaximum", -nudge, 0),
    ):
        if key in schema:
            found += [(schema[key] + inside, True), (schema[key] + outside, False)]
    return found


NUMERIC_FLAGS = [spec for spec in PARAM_FLAGS if value_type(flag_params()[spec.param].schema) in ("integer", "number")]


@pytest.mark.parametrize("spec", NUMERIC_FLAGS, ids=lambda spec: f"{spec.param}->{spec.step}.{spec.field}")
def test_the_form_and_the_cli_refuse_the_same_values(spec):
    from airflow.sdk.exceptions import ParamValidationError

    param = every_param()[spec.param]
    arguments, step = STEP_ARGUMENTS[spec.step], cli.STEPS[spec.step]
    required = {
        name: "x"
        for name in ("output", "data", "model", "capture", "baseline")
        if name in arguments.__dataclass_fields__
    }
    for value, allowed in probes(param.schema):
        try:
            param.resolve(value)
            form = True
        except ParamValidationError:
            form = False
        try:
            step.arguments(**required | {spec.field: value})
            flag = True
        except ConfigError:
            flag = False
        assert (form, flag) == (allowed, allowed), (spec.param, value)


def list_probes(schema: dict) -> list[tuple[list, bool]]:
    """(value, allowed) pairs of a list Param: every item on both sides of each item bound, and one item too few
    or too many."""
    count = schema["minItems"]
    found = [([value] * count, allowed) for value, allowed in probes(schema["items"] | {"type": "number"})]
    found += [([schema["items"].get("minimum", 1)] * (count - 1), False)] if count > 1 else []
    return found + [([schema["items"].get("minimum", 1)] * (schema["maxItems"] + 1), False)]


LIST_FLAGS = [spec for spec in PARAM_FLAGS if value_type(flag_params()[spec.param].schema) == "array"]


@pytest.mark.parametrize("spec", LIST_FLAGS, ids=lambda spec: f"{spec.param}->{spec.step}.{spec.field}")
def test_the_form_and_the_cli_refuse_the_same_lists(spec):
    """A search range or the batch sizes: each item within the flag's bounds (a learning rate above 0, a batch
    size of 1 or more), as many items as the flag takes. The form refuses at trigger time what the step would."""
    from airflow.sdk.exceptions import ParamValidationError

    param = every_param()[spec.param]
    cases = list_probes(param.schema)
    assert len(cases) >= 3
    for value, allowed in cases:
        try:
            param.resolve(value)
            form = True
        except ParamValidationError:
            form = False
        try:
            STEP_ARGUMENTS[spec.step](output="x", **{spec.field: value})
            flag = True
        except ConfigError:
            flag = False
        assert (form, flag) == (allowed, allowed), (spec.param, value)


# ---- local: every step's subprocess command ------------------------------------------------------------------------
class Ran(Exception):
    """Raised by the stand-in runner once it recorded a command: the task stops there."""


@pytest.fixture
def local_commands(monkeypatch, tmp_path):
    """The commands local tasks run, recorded; the registry's production model is ``production``."""
    ran, production = [], {"model": str(tmp_path / "champion"), "data_fingerprint": "sha256:1", "config": {}}

    def run_step(*command, cpus=None, timeout=None):
        ran.append([str(part) for part in command])
        if command[:1] == ("registry",) and "production" in command:
            return json.dumps(production)
        raise Ran

    monkeypatch.setattr(local, "run_step", run_step)
    monkeypatch.setattr(local, "run_step_json", lambda *command: json.loads(run_step(*command)))
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "artefacts"))
    return ran


@pytest.mark.parametrize("param_set", PARAM_SETS)
def test_every_command_nlp_local_runs_parses_into_the_runs_params(local_commands, param_set):
    params = PARAM_SETS[param_set](local_params())
    context = task_context(
        "nlp_local",
        "x",
        params,
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id="manual__x",
        xcom=POLICY_XCOM,
    )
    staged, trained = {"data": "/s", "fingerprint": "sha256:2"}, {"model": "/m", "uri": "/m"}
    evaluation = {"model": "/q", "evaluation": "/e", "reasons": []}
    entry, deployed = {"model": "/q", "version": "v1", "id": 3}, {"url": "http://127.0.0.1:1", "version": "v1"}
    context["ti"].xcom[("deploy", "return_value")] = deployed | {"state": "/state"}
    calls = [
        lambda: local.stage_dataset.function(**context),
        lambda: local.train.function(staged, None, **context),
        lambda: local.quantize.function(staged, trained, **context | {"params": params | {"quantize": True}}),
        lambda: local.evaluate.function(staged, trained, **context),
        lambda: local.register.function(evaluation, **context),
        lambda: local.deploy.function(entry, **context),
        lambda: local.smoke_test.function(deployed),
        lambda: local.mark_production.function(entry, {"url": deployed["url"]}),
        lambda: local.rollback.function(**context),
    ]
    for call in calls:
        with pytest.raises(Ran):
            call()
    steps = [command[0] for command in local_commands]
    assert steps == ["stage", "registry", "train", "quantize", "registry", "evaluate", "registry", "deploy-local"] + [
        "smoke-test",
        "registry",
        "rollback",
    ]
    for command in local_commands:
        arguments = parsed(command)
        assert_carries(arguments, command[0], params)
    evaluate = parsed(local_commands[5])
    assert evaluate.champion.endswith("champion"), "the production model is the champion"
    assert parsed(local_commands[3]).target_hardware == local.TARGET_HARDWARE == "this machine (the endpoint's)"


TRIAL = {
    "name": "trial-003",
    "setting": {"learning_rate": 2e-4, "epochs": 2, "batch_size": 8}
    | {
        "warmup_ratio": 0.05,
        "weight_decay": 0.02,
    },
}
# A search deadline well ahead: the trial runs its step.
DEADLINE = "2999-01-01T00:00:00+00:00"


@pytest.mark.parametrize("param_set", PARAM_SETS)
def test_every_tuning_command_nlp_local_runs_parses_into_the_runs_params_and_the_chosen_setting(
    local_commands, tmp_path, param_set
):
    """plan_trials' ``tune plan``, a trial's ``train --score-only`` on its setting, choose_setting's ``tune select``,
    then train and the registry entry with the chosen setting and its tuning.json."""
    from nlp_pipeline import decisions

    params = PARAM_SETS[param_set](local_params())
    params["tuning_trials"] = max(1, params["tuning_trials"])
    context = task_context(
        "nlp_local",
        "x",
        params,
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id="manual__x",
        max_tries=2,  # the pipeline's retries: a first try's failure is raised, to be retried
        xcom=POLICY_XCOM,
    )
    search = tmp_path / "tune" / "try1"
    tuned = {"setting": TRIAL["setting"], "best": {}, "trials": 4, "tuning": str(search / "tuning.json")}
    context["ti"].xcom |= {("plan_trials", local.SEARCH): str(search), ("choose_setting", "return_value"): tuned}
    staged = {"data": "/s", "fingerprint": "sha256:2"}
    evaluation = {"model": "/q", "evaluation": "/e", "reasons": []}
    calls = [
        lambda: local.plan_trials.function(staged, **context),
        lambda: local.trial.function(TRIAL, staged, str(search), DEADLINE, **context),
        lambda: local.choose_setting.function([TRIAL], **context),
        lambda: local.train.function(staged, tuned, **context),
        lambda: local.register.function(evaluation, **context),
    ]
    for call in calls:
        with pytest.raises(Ran):
            call()
    steps = [command[0] for command in local_commands]
    assert steps == ["tune", "train", "tune", "registry", "train", "registry"]
    plan, trial, select, _, train, register = (parsed(command) for command in local_commands)
    assert (plan.action, select.action, select.output) == ("plan", "select", str(search))
    assert_carries(plan, "tune", params)
    chosen = commands.with_setting(params, TRIAL["setting"])
    assert {name: getattr(trial, name) for name in TRIAL["setting"]} == TRIAL["setting"]
    assert_carries(trial, "train", chosen)
    assert trial.score_only and trial.max_steps == params["tuning_max_steps"]
    assert (trial.output, trial.early_stopping_dir) == (str(search / "trials" / "trial-003"), str(search / "scores"))
    assert_carries(train, "train", chosen)
    assert not train.score_only and train.tuning == tuned["tuning"], "train records the search in the model card"
    assert json.loads(register.config) == decisions.training_config(chosen), "the registry keeps the tuned setting"


def test_a_trial_command_is_the_runs_train_command_with_the_trials_setting_scoring_only():
    params = defaults({})
    command = commands.trial_command(params, TRIAL, data="/d", output="/o/trials/trial-003", max_steps=20)
    arguments = parsed(command)
    assert arguments.score_only and arguments.max_steps == 20
    assert (arguments.learning_rate, arguments.epochs, arguments.batch_size) == (2e-4, 2, 8)
    assert (arguments.warmup_ratio, arguments.weight_decay, arguments.seed) == (0.05, 0.02, params["seed"])
    untouched = commands.trial_command(params, {"name": "t", "setting": {}}, data="/d", output="/o")
    untouched.remove("--score-only")
    assert untouched == commands.command("train", params, data="/d", output="/o"), "the run's own train command"
    with pytest.raises(ValueError, match=r"a tuning setting names \['dropout'\], which no Param sets"):
        commands.trial_command(params, {"name": "t", "setting": {"dropout": 0.1}}, data="/d", output="/o")


# ---- SageMaker: processing jobs and the training job, as the task image's job contract reads them ------------------
@pytest.fixture
def sagemaker_variables(monkeypatch):
    for name, value in {
        "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": "s3://bucket/artefacts",
        "AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/nlp",
        "AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-tasks:test-sagemaker",
    }.items():
        monkeypatch.setenv(name, value)
    champion = {"model": "s3://bucket/champion/", "data_fingerprint": "sha256:1", "config": {}}
    monkeypatch.setattr(sagemaker, "production_model", lambda context=None: champion)


def in_job(monkeypatch, root: Path, step: str, request: dict) -> list[str]:
    """The flags the step runs with inside the job ``request`` describes, from the task image's contract."""
    from tasks.runtime.sagemaker_job import detect_job

    monkeypatch.setenv("TASKS_SAGEMAKER_ROOT", str(root))
    if step == "train":
        config = root / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
        return detect_job(step).arguments(step)
    (root / "config").mkdir(parents=True)
    (root / "config" / "processingjobconfig.json").write_text("{}")
    for processing_input in request["ProcessingInputs"]:
        Path(root, processing_input["S3Input"]["LocalPath"].removeprefix("/opt/ml/")).mkdir(parents=True)
    container_step, *flags = request["AppSpecification"]["ContainerArguments"]
    assert container_step == step
    return detect_job(step).arguments(step) + flags


@pytest.mark.parametrize("param_set", PARAM_SETS)
@pytest.mark.parametrize("step", ["stage", "train", "quantize", "evaluate"])
def test_every_sagemaker_job_runs_its_step_with_the_runs_params(
    sagemaker_variables, monkeypatch, tmp_path, step, param_set
):
    params = PARAM_SETS[param_set](sagemaker_params()) | {
        "source": "s3://bucket/raw/",
        "base_model": "bert-base-uncased",
    }
    xcom = POLICY_XCOM | {
        ("stage_dataset", "return_value"): {"uri": "s3://bucket/staged", "fingerprint": "sha256:2"},
        ("train", "return_value"): {"model": "s3://bucket/model/model.tar.gz"},
        ("quantize", "return_value"): {"model": "s3://bucket/quantized"},
    }
    context = task_context(
        "nlp_sagemaker", step, params, logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"), run_id="r", xcom=xcom
    )
    build = {
        "stage": sagemaker._stage_config,
        "train": sagemaker._train_config,
        "quantize": sagemaker._quantize_config,
        "evaluate": sagemaker._evaluate_config,
    }[step]
    flags = in_job(monkeypatch, tmp_path / "ml", step, build(context, f"nlp-{step}-x"))
    arguments = cli.parse(step, flags)
    assert_carries(arguments, step, params)
    if step == "evaluate":
        assert arguments.champion.endswith("/processing/input/champion")
    if step == "quantize":
        assert arguments.target_hardware == f"SageMaker {params['endpoint_instance_type']} (the endpoint's)"


# ---- EKS: the pods' arguments -------------------------------------------------------------------------------------
@pytest.mark.parametrize("param_set", PARAM_SETS)
def test_every_pod_nlp_eks_starts_runs_its_step_with_the_runs_params(monkeypatch, param_set):
    from kubernetes.client import ApiClient
    from nlp_pipeline import eks
    from nlp_pipeline.pipeline import build_pipeline

    from tests.airflow.test_kubernetes_manifests import eks_context

    params = PARAM_SETS[param_set](eks_params())
    context = eks_context(monkeypatch, **params)
    context["ti"].xcom |= POLICY_XCOM
    production = {"model": "/artefacts/nlp_eks/x/quantized", "data_fingerprint": "sha256:1", "config": {}}
    monkeypatch.setattr(eks, "production_model", lambda context=None: production)
    dag = build_pipeline("nlp_eks", eks, params=eks_params(), doc_md="nlp_eks", tags=[])
    for task_id in ("stage_dataset", "train", "quantize", "evaluate", "register", "reject", "mark_production"):
        pod = ApiClient().sanitize_for_serialization(dag.get_task(task_id).build_pod_request_obj(context, dry_run=True))
        command = pod["spec"]["containers"][0]["args"]
        assert_carries(parsed(command), command[0], context["params"])
        if task_id == "quantize":
            assert parsed(command).target_hardware == eks.compression_placement(context["params"])[1]
    [server] = eks._server_objects(context, "/artefacts/m", {})[1]["spec"]["template"]["spec"]["containers"]
    assert parsed(server["args"]).model == "/artefacts/m"


def test_commands_leave_out_what_is_none_and_spell_flags_in_kebab_case():
    params = defaults({})
    thresholds = {name: RUN_POLICY[name] for name in policy.THRESHOLDS}
    command = commands.command("evaluate", params, **thresholds, model="/m", data="/d", output="/o", champion=None)
    assert command[0] == "evaluate" and "--champion" not in command
    assert command[command.index("--max-int8-loss") + 1] == "0.001" and command[-2:] == ["--output", "/o"]
    assert params["epochs"] is params["learning_rate"] is None, "by the model's size: the step decides"
    assert params["batch_size"] is params["warmup_ratio"] is params["weight_decay"] is None, "the step's defaults"
    assert commands.values("train", params, model=None).keys() == {"precision", "seed"}


def test_a_switch_is_its_flag_alone_when_on_and_left_out_when_off():
    """The CLI's bool flags are switches (``--json``, not ``--json True``): a built command parses either way."""
    from tasks.cli import parse

    on, off = (commands.command("status", {}, state="/s", json=value) for value in (True, False))
    assert on == ["status", "--state", "/s", "--json"] and off == ["status", "--state", "/s"]
    assert (parse(on[0], on[1:]).json, parse(off[0], off[1:]).json) == (True, False)


def test_a_new_flag_of_a_step_is_one_line_of_param_flags(monkeypatch):
    """A step's flag (its dataclass field) reaches the form, every platform's command and the training cache's
    configuration through its one line in PARAM_FLAGS."""
    from nlp_pipeline import decisions

    assert "checkpoint_every" not in pipeline_params()
    monkeypatch.setattr(
        commands, "PARAM_FLAGS", (*PARAM_FLAGS, commands.ParamFlag("checkpoint_every", "train", "checkpoint_every"))
    )
    param = pipeline_params()["checkpoint_every"]
    assert (param.value, param.schema["section"], param.schema["minimum"]) == (0, "Training", 0)
    params = defaults({}) | {"checkpoint_every": 50}
    assert parsed(commands.command("train", params, data="/d", output="/o")).checkpoint_every == 50
    assert decisions.training_config(params)["checkpoint_every"] == 50


# ---- capture: the server's settings from the run's Params, the same on every platform -----------------------------
SERVED = {"capture_dir": "/c", "capture_sample_rate": 0.5, "capture_text": False}  # a live endpoint's capture


@pytest.fixture
def no_default_rate(monkeypatch):
    from nlp_pipeline import params

    monkeypatch.delenv(params.DEFAULT_CAPTURE_RATE_ENV, raising=False)


def test_capture_keeps_the_endpoints_by_default_and_its_flags_parse_into_the_servers_settings(no_default_rate):
    params = defaults({})
    assert (params["capture_sample_rate"], params["capture_text"]) == (None, False)
    assert commands.capture_flags(params, "s3://b/capture/nlp_local") == {}
    on = params | {"capture_sample_rate": 0.5, "capture_text": True}
    flags = commands.capture_flags(on, "s3://b/capture/nlp_local")
    served = parsed(commands.command("serve", {}, model="/m", **flags))
    assert (served.capture_dir, served.capture_sample_rate, served.capture_text) == (
        "s3://b/capture/nlp_local",
        0.5,
        True,
    )
    assert parsed(commands.command("serve", {}, model="/m", **commands.capture_flags(params, "/c"))).capture_dir == ""


def test_a_null_capture_rate_keeps_the_live_endpoints_capture_and_0_turns_it_off(no_default_rate):
    """A run started by drift or the schedule takes the defaults: it keeps capturing what the endpoint captured."""
    params = defaults({})
    assert commands.capture_flags(params, "/elsewhere", SERVED) == SERVED
    assert commands.capture_flags(params, "/elsewhere", {}) == {}
    assert commands.capture_flags(params | {"capture_sample_rate": 0}, "/c", SERVED) == {}
    assert commands.capture_flags(params | {"capture_sample_rate": 1}, "/c", SERVED) == {
        "capture_dir": "/c",
        "capture_sample_rate": 1,
        "capture_text": False,
    }


def test_the_capture_rate_param_offers_the_serve_flags_range_0_for_off_and_null_for_keep():
    from airflow.sdk.exceptions import ParamValidationError

    param = pipeline_params()["capture_sample_rate"]
    assert param.schema["section"] == "Monitoring" and "0: capture off" in param.description
    assert "null" in param.description
    for value in (None, 0, 0.001, 1):
        param.resolve(value)
    for value in (-0.1, 1.01):
        with pytest.raises(ParamValidationError):
            param.resolve(value)


@pytest.mark.parametrize("rate", [0, None])
def test_text_capture_without_a_capture_rate_is_refused_when_the_run_starts(no_default_rate, rate):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(
        AirflowFailException, match="capture_text: capturing text needs capture_sample_rate above 0 .*null"
    ):
        policy.check_params(defaults({}) | {"capture_text": True, "capture_sample_rate": rate})
    policy.check_params(defaults({}) | {"capture_text": True, "capture_sample_rate": 0.1})


@pytest.mark.parametrize(("given", "rate"), [(None, None), ("", None), ("0", 0), ("0.05", 0.05), ("1", 1)])
def test_the_capture_rate_defaults_to_the_environments_so_scheduled_runs_keep_capturing(monkeypatch, given, rate):
    from nlp_pipeline import params

    if given is None:
        monkeypatch.delenv(params.DEFAULT_CAPTURE_RATE_ENV, raising=False)
    else:
        monkeypatch.setenv(params.DEFAULT_CAPTURE_RATE_ENV, given)
    assert pipeline_params()["capture_sample_rate"].value == rate


@pytest.mark.parametrize("given", ["1.5", "-0.2", "often"])
def test_a_bad_default_capture_rate_names_the_variable(monkeypatch, given):
    from nlp_pipeline import params

    monkeypatch.setenv(params.DEFAULT_CAPTURE_RATE_ENV, given)
    with pytest.raises(
        ValueError,
        match=rf"NLP_DEFAULT_CAPTURE_SAMPLE_RATE must be empty \(keep the endpoint's capture\), 0 \(capture off\) or"
        rf" in \(0, 1\], got '{given}'",
    ):
        pipeline_params()


def test_the_monitor_params_are_the_monitor_dags_and_no_training_dags():
    assert set(monitor_params()) == {spec.param for spec in PARAM_FLAGS if spec.step == "monitor"}
    assert not set(monitor_params()) & set(pipeline_params())
    assert all(param.schema["section"] == "Monitoring" for param in monitor_params().values())
