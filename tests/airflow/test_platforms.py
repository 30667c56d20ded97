"""The platforms share one pipeline: each provides what platform.Platform names, none imports another, and the
shared decisions (decisions.py) are made once and applied the same way by every platform."""

import ast
import inspect
import json
import subprocess
import sys

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO, imported_modules

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import AirflowSkipException  # noqa: E402
from nlp_pipeline import decisions, eks, local, pipeline, sagemaker  # noqa: E402
from nlp_pipeline.params import eks_params, local_params, pipeline_params, sagemaker_params  # noqa: E402
from nlp_pipeline.platform import Platform  # noqa: E402

PACKAGE = REPO / "plugins" / "nlp_pipeline"
PLATFORMS = {"local": local, "sagemaker": sagemaker, "eks": eks}
PLATFORM_PARAMS = {"local": local_params, "sagemaker": sagemaker_params, "eks": eks_params}
# Each platform's modules; every other module of the package is shared and imports none of them.
PLATFORM_MODULES = {
    "local": {"nlp_pipeline.local", "nlp_pipeline.operators.local", "nlp_pipeline.maintenance"},
    "sagemaker": {"nlp_pipeline.sagemaker", "nlp_pipeline.operators.sagemaker", "nlp_pipeline.specs.sagemaker"},
    "eks": {
        "nlp_pipeline.eks",
        "nlp_pipeline.operators.kubernetes",
        "nlp_pipeline.specs.kubernetes",
        "nlp_pipeline.hooks.kubernetes",
    },
}
FINGERPRINT = "sha256:" + "ab" * 32


def module_name(path) -> str:
    parts = path.relative_to(REPO / "plugins").with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path) -> set[str]:
    """The nlp_pipeline modules ``path`` imports."""
    return {name for name in imported_modules(path) if name.startswith("nlp_pipeline.")}


def platform_of(module: str) -> str | None:
    return next((platform for platform, modules in PLATFORM_MODULES.items() if module in modules), None)


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_platform_imports_another_and_shared_modules_import_none(path):
    own = platform_of(module_name(path))
    for name in imported(path):
        other = platform_of(name)
        assert other is None or other == own, f"{module_name(path)} ({own or 'shared'}) imports {name} ({other})"


def test_every_platform_module_is_in_the_package():
    modules = {module_name(path) for path in MODULES}
    assert set().union(*PLATFORM_MODULES.values()) <= modules


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_only_commands_py_spells_a_steps_flag(path):
    """A flag written anywhere but commands.py is a second definition of the step contract."""
    if path.name == "commands.py":
        return
    flags = [
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("--")
    ]
    assert flags == [], f"{path.name} spells flags itself: {flags}"


def step_parameters(function) -> list[str]:
    function = getattr(function, "function", function)  # an @task's own function
    return [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if name not in ("self", "context") and parameter.kind is not parameter.VAR_KEYWORD
    ]


@pytest.mark.parametrize("name", PLATFORMS)
def test_each_platform_provides_what_the_pipeline_takes(name):
    platform = PLATFORMS[name]
    members = [member for member in vars(Platform) if not member.startswith("_")] + ["ROLLOUT_START"]
    for member in members:
        assert hasattr(platform, member), f"{name} lacks {member}"
        if callable(getattr(Platform, member, None)):
            assert step_parameters(getattr(platform, member)) == step_parameters(getattr(Platform, member)), member
    assert isinstance(platform.ROLLOUT_START, str)


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_gate_and_the_rollout_choice_are_the_shared_tasks(name):
    dag = pipeline.build_pipeline(name, PLATFORMS[name], params=PLATFORM_PARAMS[name](), doc_md=name, tags=[])
    assert dag.get_task("gate").python_callable is pipeline.gate.function
    assert dag.get_task("choose_rollout").python_callable is pipeline.choose_rollout.function


# ---- the decisions, once --------------------------------------------------------------------------------------------
def defaults(**params) -> dict:
    return {name: param.value for name, param in pipeline_params().items()} | params


def production(**params) -> dict:
    return {
        "model": "s3://b/model",
        "data_fingerprint": FINGERPRINT,
        "config": decisions.training_config(defaults(**params)),
    }


def test_training_is_skipped_only_for_the_same_data_and_the_same_configuration():
    with pytest.raises(AirflowSkipException, match=r"cached: the production model s3://b/model .* same data"):
        decisions.skip_training_if_cached(production(), FINGERPRINT, defaults())
    decisions.skip_training_if_cached(production(), "sha256:other", defaults())
    decisions.skip_training_if_cached(production(), FINGERPRINT, defaults(epochs=4))
    decisions.skip_training_if_cached(production() | {"config": None}, FINGERPRINT, defaults())
    decisions.skip_training_if_cached(None, FINGERPRINT, defaults())


