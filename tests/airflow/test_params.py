"""The platforms' own Params offer what the platform can run: every SageMaker instance type the form offers is one
SageMaker accepts for each use it is put to (botocore's enums; the quantize job runs on the endpoint's type, so that
one is a processing type too), the Params that move the quantize step elsewhere are optional, unset meaning "where
the endpoint serves", and the blue/green rollout is one object the form checks as a whole."""

import re
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import ParamValidationError  # noqa: E402
from nlp_pipeline.params import (  # noqa: E402
    CPU_PATTERN,
    INSTANCE_USES,
    MAX_RUNTIME_HOURS,
    MEMORY_PATTERN,
    NODE_FEATURE,
    TOLERATION_KEY,
    TOLERATION_VALUE,
    eks_params,
    local_params,
    pipeline_params,
    sagemaker_params,
)
from nlp_pipeline.specs import kubernetes_limits, sagemaker_api  # noqa: E402

# The instance type shape of each use's request: CreateProcessingJob, CreateTrainingJob, CreateEndpointConfig.
INSTANCE_SHAPES = {
    "processing": "ProcessingInstanceType",
    "training": "TrainingInstanceType",
    "endpoint": "ProductionVariantInstanceType",
}
INTEL_FAMILY = re.compile(r"ml\.[cmr][67]i\.\w+")  # c6i/m6i/r6i (Ice Lake), c7i/m7i/r7i (Sapphire Rapids)
VNNI, AMX = "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI", "feature.node.kubernetes.io/cpu-cpuid.AMXBF16"


