"""The SageMaker requests nlp_sagemaker builds, checked against botocore's SageMaker service model and AWS's docs.

Plain functions, no AWS: every request is validated against the shapes botocore sends it with (required members,
enums, lengths, ranges, patterns), and the blue/green rules against a checker written from the AWS docs, apart from
the builder, so the trigger form's schema, the builder and SageMaker cannot drift apart.
"""

import itertools
import logging
import math
import re
import sys
import uuid

import pytest
import regex

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline.specs import sagemaker as specs  # noqa: E402

ROLE = "arn:aws:iam::123456789012:role/nlp"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/nlp-task:1-sagemaker"
SETTINGS = specs.Settings(ROLE, IMAGE, "s3://b/artefacts", "nlp-paraphrase", "nlp-paraphrase")
RUN_KEY = "20260401T000000Z"  # tasks.runtime.layout.RUN_KEY_FORMAT: always 16 characters
DIGEST = "sha256:" + "0123456789abcdef" * 4
PACKAGE_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/nlp-paraphrase/1"
NETWORK = specs.Network(("subnet-0123456789abcdef0",), ("sg-0123456789abcdef0",), isolation=True)


# ---- botocore's service model -----------------------------------------------------------------------------------
def service_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def problems(value, shape, where: str) -> list[str]:
    """What SageMaker's service model refuses in ``value`` for ``shape``: required and unknown members, enums,
    lengths, ranges and patterns (botocore's own validator checks types and minimums only). The patterns are Java's, which ``regex`` reads."""
    found = []
    if shape.type_name == "structure":
        found += [f"{where}.{name}: required" for name in shape.required_members if name not in value]
        for name, member in value.items():
            if name not in shape.members:
                found.append(f"{where}.{name}: unknown member")
            else:
                found += problems(member, shape.members[name], f"{where}.{name}")
        return found
    if shape.type_name == "list":
        for index, item in enumerate(value):
            found += problems(item, shape.member, f"{where}[{index}]")
    elif shape.type_name == "map":
        for key, item in value.items():
            found += problems(key, shape.key, f"{where} key") + problems(item, shape.value, f"{where}[{key}]")
    limits = shape.metadata
    size = len(value) if shape.type_name in ("string", "list", "map") else value
    if shape.type_name == "boolean":
        return found + ([] if isinstance(value, bool) else [f"{where}: not a boolean"])
    if "min" in limits and size < limits["min"]:
        found.append(f"{where}: {size} < min {limits['min']}")
    if "max" in limits and size > limits["max"]:
        found.append(f"{where}: {size} > max {limits['max']}")
    if getattr(shape, "enum", None) and value not in shape.enum:
        found.append(f"{where}: {value!r} not in the enum")
    if "pattern" in limits and not regex.fullmatch(limits["pattern"], value):  # Java syntax, e.g. \p{L}
        found.append(f"{where}: {value!r} does not match {limits['pattern']}")
    return found


def refused(operation: str, request: dict) -> list[str]:
    return problems(request, service_model().operation_model(operation).input_shape, operation)


def test_the_request_checker_can_fail():
    found = refused("CreateModel", {"ModelName": "bad name", "EnableNetworkIsolation": "yes", "Extra": 1})
    assert [problem.split(":")[0] for problem in found] == [
        "CreateModel.ModelName",
        "CreateModel.EnableNetworkIsolation",
        "CreateModel.Extra",
    ], found


def processing(**overrides):
    arguments = {
        "arguments": ["evaluate", "--model", "/opt/ml/processing/input/model"],
        "inputs": {"model": "s3://b/models/bert-v1.0/", "data": "s3://b/staged/train.tsv"},
        "output": "s3://b/out/",
        "instance_type": "ml.c6i.2xlarge",
        "max_runtime_seconds": 3600,
    }
    return specs.processing_job("nlp-evaluate-x-t1", SETTINGS, **(arguments | overrides))