CHOSEN = {"learning_rate": 2e-4, "epochs": 4, "batch_size": 16, "warmup_ratio": 0.05, "weight_decay": 0.03}


def test_a_tuned_run_trains_with_the_chosen_setting_and_caches_by_it():
    tuned = {"setting": CHOSEN, "best": {"name": "trial-001"}, "trials": 4, "tuning": "s3://b/tune/tuning.json"}
    assert decisions.tuned_params(defaults(), None) == defaults(), "tuning off: the run's Params"
    params = decisions.tuned_params(defaults(tuning_trials=4), tuned)
    assert {name: params[name] for name in CHOSEN} == CHOSEN and params["tuning_trials"] == 4
    config = decisions.training_config(params)
    assert {name: config[name] for name in CHOSEN} == CHOSEN, "the registry and the cache keep the chosen setting"
    assert "tuning_trials" not in config, "the setting decides the model, not how it was found"
    same = production() | {"config": config}
    with pytest.raises(AirflowSkipException, match="cached"):
        decisions.skip_training_if_cached(same, FINGERPRINT, params)
    decisions.skip_training_if_cached(production(), FINGERPRINT, params)  # production was trained untuned
    other = decisions.tuned_params(defaults(), tuned | {"setting": CHOSEN | {"learning_rate": 1e-4}})
    decisions.skip_training_if_cached(same, FINGERPRINT, other)  # another setting: trains
    with pytest.raises(ValueError, match="names \\['dropout'\\], which no Param sets as a flag of train"):
        decisions.tuned_params(defaults(), tuned | {"setting": {"dropout": 0.1}})


def test_quantisation_off_makes_the_trained_fp32_model_the_candidate():
    trained = {"model": "s3://b/model.tar.gz"}
    assert decisions.unquantized_candidate(defaults(), trained) is None
    candidate = decisions.unquantized_candidate(defaults(quantize=False), trained)
    assert candidate == {"model": trained["model"], "chosen_precision": "fp32", "reason": "quantisation off"} | {
        "speedup_b32": None
    }


def test_the_gate_follows_the_evaluations_decision():
    assert decisions.gate({"decision": "promote"}) == "register"
    assert decisions.gate({"decision": "reject"}) == "reject"


@pytest.mark.parametrize(
    ("run_type", "params", "target"),
    [
        ("backfill", {}, None),
        ("scheduled", {"deploy": False}, None),
        ("manual", {"require_approval": True}, "approve"),
        ("manual", {}, "deploy"),
        ("asset_triggered", {}, "deploy"),
    ],
)
def test_a_backfill_never_deploys_and_approval_comes_first(run_type, params, target):
    assert decisions.rollout(defaults(**params), run_type, "deploy")[0] == target


def test_compression_runs_where_the_endpoint_serves_unless_a_param_moves_it():
    """quantize keeps the precision it measured fastest on its own CPU: it measures on the endpoint's hardware,
    and its --target-hardware says what the decision stands for, naming an override and its Param."""
    assert decisions.compression_hardware("c6i", None, str.upper, "p") == ("c6i", "C6I (the endpoint's)")
    assert decisions.compression_hardware("c6i", "c6i", str.upper, "p") == ("c6i", "C6I (the endpoint's)")
    assert decisions.compression_hardware("c6i", "c7i", str.upper, "p") == (
        "c7i",
        "C6I (the endpoint's); measured on C7I (p)",
    )


# ---- ... applied by every platform -----------------------------------------------------------------------------------
def context(dag_id: str, task_id: str, params: dict, xcom: dict) -> dict:
    return task_context(
        dag_id, task_id, params, logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"), run_id="r", xcom=xcom
    )


XCOM = {
    ("stage_dataset", "return_value"): {"data": "/s", "uri": "s3://b/staged", "fingerprint": FINGERPRINT},
    ("train", "return_value"): {"model": "s3://b/model/model.tar.gz", "uri": "s3://b/model"},
}