def sagemaker_instance_types() -> dict[str, set[str]]:
    """What botocore's SageMaker service model (the one the amazon provider sends requests with) accepts, by use."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return {use: set(model.shape_for(shape).enum) for use, shape in INSTANCE_SHAPES.items()}


def offered(param) -> set[str]:
    return {value for value in param.schema["enum"] if value is not None}


@pytest.mark.parametrize("name", sorted(INSTANCE_USES))
def test_every_instance_type_a_param_offers_is_one_sagemaker_takes_for_each_of_its_uses(name):
    accepted, uses = sagemaker_instance_types(), INSTANCE_USES[name]
    param = sagemaker_params()[name]
    for use in uses:
        assert offered(param) <= accepted[use], f"{name} offers {sorted(offered(param) - accepted[use])}, not {use}"
    everywhere = {
        value for value in set.intersection(*(accepted[use] for use in uses)) if INTEL_FAMILY.fullmatch(value)
    }
    assert offered(param) == everywhere, f"{name} leaves out {sorted(everywhere - offered(param))}"
    assert param.value is None or param.value in offered(param)


def test_each_instance_param_serves_its_uses():
    assert INSTANCE_USES == {
        "processing_instance_type": ("processing",),
        "training_instance_type": ("training",),
        "endpoint_instance_type": ("endpoint", "processing"),
        "compression_instance_type": ("endpoint", "processing"),
    }
    assert [name for name in sagemaker_params() if name.endswith("_instance_type")] == list(INSTANCE_USES)
    assert "ml.c7i.48xlarge" in offered(sagemaker_params()["training_instance_type"])
    assert "ml.c6i.large" not in offered(sagemaker_params()["endpoint_instance_type"]), "serves, but runs no job"


def resolves(param, value) -> bool:
    try:
        param.resolve(value)
    except ParamValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (None, True),
        ("ml.c7i.2xlarge", True),
        ("ml.c6i.xlarge", True),
        ("ml.c6i.large", False),  # an endpoint-only type: a processing job cannot run on it
        ("ml.c6i.48xlarge", False),  # no such size
        ("ml.c7i.large", True),
        ("ml.c7i.large\n", False),
        ("ml.g5.xlarge", False),  # not an Intel Xeon
        ("", False),
    ],
)
def test_compression_instance_type_is_unset_or_an_intel_instance(value, allowed):
    param = sagemaker_params()["compression_instance_type"]
    assert param.value is None and param.schema["type"] == ["null", "string"]
    assert param.schema["section"] == "SageMaker" and "endpoint's instance type" in param.description
    assert resolves(param, value) is allowed


@pytest.mark.parametrize("name", ["endpoint_instance_type", "processing_instance_type", "training_instance_type"])
def test_the_other_instance_params_are_required_and_refuse_an_endpoint_only_type(name):
    param = sagemaker_params()[name]
    assert param.schema["type"] == "string" and resolves(param, param.value)
    assert not resolves(param, None) and not resolves(param, "ml.c6i.large")


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("training_instance_type", "ml.c6i.large", False),  # an endpoint-only type
        ("training_instance_type", "ml.m6i.large", True),
        ("processing_instance_type", "ml.c7i.48xlarge", True),
        ("processing_instance_type", "ml.c6i.48xlarge", False),  # c6i stops at 32xlarge
        ("endpoint_instance_type", "ml.r7i.large", True),
    ],
)
def test_each_instance_param_refuses_what_its_use_refuses(name, value, allowed):
    assert resolves(sagemaker_params()[name], value) is allowed


def test_the_longest_training_is_one_constant():
    assert sagemaker_params()["max_runtime_hours"].schema["maximum"] == MAX_RUNTIME_HOURS


# ---- blue/green -----------------------------------------------------------------------------------------------------
def test_blue_green_is_one_object_param_with_the_builders_schema():
    param = sagemaker_params()["blue_green"]
    schema = {key: value for key, value in param.schema.items() if key not in ("title", "description", "section")}
    assert schema == sagemaker_api.BLUE_GREEN_SCHEMA and param.value == sagemaker_api.BLUE_GREEN_DEFAULT
    assert resolves(param, param.value)
    assert "alarms" in param.description and "auto-rollback needs alarms" in param.description.lower()
    assert not {"traffic_shifting", "traffic_step_percent", "baking_minutes", "rollback_alarms"} & set(
        sagemaker_params()
    )


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ({"traffic": "canary", "step_percent": 10, "baking_minutes": 10, "alarms": ["nlp-5xx"]}, True),
        ({"traffic": "canary", "step_percent": 60, "baking_minutes": 10, "alarms": ["nlp-5xx"]}, False),
        ({"traffic": "linear", "step_percent": 5, "baking_minutes": 10, "alarms": ["nlp-5xx"]}, False),
        ({"traffic": "linear", "step_percent": 10, "baking_minutes": 60, "alarms": ["nlp-5xx"]}, False),
        ({"traffic": "canary", "step_percent": 10, "baking_minutes": 10, "alarms": []}, False),
        ({"traffic": "all_at_once", "step_percent": 10, "baking_minutes": 5, "alarms": []}, False),
        (
            {"traffic": "all_at_once", "step_percent": 10, "baking_minutes": 0, "alarms": [f"a{i}" for i in range(11)]},
            False,
        ),
        ({"traffic": "all_at_once"}, False),
    ],
)
def test_blue_green_refuses_what_sagemaker_refuses_at_trigger_time(value, allowed):
    assert resolves(sagemaker_params()["blue_green"], value) is allowed


@pytest.mark.parametrize(
    ("value", "allowed"),
    [(None, True), ([], True), ([AMX], True), ([VNNI, AMX], True), (["AVX512 VNNI"], False), ("AMXBF16", False)],
)
def test_compression_node_features_is_unset_or_node_feature_labels(value, allowed):
    param = eks_params()["compression_node_features"]
    assert param.value is None and param.schema["type"] == ["null", "array"]
    assert param.schema["items"] == eks_params()["node_features"].schema["items"], "the same labels as node_features"
    assert param.schema["section"] == "Kubernetes" and "node_features" in param.description
    assert resolves(param, value) is allowed


# ---- what a run may ask of the cluster (specs/kubernetes_limits.py) ------------------------------------------------
@pytest.mark.parametrize(
    ("toleration", "allowed"),
    [
        ({"key": "intel", "operator": "Exists", "effect": "NoSchedule"}, True),
        ({"key": "example.com/dedicated", "operator": "Equal", "value": "nlp", "effect": "NoExecute"}, True),
        ({"key": "intel", "value": ""}, True),
        ({"key": "intel"}, True),
        ({"key": "", "operator": "Exists"}, False),  # an empty key with Exists tolerates every taint
        ({"key": ""}, False),
        ({"operator": "Exists"}, False),
        ({"key": "intel", "operator": "Exists", "value": "true"}, False),  # Exists matches any value
        ({"key": "intel", "operator": "Exists", "value": ""}, False),
        ({"key": "intel node"}, False),
        ({"key": "-intel"}, False),
        ({"key": "Example.com/dedicated"}, False),  # the prefix is a DNS subdomain: lower case
        ({"key": "a" * 64}, False),  # a name is at most 63 characters
        ({"key": "intel", "value": "has space"}, False),
        ({"key": "intel", "operator": "In"}, False),
        ({"key": "intel", "tolerationSeconds": 60}, False),
    ],
)
def test_a_toleration_names_a_key_and_exists_takes_no_value(toleration, allowed):
    assert resolves(eks_params()["tolerations"], [toleration]) is allowed


@pytest.mark.parametrize(
    ("names", "pattern"),
    [(kubernetes_limits.CPU_PARAMS, CPU_PATTERN), (kubernetes_limits.MEMORY_PARAMS, MEMORY_PATTERN)],
)
def test_the_limits_check_exactly_the_quantity_params(names, pattern):
    """A new CPU or memory Param joins the Variable's check (kubernetes_limits) by its pattern, or this fails."""
    assert {name for name, param in eks_params().items() if param.schema.get("pattern") == pattern} == set(names)