def training(**overrides):
    arguments = {
        "staged": "s3://b/staged/job",
        "base_model": "s3://b/models/bert-v1.0/",
        "hyperparameters": {"epochs": 3, "learning_rate": 3e-5},
        "output": "s3://b/model",
        "checkpoints": "s3://b/ckpt",
        "tensorboard": "s3://b/run/tensorboard",
        "instance_type": "ml.c7i.4xlarge",
        "instance_count": 2,
        "max_runtime_seconds": 3600,
        "spot": True,
        "max_wait_seconds": 7200,
    }
    return specs.training_job("nlp-train-x-t1", SETTINGS, **(arguments | overrides))


def package():
    evaluation = {"model": "s3://b/m/", "evaluation": "s3://b/e.json", "accuracy": 0.9, "f1": 0.91}
    request = specs.model_package(
        SETTINGS, evaluation | {"decision": "promote"}, {"run_id": "r"}, client_token=specs.client_token("a", "b")
    )
    return {"ModelPackageGroupName": "nlp-paraphrase", "ModelApprovalStatus": "Approved"} | request


@pytest.mark.parametrize("network", [None, NETWORK], ids=["open", "vpc"])
def test_every_request_is_one_sagemaker_accepts(network):
    model = specs.model("nlp-model-x", SETTINGS, "s3://b/m/", {"NLP_MODEL_DIGEST": DIGEST}, network=network)
    requests = {
        "CreateProcessingJob": processing(network=network),
        "CreateTrainingJob": training(network=network),
        "CreateModel": model,
        "CreateEndpointConfig": specs.endpoint_config(
            "nlp-config-x", "nlp-model-x", instance_type="ml.c6i.xlarge", instance_count=2
        ),
        "UpdateEndpoint": {"EndpointName": "e", "EndpointConfigName": "c"}
        | {"DeploymentConfig": specs.deployment_config(specs.BLUE_GREEN_DEFAULT)},
        "CreateModelPackage": package(),
        "UpdateModelPackage": {"ModelPackageArn": PACKAGE_ARN, "ModelLifeCycle": specs.life_cycle("production")},
    }
    assert {operation: refused(operation, request) for operation, request in requests.items()} == dict.fromkeys(
        requests, []
    )


# ---- instance types per use ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("use", "shape"),
    [
        ("processing", "ProcessingInstanceType"),
        ("training", "TrainingInstanceType"),
        ("endpoint", "ProductionVariantInstanceType"),
    ],
)
def test_instance_types_per_use_are_botocores(use, shape):
    assert specs.instance_types(use) == frozenset(service_model().shape_for(shape).enum)
    assert specs.instance_types(use) is specs.instance_types(use), "read once"


def test_instance_types_of_an_unknown_use_name_the_uses():
    with pytest.raises(ValueError, match="'inference'.*processing, training, endpoint"):
        specs.instance_types("inference")


def test_ml_c6i_large_serves_but_runs_no_job():
    assert "ml.c6i.large" in specs.instance_types("endpoint")
    assert "ml.c6i.large" not in specs.instance_types("training") | specs.instance_types("processing")


# ---- S3 inputs: a prefix ends with / ------------------------------------------------------------------------------
def test_a_processing_input_ending_with_a_slash_is_a_prefix_and_one_without_is_one_object():
    inputs = {item["InputName"]: item["S3Input"]["S3Uri"] for item in processing()["ProcessingInputs"]}
    assert inputs == {"model": "s3://b/models/bert-v1.0/", "data": "s3://b/staged/train.tsv"}
    folder = processing(inputs={"model": "s3://b/models/bert-v1.0/", "old": "s3://b/models/bert"})
    assert [item["S3Input"]["S3Uri"] for item in folder["ProcessingInputs"]] == [
        "s3://b/models/bert-v1.0/",
        "s3://b/models/bert",
    ], "the caller decides: no slash is added or removed"