def platform_context(name: str, monkeypatch, tmp_path, task_id: str = "train", **params) -> dict:
    """A task context of ``name`` whose production model was trained on this data with ``defaults()``."""
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://b/artefacts")
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/nlp")
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", "nlp-tasks:test")
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE", "nlp-tasks:test-sagemaker")
    if name == "local":
        monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
        monkeypatch.setattr(local, "run_step_json", lambda *command: production())
    else:
        monkeypatch.setattr(PLATFORMS[name], "production_model", lambda context=None: production())
    values = {n: p.value for n, p in (pipeline_params() | PLATFORM_PARAMS[name]()).items()} | params
    return context(f"nlp_{name}", task_id, values, XCOM)


def train_request(name: str, context: dict):
    if name == "local":
        return local.train.function(XCOM[("stage_dataset", "return_value")], None, **context)
    if name == "sagemaker":
        return sagemaker._train_config(context, "nlp-train-x")
    return eks._train_arguments(context)


@pytest.mark.parametrize("name", PLATFORMS)
def test_every_platform_skips_training_when_production_was_trained_on_the_same_data_and_config(
    name, monkeypatch, tmp_path
):
    with pytest.raises(AirflowSkipException, match="cached: the production model"):
        train_request(name, platform_context(name, monkeypatch, tmp_path))


@pytest.mark.parametrize("name", ["sagemaker", "eks"])
def test_every_platform_trains_when_the_configuration_differs(name, monkeypatch, tmp_path):
    assert train_request(name, platform_context(name, monkeypatch, tmp_path, epochs=4))


@pytest.mark.parametrize("name", PLATFORMS)
def test_every_platform_makes_the_trained_model_the_candidate_when_quantisation_is_off(name, monkeypatch, tmp_path):
    task_context_ = platform_context(name, monkeypatch, tmp_path, "quantize", quantize=False)
    trained = XCOM[("train", "return_value")]
    if name == "local":
        result = local.quantize.function(XCOM[("stage_dataset", "return_value")], trained, **task_context_)
    else:
        dag = pipeline.build_pipeline(name, PLATFORMS[name], params=PLATFORM_PARAMS[name](), doc_md=name, tags=[])
        result = dag.get_task("quantize").execute(task_context_)
        if name == "eks":  # its pods hand results back themselves (no execute return value is pushed)
            assert task_context_["ti"].xcom_pull(task_ids="quantize") == result
    assert {key: result[key] for key in ("model", "chosen_precision", "reason")} == {
        "model": trained["model"],
        "chosen_precision": "fp32",
        "reason": decisions.QUANTISATION_OFF,
    }


def test_sagemaker_notes_what_its_model_was_trained_from_and_reads_it_back(monkeypatch, tmp_path):
    task_context_ = platform_context("sagemaker", monkeypatch, tmp_path)
    digest = "sha256:" + "ab" * 32
    task_context_["ti"].xcom[("evaluate", "return_value")] = {"model": "s3://b/quantized", "model_digest": digest}
    task_context_["params"]["capture_sample_rate"] = 0  # null would read the live endpoint's capture
    request = sagemaker._model_config(task_context_)
    environment = request["PrimaryContainer"]["Environment"]
    assert environment["NLP_MODEL_DIGEST"] == digest, "the endpoint's server verifies the bytes the gate judged"

    class Hook:
        def describe_endpoint(self, name):
            return {"EndpointConfigName": "c"}

        def describe_endpoint_config(self, name):
            return {"ProductionVariants": [{"ModelName": "nlp-model-x"}]}

        def describe_model(self, name):
            return {"PrimaryContainer": request["PrimaryContainer"]}

    served = sagemaker.endpoint_model(Hook(), "nlp-paraphrase")
    assert served == {
        "model": "s3://b/quantized/",
        "version": "nlp-model-x",
        "data_fingerprint": FINGERPRINT,
        "config": decisions.training_config(task_context_["params"]),
        "capture": {},
    }
    assert json.loads(environment["NLP_TRAINING_CONFIG"]) == served["config"]


