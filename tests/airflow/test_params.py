"""The platforms' own Params offer what the platform can run: every SageMaker instance type the form admits is one
SageMaker accepts for processing, training and endpoints alike (the quantize job runs on the endpoint's type), and
the Params that move the quantize step elsewhere are optional, unset meaning "where the endpoint serves"."""

import re
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from airflow.sdk.exceptions import ParamValidationError  # noqa: E402
from nlp_pipeline.params import (  # noqa: E402
    CPU_PATTERN,
    INTEL_INSTANCE,
    MEMORY_PATTERN,
    NODE_FEATURE,
    eks_params,
    local_params,
    pipeline_params,
    sagemaker_params,
)

# The instance types of the requests nlp_sagemaker sends: CreateProcessingJob, CreateTrainingJob, CreateEndpointConfig.
INSTANCE_SHAPES = ("ProcessingInstanceType", "TrainingInstanceType", "ProductionVariantInstanceType")
INTEL_FAMILY = re.compile(r"ml\.[cmr][67]i\.\w+")  # c6i/m6i/r6i (Ice Lake), c7i/m7i/r7i (Sapphire Rapids)
VNNI, AMX = "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI", "feature.node.kubernetes.io/cpu-cpuid.AMXBF16"


def sagemaker_instance_types() -> dict[str, set[str]]:
    """What botocore's SageMaker service model (the one the amazon provider sends requests with) accepts, by shape."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return {shape: set(model.shape_for(shape).enum) for shape in INSTANCE_SHAPES}


def probes(known: set[str]) -> set[str]:
    """Every instance type SageMaker knows, and every size a careless pattern could admit in their families."""
    families = {name.split(".")[1] for name in known} | {
        f"{kind}{generation}i" for kind in "cmr" for generation in "678"
    }
    sizes = {"large", "medium", "metal", "xlarge"} | {f"{count}xlarge" for count in range(200)}
    return known | {f"ml.{family}.{size}" for family in families for size in sizes}


def admitted(pattern: str, names: set[str]) -> set[str]:
    return {name for name in names if re.search(pattern, name)}  # JSON schema's pattern: a search


def test_every_instance_type_the_sagemaker_params_admit_runs_processing_training_and_endpoints():
    offered = sagemaker_instance_types()
    allowed = admitted(INTEL_INSTANCE, probes(set().union(*offered.values())))
    for shape, names in offered.items():
        assert allowed <= names, f"INTEL_INSTANCE admits {sorted(allowed - names)}, which {shape} lacks"
    everywhere = {name for name in set.intersection(*offered.values()) if INTEL_FAMILY.fullmatch(name)}
    assert allowed == everywhere, f"INTEL_INSTANCE leaves out {sorted(everywhere - allowed)}"
    endpoint_only = {name for name in offered["ProductionVariantInstanceType"] if INTEL_FAMILY.fullmatch(name)}
    assert endpoint_only - allowed == {"ml.c6i.large"}, "no processing job runs on ml.c6i.large: it is left out"


def test_every_sagemaker_instance_param_takes_the_intel_instance_pattern():
    params = sagemaker_params()
    instance_params = [name for name in params if name.endswith("_instance_type")]
    assert instance_params == [
        "processing_instance_type",
        "training_instance_type",
        "endpoint_instance_type",
        "compression_instance_type",
    ]
    assert {params[name].schema["pattern"] for name in instance_params} == {INTEL_INSTANCE}


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
    ("value", "allowed"),
    [(None, True), ([], True), ([AMX], True), ([VNNI, AMX], True), (["AVX512 VNNI"], False), ("AMXBF16", False)],
)
def test_compression_node_features_is_unset_or_node_feature_labels(value, allowed):
    param = eks_params()["compression_node_features"]
    assert param.value is None and param.schema["type"] == ["null", "array"]
    assert param.schema["items"] == eks_params()["node_features"].schema["items"], "the same labels as node_features"
    assert param.schema["section"] == "Kubernetes" and "node_features" in param.description
    assert resolves(param, value) is allowed


# ---- every pattern matches whole values: no trailing newline --------------------------------------------------------
def all_params() -> dict:
    return pipeline_params() | local_params() | sagemaker_params() | eks_params()


def patterns() -> dict[str, str]:
    """Every ``pattern`` of every Param, by where it is: NAME or NAME[] for an array's items."""
    found = {}
    for name, param in all_params().items():
        if "pattern" in param.schema:
            found[name] = param.schema["pattern"]
        if "pattern" in (param.schema.get("items") or {}):
            found[f"{name}[]"] = param.schema["items"]["pattern"]
    return found


# A value each pattern admits; a Param with a pattern not listed here fails the test until it is added.
VALID = {
    INTEL_INSTANCE: "ml.c6i.xlarge",
    CPU_PATTERN: "500m",
    MEMORY_PATTERN: "4Gi",
    NODE_FEATURE: AMX,
    pipeline_params()["source"].schema["pattern"]: "hf://nyu-mll/glue/mrpc",
}


def test_every_pattern_is_probed():
    assert set(patterns().values()) == set(VALID), "add a valid value of a new pattern to VALID"


@pytest.mark.parametrize("where", sorted(patterns()))
@pytest.mark.parametrize("ending", ["\n", "\r\n", " ", "\n\n"])
def test_every_pattern_bearing_param_refuses_a_value_with_a_trailing_newline(where, ending):
    """Airflow validates with jsonschema, whose ``pattern`` is Python's re.search, where ``$`` also matches before a
    final newline: "ml.c6i.xlarge\\n" passed the form's patterns and reached SageMaker, Kubernetes or a path."""
    name, is_items = where.removesuffix("[]"), where.endswith("[]")
    param, valid = all_params()[name], VALID[patterns()[where]]
    wrap = (lambda value: [value]) if is_items else (lambda value: value)
    assert resolves(param, wrap(valid)), (where, valid)
    assert not resolves(param, wrap(valid + ending)), (where, valid + ending)


def test_the_form_reads_every_pattern_as_the_server_does():
    """The trigger form checks a pattern with ECMAScript's RegExp: the same values pass there, and no others."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("no node here to run ECMAScript regular expressions")
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