# ---- names ------------------------------------------------------------------------------------------------------
def test_names_with_a_digest_end_with_its_first_8_hex_and_stay_valid():
    for kind in ("model", "config", "quantize", "evaluate"):
        name = specs.resource_name(kind, RUN_KEY, "manual__2026-04-01T00:00:00+00:00", 99, digest=DIGEST)
        assert name.endswith("-t99-01234567") and len(name) <= 63
        assert not refused("CreateModel", {"ModelName": name, "ExecutionRoleArn": ROLE})
    plain = specs.resource_name("model", RUN_KEY, "run")
    assert specs.resource_name("model", RUN_KEY, "run", digest="fedcba9876543210") == f"{plain}-fedcba98"
    assert specs.resource_name("model", RUN_KEY, "run", digest=DIGEST) != specs.resource_name(
        "model", RUN_KEY, "run", digest="sha256:" + "f" * 64
    ), "another model, another name"


@pytest.mark.parametrize("digest", ["sha256:xyz", "", "sha256:0123"])
def test_a_digest_that_is_not_hex_is_refused(digest):
    with pytest.raises(ValueError, match="digest"):
        specs.resource_name("model", RUN_KEY, "run", digest=digest)


# ---- model registry -----------------------------------------------------------------------------------------------
def test_model_lifecycle_stages_are_studios():
    assert specs.life_cycle("production") == {"Stage": "Production", "StageStatus": "Approved"}
    assert specs.life_cycle("archived") == {"Stage": "Archived", "StageStatus": "Retired"}
    with pytest.raises(ValueError, match="'staging'.*production, archived"):
        specs.life_cycle("staging")


def test_client_tokens_are_deterministic_valid_and_distinct():
    token = specs.client_token("nlp_sagemaker", "manual__2026-04-01", "register")
    assert token == specs.client_token("nlp_sagemaker", "manual__2026-04-01", "register")
    assert token != specs.client_token("nlp_sagemaker", "manual__2026-04-02", "register")
    assert token != specs.client_token("nlp_sagemaker", "manual__2026-04-0", "1register"), "parts stay apart"
    assert uuid.UUID(token) and re.fullmatch(r"[a-zA-Z0-9-]{1,36}", token)
    assert package()["ClientToken"] == specs.client_token("a", "b")