def test_what_the_plugins_import_of_tasks_needs_only_the_standard_library():
    """The Airflow image has the tasks package without its dependencies (docker/airflow/Dockerfile)."""
    imports = sorted(
        {
            ast.unparse(node)
            for path in MODULES
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks")
        }
    )
    assert imports, "the plugins import the step contract from tasks"
    probe = "\n".join(
        ["import sys", "before = set(sys.modules)", *imports]
        + ["print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"]
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['tasks']", (imports, result.stdout)


def target_hardware(arguments: list[str]) -> str:
    return arguments[arguments.index("--target-hardware") + 1]


@pytest.mark.parametrize(
    ("override", "runs_on", "target"),
    [
        (None, "ml.c6i.xlarge", "SageMaker ml.c6i.xlarge (the endpoint's)"),
        ("ml.c6i.xlarge", "ml.c6i.xlarge", "SageMaker ml.c6i.xlarge (the endpoint's)"),
        (
            "ml.c7i.2xlarge",
            "ml.c7i.2xlarge",
            "SageMaker ml.c6i.xlarge (the endpoint's); measured on SageMaker ml.c7i.2xlarge (compression_instance_type)",
        ),
    ],
    ids=["default", "the-endpoints-type", "override"],
)
def test_sagemaker_quantizes_on_the_endpoints_instance_type_unless_compression_instance_type_moves_it(
    monkeypatch, tmp_path, override, runs_on, target
):
    task_context_ = platform_context("sagemaker", monkeypatch, tmp_path, "quantize", compression_instance_type=override)
    assert task_context_["params"]["processing_instance_type"] != task_context_["params"]["endpoint_instance_type"]
    request = sagemaker._quantize_config(task_context_, "nlp-quantize-x")
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == runs_on
    assert target_hardware(request["AppSpecification"]["ContainerArguments"]) == target
    stage = sagemaker._stage_config(task_context_, "nlp-stage-x")
    assert stage["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.c6i.2xlarge", "processing_instance_type"
    assert "--target-hardware" not in stage["AppSpecification"]["ContainerArguments"]


def node_features(pod_spec: dict) -> list[str]:
    """The Node Feature Discovery labels a pod spec requires (none: any node)."""
    node_affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity")  # the pod operator sends {} for none
    if not node_affinity:
        return []
    [term] = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return [expression["key"] for expression in term["matchExpressions"]]


VNNI, AMX = "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI", "feature.node.kubernetes.io/cpu-cpuid.AMXBF16"


@pytest.mark.parametrize(
    ("override", "quantize_on", "target"),
    [
        (None, [VNNI], f"nodes with {VNNI}=true (the endpoint's)"),
        (
            [AMX],
            [AMX],
            f"nodes with {VNNI}=true (the endpoint's); measured on nodes with {AMX}=true (compression_node_features)",
        ),
        ([], [], f"nodes with {VNNI}=true (the endpoint's); measured on any node (compression_node_features)"),
    ],
    ids=["default", "override", "any-node"],
)
def test_eks_quantizes_on_the_servers_nodes_unless_compression_node_features_moves_them(
    monkeypatch, tmp_path, override, quantize_on, target
):
    from kubernetes.client import ApiClient

    tolerations = [{"key": "intel", "operator": "Exists", "effect": "NoSchedule"}]
    monkeypatch.setenv("AIRFLOW_VAR_NLP_K8S_LIMITS", json.dumps({"toleration_keys": ["intel"]}))
    task_context_ = platform_context(
        "eks",
        monkeypatch,
        tmp_path,
        "quantize",
        node_features=[VNNI],
        tolerations=tolerations,
        compression_node_features=override,
    )
    dag = pipeline.build_pipeline("nlp_eks", eks, params=eks_params(), doc_md="nlp_eks", tags=[])

    def pod(task_id: str) -> dict:
        request = dag.get_task(task_id).build_pod_request_obj(task_context_, dry_run=True)
        return ApiClient().sanitize_for_serialization(request)["spec"]

    [_, deployment, *_] = eks._server_objects(task_context_, "s3://b/quantized", {})
    server = deployment["spec"]["template"]["spec"]
    quantize, stage = pod("quantize"), pod("stage_dataset")
    assert node_features(server) == node_features(stage) == [VNNI], "node_features places the server and the steps"
    assert node_features(quantize) == quantize_on
    assert quantize["tolerations"] == server["tolerations"] == tolerations
    assert target_hardware(quantize["containers"][0]["args"]) == target
    assert "--target-hardware" not in stage["containers"][0]["args"]


def test_local_quantize_measures_on_the_machine_its_endpoint_serves_on(monkeypatch, tmp_path):
    ran = []

    def run_step(*command):
        ran.append([str(part) for part in command])
        raise AirflowSkipException("recorded")  # stop the task once its command is known

    monkeypatch.setattr(local, "run_step", run_step)
    task_context_ = platform_context("local", monkeypatch, tmp_path, "quantize")
    with pytest.raises(AirflowSkipException, match="recorded"):
        local.quantize.function(
            XCOM[("stage_dataset", "return_value")], XCOM[("train", "return_value")], **task_context_
        )
    [command] = ran
    assert command[0] == "quantize" and target_hardware(command) == "this machine (the endpoint's)"