def test_the_limits_check_exactly_the_placement_params():
    node_labels = {
        name for name, param in eks_params().items() if (param.schema.get("items") or {}).get("pattern") == NODE_FEATURE
    }
    tolerations = {name for name, param in eks_params().items() if "tolerations" in name}
    assert node_labels == set(kubernetes_limits.NODE_LABEL_PARAMS) and tolerations == set(
        kubernetes_limits.TOLERATION_PARAMS
    )


@pytest.mark.parametrize(
    "name",
    [
        *kubernetes_limits.CPU_PARAMS,
        *kubernetes_limits.MEMORY_PARAMS,
        *kubernetes_limits.NODE_LABEL_PARAMS,
        *kubernetes_limits.TOLERATION_PARAMS,
    ],
)
def test_each_checked_param_says_the_variable_is_checked_when_the_run_starts(name):
    description = eks_params()[name].description
    assert f"fails the run before its first pod (Variable {kubernetes_limits.VARIABLE}" in description, description


@pytest.mark.parametrize(("name", "most"), [("step_cpu", "at most 64;"), ("server_memory", "at most 512Gi;")])
def test_a_quantity_param_says_its_static_bound(name, most):
    assert most in eks_params()[name].description


# ---- every pattern matches whole values: no trailing newline --------------------------------------------------------
def all_params() -> dict:
    return pipeline_params() | local_params() | sagemaker_params() | eks_params()


def patterns() -> dict[str, str]:
    """Every ``pattern`` of every Param, by where it is: NAME, NAME[] for an array's items, NAME[].FIELD for a field
    of an array's objects."""
    found = {}
    for name, param in all_params().items():
        items = param.schema.get("items") or {}
        if "pattern" in param.schema:
            found[name] = param.schema["pattern"]
        if "pattern" in items:
            found[f"{name}[]"] = items["pattern"]
        for field, schema in (items.get("properties") or {}).items():
            if "pattern" in schema:
                found[f"{name}[].{field}"] = schema["pattern"]
    return found


# An object each array-of-objects Param admits, into which a probed field's value goes.
ITEM_BASE = {"tolerations": {"key": "intel"}}


def wrapped(where: str, value: str):
    """``value`` where ``where`` (patterns()) puts it in its Param."""
    name, items, field = where.partition("[]")
    if not items:
        return value
    return [ITEM_BASE[name] | {field.removeprefix("."): value}] if field else [value]


# A value each pattern admits; a Param with a pattern not listed here fails the test until it is added.
VALID = {
    CPU_PATTERN: "500m",
    MEMORY_PATTERN: "4Gi",
    NODE_FEATURE: AMX,
    TOLERATION_KEY: "example.com/dedicated",
    TOLERATION_VALUE: "nlp",
    pipeline_params()["source"].schema["pattern"]: "hf://nyu-mll/glue/mrpc",
}


def test_every_pattern_is_probed():
    assert set(patterns().values()) == set(VALID), "add a valid value of a new pattern to VALID"


@pytest.mark.parametrize("where", sorted(patterns()))
@pytest.mark.parametrize("ending", ["\n", "\r\n", " ", "\n\n"])
def test_every_pattern_bearing_param_refuses_a_value_with_a_trailing_newline(where, ending):
    """Airflow validates with jsonschema, whose ``pattern`` is Python's re.search, where ``$`` also matches before a
    final newline: "ml.c6i.xlarge\\n" passed the form's patterns and reached SageMaker, Kubernetes or a path."""
    param, valid = all_params()[where.partition("[]")[0]], VALID[patterns()[where]]
    assert resolves(param, wrapped(where, valid)), (where, valid)
    assert not resolves(param, wrapped(where, valid + ending)), (where, valid + ending)