# ---- network ------------------------------------------------------------------------------------------------------
def test_the_network_variable_becomes_each_requests_vpc_and_isolation():
    network = specs.Network.from_variable(
        {"Subnets": ["subnet-0123456789abcdef0"], "SecurityGroupIds": ["sg-0123456789abcdef0"]}
        | {"EnableNetworkIsolation": True}
    )
    assert network == NETWORK
    vpc = {"Subnets": ["subnet-0123456789abcdef0"], "SecurityGroupIds": ["sg-0123456789abcdef0"]}
    assert processing(network=network)["NetworkConfig"] == {"VpcConfig": vpc, "EnableNetworkIsolation": True}
    job = training(network=network)
    assert job["VpcConfig"] == vpc and job["EnableNetworkIsolation"] is True
    model = specs.model("m", SETTINGS, "s3://b/m/", network=network)
    assert model["VpcConfig"] == vpc and model["EnableNetworkIsolation"] is True
    assert specs.Network.from_variable('{"Subnets": ["subnet-1a"], "SecurityGroupIds": ["sg-1a"]}').isolation is False
    for request in (processing(), training(), specs.model("m", SETTINGS, "s3://b/m/")):
        assert not {"NetworkConfig", "VpcConfig", "EnableNetworkIsolation"} & set(request)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"SecurityGroupIds": ["sg-1"]}, "Subnets"),
        ({"Subnets": [], "SecurityGroupIds": ["sg-1"]}, "Subnets"),
        ({"Subnets": [f"subnet-{i}" for i in range(17)], "SecurityGroupIds": ["sg-1"]}, "Subnets"),
        ({"Subnets": ["subnet 1"], "SecurityGroupIds": ["sg-1"]}, "Subnets"),
        ({"Subnets": ["sg-1"], "SecurityGroupIds": ["sg-1"]}, "Subnets"),
        ({"Subnets": ["subnet-" + "a" * 26], "SecurityGroupIds": ["sg-1"]}, "Subnets"),
        ({"Subnets": ["subnet-1"], "SecurityGroupIds": [f"sg-{i}" for i in range(6)]}, "SecurityGroupIds"),
        ({"Subnets": ["subnet-1"], "SecurityGroupIds": "sg-1"}, "SecurityGroupIds"),
        (
            {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"], "EnableNetworkIsolation": "no"},
            "EnableNetworkIsolation",
        ),
        ({"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"], "Isolation": True}, "Isolation"),
        ("[1, 2]", "an object"),
        ("{not json", "JSON"),
    ],
)
def test_a_bad_network_variable_names_the_field(value, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        specs.Network.from_variable(value)


def test_an_isolated_job_cannot_fetch_from_the_hub():
    specs.check_isolation(NETWORK, base_model="s3://b/models/bert/", source="s3://b/mrpc/")
    specs.check_isolation(None, base_model="bert-base-uncased", source="hf://nyu-mll/glue/mrpc")
    open_vpc = specs.Network(NETWORK.subnets, NETWORK.security_group_ids, isolation=False)
    specs.check_isolation(open_vpc, source="hf://nyu-mll/glue/mrpc")
    with pytest.raises(ValueError, match="base_model 'bert-base-uncased'.*source 'hf://nyu-mll/glue/mrpc'"):
        specs.check_isolation(NETWORK, base_model="bert-base-uncased", source="hf://nyu-mll/glue/mrpc")


# ---- training metrics ---------------------------------------------------------------------------------------------
def logged_training_lines(caplog) -> list[str]:
    """The lines the train step's own callbacks log: one progress line and one epoch-end validation line."""
    import numpy as np

    from tasks.training.callbacks import ProgressLogger, ValidationScorer
    from tasks.training.train import log_result

    with caplog.at_level(logging.INFO, logger="tasks.training.train"):
        progress = ProgressLogger(
            every=10, steps_per_epoch=20, epochs=3, global_batch_size=32, learning_rate=lambda step: 2.5e-5
        )
        progress.on_epoch_begin(1)
        progress.on_train_batch_begin(9)
        progress.on_train_batch_end(9, {"loss": 0.41234})
        scorer = ValidationScorer(dataset=None, loss=None)
        scorer.predictions = lambda: (np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 0, 1]), 0.40119)
        scorer.on_epoch_end(1, {"loss": 0.3876})
        # The run's closing line repeats the last epoch's scores: no definition may read it as another point.
        log_result({"accuracy": 0.8, "f1": 0.8, "samples_per_second": 88.0, "steady_samples_per_second": 90.0}, "fp32")
    return [record.getMessage() for record in caplog.records]


def test_metric_definitions_read_what_the_train_step_logs(caplog):
    lines = logged_training_lines(caplog)
    definitions = training()["AlgorithmSpecification"]["MetricDefinitions"]
    assert len(definitions) <= 40 and not refused("CreateTrainingJob", training())
    found = {}
    for definition in definitions:
        values = [match.group(1) for line in lines if (match := re.search(definition["Regex"], line))]
        assert len(values) == 1, f"{definition['Name']} must match one line the train step logs: {lines}"
        found[definition["Name"]] = float(values[-1])
    assert found == {
        "train:loss": 0.4123,
        "train:learning_rate": 2.5e-5,
        "train:epoch_loss": 0.3876,
        "validation:loss": 0.4012,
        "train:samples_per_second": pytest.approx(found["train:samples_per_second"]),
        "validation:accuracy": 0.8,
        "validation:f1": 0.8,
    }
    assert found["train:samples_per_second"] > 0


def test_the_training_job_uploads_the_events_the_step_writes_to_s3():
    from pathlib import Path

    from tasks.runtime.sagemaker_job import DEFAULT_ROOT, TrainingJob

    config = training()["TensorBoardOutputConfig"]
    # Each job (a retry is another job) its own folder: a resumed job's events never mix with its killed try's,
    # and TensorBoard shows each as a run.
    assert config == {
        "S3OutputPath": "s3://b/run/tensorboard/nlp-train-x-t1",
        "LocalPath": "/opt/ml/output/tensorboard",
    }
    job = TrainingJob(Path(DEFAULT_ROOT))  # the folder the train step writes its events to in the job
    assert str(job.tensorboard_dir) == config["LocalPath"]


# ---- blue/green ---------------------------------------------------------------------------------------------------
def form_accepts():
    """The Param's check: jsonschema's validator for the schema, with a format checker, as Param.resolve runs it."""
    from jsonschema import FormatChecker
    from jsonschema.validators import validator_for

    validator = validator_for(specs.BLUE_GREEN_SCHEMA)(specs.BLUE_GREEN_SCHEMA, format_checker=FormatChecker())
    return validator.is_valid


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def aws_refusals(config: dict) -> list[str]:
    """What AWS refuses or advises against in a DeploymentConfig, from its docs, written apart from the builder.

    - TrafficRoutingConfig (API reference): WaitIntervalInSeconds 0-3600; CanarySize at most 50 % of the fleet;
      LinearStepSize 10-50 %. "Use canary traffic shifting": bake after the canary and again after the rest;
      "Use linear traffic shifting": bake after every step, ceil(100 / step) of them.
    - BlueGreenUpdatePolicy: TerminationWaitInSeconds 0-3600; MaximumExecutionTimeoutInSeconds 600-28800 and larger
      than all the waits (here: plus the provisioning allowance of the new fleet).
    - AutoRollbackConfig: 1-10 alarms (botocore AlarmList); AlarmName 1-255 characters, not only blanks; CloudWatch
      alarm names have no ASCII control characters.
    - "Auto-Rollback Configuration and Monitoring": CloudWatch alarms are a prerequisite for baking periods.
    - The pipeline's rule: a canary or linear rollout no alarm watches while it bakes is refused.
    """
    policy = config["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    wait, termination = routing["WaitIntervalInSeconds"], policy.get("TerminationWaitInSeconds", 0)
    timeout = policy["MaximumExecutionTimeoutInSeconds"]
    alarms = [alarm["AlarmName"] for alarm in config.get("AutoRollbackConfiguration", {}).get("Alarms", [])]
    found = []
    kind = routing["Type"]
    bakes = 1
    if kind == "CANARY":
        size = routing["CanarySize"]
        bakes = 2
        if size["Type"] != "CAPACITY_PERCENT" or not 1 <= size["Value"] <= 50:
            found.append("canary size")
    elif kind == "LINEAR":
        size = routing["LinearStepSize"]
        bakes = math.ceil(100 / size["Value"]) if size["Value"] > 0 else 0
        if size["Type"] != "CAPACITY_PERCENT" or not 10 <= size["Value"] <= 50:
            found.append("linear step")
    elif kind != "ALL_AT_ONCE" or {"CanarySize", "LinearStepSize"} & set(routing):
        found.append("traffic type")
    if not (0 <= wait <= 3600 and 0 <= termination <= 3600):
        found.append("wait range")
    if not 600 <= timeout <= 28800:
        found.append("timeout range")
    if timeout < bakes * wait + termination + specs.PROVISIONING_SECONDS:
        found.append("timeout below the waits")
    if "AutoRollbackConfiguration" in config and not 1 <= len(alarms) <= 10:
        found.append("alarm count")
    if any(not 1 <= len(name) <= 255 or not name.strip() or CONTROL.search(name) for name in alarms):
        found.append("alarm name")
    if (wait or termination) and not alarms:
        found.append("baking without alarms")
    if kind in ("CANARY", "LINEAR") and wait < 60:
        found.append("an unwatched canary")
    return found


ALARMS = {count: [f"nlp-endpoint-5xx-{index}" for index in range(count)] for count in (0, 1, 10, 11)}


def test_the_blue_green_schema_accepts_exactly_what_aws_accepts_from_the_builder():
    """Every traffic mode x step 1-100 % x baking 0-60 min x 0/1/10/11 alarms: the form accepts a value iff the
    config built from it satisfies AWS; what the form refuses, deployment_config refuses too."""
    accepts = form_accepts()
    disagreements = []
    for traffic, step, baking, count in itertools.product(specs.TRAFFIC, range(1, 101), range(61), ALARMS):
        value = {"traffic": traffic, "step_percent": step, "baking_minutes": baking, "alarms": ALARMS[count]}
        aws = not aws_refusals(specs._deployment_config(value))
        if accepts(value) != aws:
            disagreements.append((value, aws_refusals(specs._deployment_config(value))))
    assert disagreements == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"traffic": "canary", "step_percent": 60, "baking_minutes": 5, "alarms": ["a"]}, "step_percent"),
        ({"traffic": "linear", "step_percent": 5, "baking_minutes": 5, "alarms": ["a"]}, "step_percent"),
        ({"traffic": "linear", "step_percent": 10, "baking_minutes": 60, "alarms": ["a"]}, "baking_minutes"),
        ({"traffic": "canary", "baking_minutes": 0, "alarms": ["a"]}, "baking_minutes"),
        ({"baking_minutes": 10, "alarms": []}, "alarms"),
        ({"baking_minutes": 10, "alarms": ALARMS[11]}, "alarms"),
        ({"baking_minutes": 10, "alarms": ["  "]}, "alarms"),
        ({"baking_minutes": 10, "alarms": ["nlp\n5xx"]}, "alarms"),
        ({"baking_minutes": 10, "alarms": ["x" * 256]}, "alarms"),
        ({"traffic": "blue"}, "traffic"),
        ({"baking_minutes": 61, "alarms": ["a"]}, "baking_minutes"),
        ({"baking_minutes": "5"}, "baking_minutes"),
        ({"colour": "green"}, "colour"),
    ],
)
def test_deployment_config_refuses_what_the_form_refuses_and_names_the_field(change, field):
    value = specs.BLUE_GREEN_DEFAULT | change
    assert not form_accepts()(value)
    with pytest.raises(ValueError, match=f"blue_green.*{field}"):
        specs.deployment_config(value)