def test_the_form_reads_every_pattern_as_the_server_does():
    """The trigger form checks a pattern with ECMAScript's RegExp: the same values pass there, and no others."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    assert node is not None, "node runs the patterns as ECMAScript; `make test` installs it (Makefile: nodejs)"
    probes = [[pattern, value + ending] for pattern, value in VALID.items() for ending in ("", "\n", "\r\n")]
    script = (
        "const probes = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify(probes.map(([p, v]) => [new RegExp(p).test(v), new RegExp(p, 'u').test(v)])));"
    )
    answers = json.loads(
        subprocess.run([node, "-e", script, json.dumps(probes)], capture_output=True, check=True).stdout
    )
    python = [bool(re.search(pattern, value)) for pattern, value in probes]
    assert [plain for plain, _ in answers] == [unicode for _, unicode in answers] == python
    assert python == [ending == "" for _ in VALID for ending in ("", "\n", "\r\n")]


# ---- tuning: the form's Tuning section, checked when a run is triggered --------------------------------------------
TUNING_PARAMS = (
    "tuning_trials",
    "learning_rate_range",
    "epochs_range",
    "batch_sizes",
    "warmup_ratio_range",
    "weight_decay_range",
    "tuning_max_steps",
)


def test_tuning_is_off_by_default_and_its_params_say_what_they_do():
    from tasks.config import MAX_TUNING_TRIALS

    params = pipeline_params()
    assert [name for name, param in params.items() if param.schema["section"] == "Tuning"] == list(TUNING_PARAMS)
    trials = params["tuning_trials"]
    assert (trials.value, trials.schema["minimum"], trials.schema["maximum"]) == (0, 0, MAX_TUNING_TRIALS)
    assert "0: no tuning" in trials.description and "the best one's learning rate" in trials.description
    for name in ("learning_rate_range", "epochs_range", "warmup_ratio_range", "weight_decay_range"):
        param = params[name]
        assert param.schema["type"] == "array" and param.schema["minItems"] == param.schema["maxItems"] == 2
        assert "LO above HI fails the run at its start" in param.description, name
    assert "log scale" in params["learning_rate_range"].description
    assert params["weight_decay"].schema["section"] == "Training"


def test_by_model_size_params_are_optional_numbers():
    """Unset (None), train picks the learning rate and epochs by the base model's size; the form offers an empty
    number field that still refuses what the flag refuses."""
    params = pipeline_params()
    for name, kind in (("learning_rate", "number"), ("epochs", "integer")):
        param = params[name]
        assert param.value is None and param.schema["type"] == ["null", kind], name
        assert "by the base model's size" in param.description
        assert resolves(param, None) and not resolves(param, 0) and not resolves(param, "many")


def triggered(conf: dict):
    """What Airflow does with a trigger's conf (the REST API, the form, `airflow dags trigger -c`): the serialized
    DAG's Params, deep-merged with the conf and validated (SerializedDAG.create_dagrun)."""
    import json

    from airflow.serialization.serialized_objects import DagSerialization
    from nlp_pipeline import local, pipeline

    dag = pipeline.build_pipeline("nlp_local", local, params=local_params(), doc_md="nlp_local", tags=[])
    served = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
    return served.params.deep_merge(conf).validate()


@pytest.mark.parametrize(
    ("conf", "field"),
    [
        ({"learning_rate_range": [-1e-5, 3e-4]}, "learning_rate_range"),  # a negative learning rate
        ({"learning_rate_range": [0, 3e-4]}, "learning_rate_range"),
        ({"learning_rate": -0.001}, "learning_rate"),
        ({"tuning_trials": 33}, "tuning_trials"),  # more trials than MAX_TUNING_TRIALS
        ({"batch_sizes": [16, 0]}, "batch_sizes"),
        ({"epochs_range": [2]}, "epochs_range"),
    ],
)
def test_bad_tuning_params_are_refused_when_the_run_is_triggered(conf, field):
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}"):
        triggered(conf)


def test_a_tuned_run_and_a_by_model_size_run_are_accepted_when_triggered():
    tuned = triggered({"tuning_trials": 32, "learning_rate_range": [1e-5, 1e-4], "batch_sizes": [8, 16, 32]})
    assert tuned["tuning_trials"] == 32 and tuned["epochs"] is None and tuned["learning_rate"] is None
    assert triggered({"epochs": 2, "learning_rate": 2e-4})["epochs"] == 2


def test_the_tuning_form_points_each_platforms_users_to_their_doc():
    """The Tuning section is every platform's: its note names each platform's doc section, not only local's."""
    description = pipeline_params()["tuning_trials"].description
    for doc in ("local", "sagemaker", "eks"):
        assert f"docs/{doc}.md" in description, doc
        assert "\n## Hyperparameter tuning\n" in (REPO / "docs" / f"{doc}.md").read_text(), doc