def test_deployment_config_names_a_missing_field():
    value = dict(specs.BLUE_GREEN_DEFAULT)
    del value["alarms"]
    with pytest.raises(ValueError, match="blue_green.*alarms"):
        specs.deployment_config(value)


def test_the_linear_baking_limits_are_computed_from_the_timeout():
    """Linear 10 % (10 steps) bakes at most 40 min: 11 x 40 x 60 + 1800 = 28200 <= 28800 < 11 x 41 x 60 + 1800."""
    linear = {"traffic": "linear", "alarms": ["a"]}
    accepts = form_accepts()
    assert accepts(linear | {"step_percent": 10, "baking_minutes": 40})
    assert not accepts(linear | {"step_percent": 10, "baking_minutes": 41})
    assert accepts(linear | {"step_percent": 17, "baking_minutes": 60}), "6 steps fit the longest bake"
    longest = specs.deployment_config(linear | {"step_percent": 10, "baking_minutes": 40})
    assert longest["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] <= 28800


def test_the_default_rollout_is_all_at_once_with_no_bake_and_the_smoke_test_decides():
    assert specs.BLUE_GREEN_DEFAULT == {"traffic": "all_at_once", "step_percent": 10, "baking_minutes": 0, "alarms": []}
    config = specs.deployment_config(specs.BLUE_GREEN_DEFAULT)
    assert config == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 0,
            "MaximumExecutionTimeoutInSeconds": specs.PROVISIONING_SECONDS,
        }
    }


def test_a_watched_canary_rolls_back_on_its_alarms():
    config = specs.deployment_config({"traffic": "canary", "step_percent": 20, "baking_minutes": 10, "alarms": ["a"]})
    policy = config["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 600,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 20},
    }
    assert policy["TerminationWaitInSeconds"] == 600 and config["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "a"}]
    }
    assert policy["MaximumExecutionTimeoutInSeconds"] == 3 * 600 + specs.PROVISIONING_SECONDS
