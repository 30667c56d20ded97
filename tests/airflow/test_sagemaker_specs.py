"""The SageMaker requests nlp_sagemaker builds, checked against botocore's SageMaker service model and AWS's docs.

Plain functions, no AWS: every request is validated against the shapes botocore sends it with (required members,
enums, lengths, ranges, patterns), and the blue/green rules against a checker written from the AWS docs, apart from
the builder, so the trigger form's schema, the builder and SageMaker cannot drift apart.
"""

import itertools
import json
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


# A trial's hyper-parameters besides its setting, as sagemaker._trial_hyperparameters builds them; the search space
# as tasks/tuning's plan.json spells it (the Params' defaults).
TRIAL = {"epochs": 3, "batch_size": 32, "learning_rate": 3e-5, "precision": "auto", "warmup_ratio": 0.1}
TRIAL |= {"weight_decay": 0.01, "seed": 42, "score_only": True, "max_steps": 20}
SPACE = {
    "learning_rate": {"type": "log", "range": [1e-5, 3e-4]},
    "epochs": {"type": "integer", "range": [2, 5]},
    "batch_size": {"type": "choice", "values": [16, 32]},
    "warmup_ratio": {"type": "linear", "range": [0.0, 0.2]},
    "weight_decay": {"type": "linear", "range": [0.0, 0.1]},
}
SEARCHED = set(SPACE)


def tuning(space=SPACE, trials=8, parallel=2, budget=30 * 24 * 3600, **overrides):
    name = specs.tuning_job_name(RUN_KEY, "manual__2026-04-01T00:00:00+00:00", 1)
    trial = training(hyperparameters=TRIAL, **overrides)
    return specs.tuning_job(
        name,
        trial,
        space=space,
        trials=trials,
        parallel=parallel,
        seed=7,
        early_stopping=True,
        provisioning_seconds=3600,
        budget_seconds=budget,
    )


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
        "CreateHyperParameterTuningJob": tuning(network=network),
    }
    assert {operation: refused(operation, request) for operation, request in requests.items()} == dict.fromkeys(
        requests, []
    )


def test_the_tuning_request_passes_botocores_own_validator():
    """The validator boto3 runs before it sends a request (types, required members, minimums), on the request and
    on one it must refuse."""
    from botocore.validate import ParamValidator

    shape = service_model().operation_model("CreateHyperParameterTuningJob").input_shape
    assert not ParamValidator().validate(tuning(), shape).has_errors()
    broken = tuning()
    broken["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxParallelTrainingJobs"] = 0
    del broken["TrainingJobDefinition"]["RoleArn"]
    report = ParamValidator().validate(broken, shape).generate_report()
    assert "MaxParallelTrainingJobs" in report and "RoleArn" in report, report


# ---- hyperparameter tuning ------------------------------------------------------------------------------------------
def test_the_tuning_job_maximises_the_validation_accuracy_the_training_job_reads_from_its_log(caplog):
    config = tuning()["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["HyperParameterTuningJobObjective"]["MetricName"] == specs.VALIDATION_ACCURACY
    definitions = tuning()["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    [objective] = [each for each in definitions if each["Name"] == specs.VALIDATION_ACCURACY]
    values = [m.group(1) for line in logged_training_lines(caplog) if (m := re.search(objective["Regex"], line))]
    assert values == ["0.8000"], "one value per epoch, which early stopping compares"
    assert (config["Strategy"], config["TrainingJobEarlyStoppingType"], config["RandomSeed"]) == ("Bayesian", "Auto", 7)
    assert {key: config["ResourceLimits"][key] for key in ("MaxNumberOfTrainingJobs", "MaxParallelTrainingJobs")} == {
        "MaxNumberOfTrainingJobs": 8,
        "MaxParallelTrainingJobs": 2,
    }


def test_each_dimension_is_searched_as_sagemaker_scales_it():
    ranges = tuning()["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert ranges == {
        "ContinuousParameterRanges": [
            {"Name": "learning_rate", "MinValue": "1e-05", "MaxValue": "0.0003", "ScalingType": "Logarithmic"},
            {"Name": "warmup_ratio", "MinValue": "0.0", "MaxValue": "0.2", "ScalingType": "Linear"},
            {"Name": "weight_decay", "MinValue": "0.0", "MaxValue": "0.1", "ScalingType": "Linear"},
        ],
        "IntegerParameterRanges": [{"Name": "epochs", "MinValue": "2", "MaxValue": "5", "ScalingType": "Linear"}],
        "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ["16", "32"]}],
    }
    enum = set(service_model().shape_for("HyperParameterScalingType").enum)
    assert {each["ScalingType"] for kind in ranges.values() for each in kind if "ScalingType" in each} <= enum
    for each in ranges["ContinuousParameterRanges"]:  # SageMaker reads them as numbers
        assert float(each["MinValue"]) < float(each["MaxValue"])


def test_the_trials_are_the_training_job_scoring_only_with_the_rest_of_its_hyperparameters():
    request, trial = tuning(), training(hyperparameters=TRIAL)
    definition = request["TrainingJobDefinition"]
    kept = set(trial) - {"TrainingJobName", "HyperParameters", "TensorBoardOutputConfig", "CheckpointConfig"}
    assert {key: definition[key] for key in kept} == {key: trial[key] for key in kept}
    assert definition["StaticHyperParameters"] == {
        "precision": "auto",
        "seed": "42",
        "score_only": "True",
        "max_steps": "20",
    }, "the searched ones are each trial's own; the base model comes as the model channel"
    assert {"CheckpointConfig", "TensorBoardOutputConfig"}.isdisjoint(definition), (
        "trials would share one checkpoint prefix; a definition has no TensorBoard upload"
    )


def test_a_range_of_one_value_is_fixed_as_a_static_hyperparameter():
    space = SPACE | {"warmup_ratio": {"type": "linear", "range": [0.06, 0.06]}}
    space |= {"batch_size": {"type": "choice", "values": [32, 32]}, "epochs": {"type": "integer", "range": [3, 3]}}
    request = tuning(space)
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert [each["Name"] for kind in ranges.values() for each in kind] == ["learning_rate", "weight_decay"]
    static = request["TrainingJobDefinition"]["StaticHyperParameters"]
    assert (static["warmup_ratio"], static["batch_size"], static["epochs"]) == ("0.06", "32", "3")
    assert not refused("CreateHyperParameterTuningJob", request)


def test_the_whole_search_is_bounded_by_its_waves_of_trials():
    limits = tuning()["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert limits["MaxRuntimeInSeconds"] == 4 * (7200 + 3600), "8 trials, 2 at a time; Spot: each may wait 2 h"
    one_at_a_time = tuning(trials=3, parallel=5, spot=False)["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert (one_at_a_time["MaxParallelTrainingJobs"], one_at_a_time["MaxRuntimeInSeconds"]) == (3, 3600 + 3600)
    longest = tuning(trials=32, parallel=1, max_runtime_seconds=120 * 3600, max_wait_seconds=240 * 3600)
    longest = longest["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert longest["MaxRuntimeInSeconds"] == specs.MAX_TUNING_SECONDS == 30 * 24 * 3600


def test_a_refused_search_says_which_dimensions_and_whether_the_trials_are_at_fault():
    few = SPACE | {"learning_rate": {"type": "log", "range": [1e-3, 1e-3]}}
    few |= {
        "warmup_ratio": {"type": "linear", "range": [0.1, 0.1]},
        "weight_decay": {"type": "linear", "range": [0, 0]},
    }
    with pytest.raises(specs.SearchError) as refused:
        specs.check_search(few, 99)
    assert (set(refused.value.dimensions), refused.value.trials) == ({"epochs", "batch_size"}, True)
    with pytest.raises(specs.SearchError) as refused:
        specs.check_search(SPACE | {"learning_rate": {"type": "log", "range": [0, 1e-3]}}, 4)
    assert (refused.value.dimensions, refused.value.trials) == (("learning_rate",), False)
    with pytest.raises(specs.SearchError) as refused:
        specs.check_search(SPACE, 0)
    assert (refused.value.dimensions, refused.value.trials) == ((), True)


def test_the_whole_search_ends_within_its_budget():
    """The search's budget (limits.TUNING_BUDGET) bounds the tuning job however many waves its trials take."""
    limits = tuning(trials=32, parallel=1, budget=24 * 3600)["HyperParameterTuningJobConfig"]["ResourceLimits"]
    assert limits["MaxRuntimeInSeconds"] == 24 * 3600
    quick = tuning(trials=2, parallel=2, spot=False, budget=24 * 3600)["HyperParameterTuningJobConfig"]
    assert quick["ResourceLimits"]["MaxRuntimeInSeconds"] == 3600 + 3600, "a shorter search keeps its own bound"


def test_the_tuning_job_name_leaves_room_for_the_names_sagemaker_gives_its_training_jobs():
    name = specs.tuning_job_name(RUN_KEY, "scheduled__2026-04-01T00:00:00+00:00", 99999)
    assert len(name) <= 32 and name.startswith("nlp-tune-20260401-")
    assert not problems(name, service_model().shape_for("HyperParameterTuningJobName"), "name")
    trial = f"{name}-032-0a1b2c3d"  # SageMaker's NAME-NNN-HEX8
    assert not problems(trial, service_model().shape_for("TrainingJobName"), "trial")
    assert specs.tuning_job_name(RUN_KEY, "manual__1", 1) != specs.tuning_job_name(RUN_KEY, "manual__2", 1)
    with pytest.raises(ValueError, match="at most 32"):
        specs.tuning_job_name(RUN_KEY, "r", 10**7)


@pytest.mark.parametrize(
    ("change", "trials", "refusal"),
    [
        ({"learning_rate": {"type": "log", "range": [3e-4, 1e-5]}}, 8, "learning_rate .* minimum above its maximum"),
        ({"learning_rate": {"type": "log", "range": [0.0, 1e-4]}}, 8, "learning_rate .* minimum must be above 0"),
        ({"epochs": {"type": "integer", "range": [2, 4.5]}}, 8, "epochs .* whole numbers"),
        ({"batch_size": {"type": "choice", "values": []}}, 8, "batch_size needs 1 to 30"),
        ({"batch_size": {"type": "choice", "values": list(range(1, 32))}}, 8, "batch_size needs 1 to 30"),
        ({"epochs": {"type": "exponential", "range": [1, 2]}}, 8, "epochs is of type 'exponential'"),
        (
            {
                name: {"type": "linear", "range": [0.1, 0.1]}
                for name in ("learning_rate", "warmup_ratio", "weight_decay")
            }
            | {"epochs": {"type": "integer", "range": [3, 3]}, "batch_size": {"type": "choice", "values": [16]}},
            8,
            "nothing to search",
        ),
        (
            {
                name: {"type": "linear", "range": [0.1, 0.1]}
                for name in ("learning_rate", "warmup_ratio", "weight_decay")
            },
            9,
            "holds 8 setting",  # epochs 2-5 x batch size 16 or 32
        ),
        ({}, 0, "at least 1 trial"),
    ],
)
def test_a_search_sagemaker_refuses_is_refused_naming_what_is_wrong(change, trials, refusal):
    with pytest.raises(ValueError, match=refusal):
        tuning(SPACE | change, trials=trials)


def test_a_tuning_job_runs_at_least_one_training_job_at_a_time():
    with pytest.raises(ValueError, match="at least 1 training job at a time"):
        tuning(parallel=0)


# ---- the search of a run's Params -----------------------------------------------------------------------------------
def run_params(**changes) -> dict:
    from nlp_pipeline.params import pipeline_params, sagemaker_params

    return {name: param.value for name, param in (pipeline_params() | sagemaker_params()).items()} | changes


def search_params() -> list[str]:
    """The Params of the ranges ``tune`` searches: each list flag of TuneArguments, as commands.PARAM_FLAGS sets it."""
    import typing

    from nlp_pipeline.commands import PARAM_FLAGS

    from tasks.config import TuneArguments

    hints = typing.get_type_hints(TuneArguments)
    return [spec.param for spec in PARAM_FLAGS if spec.step == "tune" and typing.get_origin(hints[spec.field]) is list]


@pytest.fixture
def variables(monkeypatch):
    for name, value in {
        "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": "s3://b/artefacts",
        "AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN": ROLE,
        "AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE": IMAGE,
    }.items():
        monkeypatch.setenv(name, value)


def tune_context(**params) -> dict:
    import pendulum

    from tests.airflow.task_context import task_context

    staged = {("stage_dataset", "return_value"): {"uri": "s3://b/staged/job", "fingerprint": "sha256:0f"}}
    values = run_params(source="s3://b/raw/", base_model="bert-base-uncased") | params
    return task_context(
        "nlp_sagemaker", "tune", values, logical_date=pendulum.datetime(2026, 4, 1, tz="UTC"), run_id="r", xcom=staged
    )


def test_the_search_space_is_the_runs_range_params(variables):
    from nlp_pipeline import sagemaker

    from tasks.tuning.space import space

    ranges = {
        "learning_rate_range": [2e-5, 1e-4],
        "epochs_range": [1, 3],
        "batch_sizes": [8, 16, 32],
        "warmup_ratio_range": [0.0, 0.1],
        "weight_decay_range": [0.01, 0.01],
    }
    arguments = sagemaker.search(tune_context(tuning_trials=4, **ranges))
    assert space(arguments) == {
        "learning_rate": {"type": "log", "range": [2e-5, 1e-4]},
        "epochs": {"type": "integer", "range": [1, 3]},
        "batch_size": {"type": "choice", "values": [8, 16, 32]},
        "warmup_ratio": {"type": "linear", "range": [0.0, 0.1]},
        "weight_decay": {"type": "linear", "range": [0.01, 0.01]},
    }
    assert arguments.output == "s3://b/artefacts/nlp_sagemaker/20260401T000000Z/tuning"
    assert len(search_params()) == 5
    defaults = space(sagemaker.search(tune_context()))
    for param in search_params():  # every range tune searches moves SageMaker's search
        changed = sagemaker.search(tune_context(**{param: run_params()[param][:1] * 2}))
        assert space(changed) != defaults, param
    assert not refused("CreateHyperParameterTuningJob", tuning(defaults)), (
        "the form's defaults: a search SageMaker takes"
    )


def test_a_trial_runs_train_as_commands_trial_command_builds_a_trial(variables, monkeypatch, tmp_path):
    """What a trial's container runs (the static and the tuned hyper-parameters, as the task image reads them) parses
    into the arguments every platform's trial has: commands.trial_command's."""
    from nlp_pipeline import commands, sagemaker

    from tasks import cli
    from tasks.runtime.sagemaker_job import TrainingJob

    context = tune_context(tuning_trials=4, tuning_max_steps=20, weight_decay=0.03)
    request = sagemaker._tune_config(context, "nlp-tune-x")
    setting = {"learning_rate": 1.2e-4, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.05, "weight_decay": 0.02}
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    hyperparameters = request["TrainingJobDefinition"]["StaticHyperParameters"] | {
        name: str(value) for name, value in setting.items()
    }
    # SageMaker adds the objective's name for its own containers.
    hyperparameters["_tuning_objective_metric"] = specs.VALIDATION_ACCURACY
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    in_job = vars(cli.parse("train", TrainingJob(tmp_path).arguments()))
    trial = {"name": "trial-000", "setting": setting}
    built = vars(
        cli.parse("train", commands.trial_command(context["params"], trial, data="/d", output="/o", max_steps=20)[1:])
    )
    paths = ("data", "output", "checkpoint_dir", "tensorboard_dir")
    assert {k: v for k, v in in_job.items() if k not in paths} == {k: v for k, v in built.items() if k not in paths}
    assert (in_job["score_only"], in_job["max_steps"], in_job["learning_rate"]) == (True, 20, 1.2e-4)


@pytest.mark.parametrize(
    ("params", "refusal"),
    [
        (
            {"learning_rate_range": [0.001, 0.001], "warmup_ratio_range": [0.1, 0.1], "weight_decay_range": [0, 0]}
            | {"epochs_range": [2, 2], "batch_sizes": [16, 32]},
            r"tuning \(batch_sizes, tuning_trials\): the tuning space holds 2 setting\(s\) of batch_size, fewer than the 4 "
            "trials",
        ),
        (
            {"learning_rate_range": [0.001, 0.0001]},
            r"learning_rate_range: --learning-rate-range must be LO HI with LO no",
        ),
    ],
)
def test_a_search_sagemaker_would_refuse_fails_the_runs_first_job_naming_the_params(variables, params, refusal):
    """The Params come from the refusal's fields (specs.SearchError), not from its words."""
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline import sagemaker

    context = tune_context(tuning_trials=4, **params)
    with pytest.raises(AirflowFailException, match=refusal):
        sagemaker._stage_config(context, "nlp-stage-x")
    with pytest.raises(AirflowFailException, match=refusal):
        sagemaker._tune_config(context, "nlp-tune-x")
    sagemaker._stage_config(tune_context(tuning_trials=0, **params), "nlp-stage-x")  # tuning off: nothing to refuse


@pytest.mark.parametrize("isolation", [True, False], ids=["isolated", "open"])
def test_the_final_training_reads_the_searchs_tuning_json_even_with_network_isolation(
    variables, monkeypatch, isolation
):
    """An isolated job cannot read S3 itself: tuning.json comes as its ``tuning`` channel and train reads the copy
    SageMaker puts under /opt/ml/input/data; an open one reads it from S3."""
    from nlp_pipeline import sagemaker

    network = {"Subnets": ["subnet-1a"], "SecurityGroupIds": ["sg-1a"], "EnableNetworkIsolation": isolation}
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_NETWORK", json.dumps(network))
    monkeypatch.setattr(sagemaker, "production_model", lambda context: None)
    context = tune_context(tuning_trials=2, base_model="s3://b/models/bert/")
    tune = sagemaker._tune_config(context, "nlp-tune-x")
    assert tune["TrainingJobDefinition"]["EnableNetworkIsolation"] is isolation
    uri = "s3://b/artefacts/nlp_sagemaker/20260401T000000Z/tuning/nlp-tune-x/tuning.json"
    setting = {"learning_rate": 1e-4, "epochs": 2, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01}
    context["ti"].xcom[("choose_setting", "return_value")] = {"setting": setting, "tuning": uri}
    train = sagemaker._train_config(context, "nlp-train-x")
    channels = {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"] for channel in train["InputDataConfig"]
    }
    if isolation:
        assert channels["tuning"] == uri
        assert train["HyperParameters"]["tuning"] == "/opt/ml/input/data/tuning/tuning.json"
    else:
        assert "tuning" not in channels and train["HyperParameters"]["tuning"] == uri
    assert not refused("CreateTrainingJob", train)


def test_the_tune_task_is_skipped_when_tuning_is_off(variables):
    from airflow.sdk.exceptions import AirflowSkipException
    from nlp_pipeline import sagemaker

    with pytest.raises(AirflowSkipException, match="tuning_trials is 0"):
        sagemaker._tune_config(tune_context(tuning_trials=0), "nlp-tune-x")


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


def test_a_choice_holds_at_most_the_values_botocore_allows():
    """botocore's ParameterValues: 1 to 30 values in a categorical range."""
    most = service_model().shape_for("ParameterValues").metadata["max"]
    choice = {"type": "choice", "values": list(range(1, most + 2))}
    with pytest.raises(specs.SearchError, match=rf"batch_size needs 1 to {most} different values") as refused:
        specs.search_space(SPACE | {"batch_size": choice})
    assert refused.value.dimensions == ("batch_size",)
    choice["values"].pop()
    ranges, _ = specs.search_space(SPACE | {"batch_size": choice})
    assert len(ranges["CategoricalParameterRanges"][0]["Values"]) == most


# ---- data capture -------------------------------------------------------------------------------------------------
CAPTURE_ROOT = "s3://b/artefacts/capture/nlp_sagemaker"
KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def capture_config(**overrides) -> dict:
    arguments = {"sample_rate": 0.25, "text": False} | overrides
    config = specs.data_capture_config(CAPTURE_ROOT, **arguments)
    return specs.endpoint_config("nlp-config-x", "nlp-model-x", instance_type="ml.c6i.xlarge", instance_count=1) | {
        "DataCaptureConfig": config
    }


@pytest.mark.parametrize(
    "request_",
    [
        specs.endpoint_config("nlp-config-x", "nlp-model-x", instance_type="ml.c6i.xlarge", instance_count=1),
        capture_config(),
        capture_config(text=True),
        capture_config(sample_rate=0.001, kms_key_id=KMS_KEY),
    ],
    ids=["off", "on", "text", "kms"],
)
def test_the_endpoint_config_with_or_without_capture_is_one_sagemaker_accepts(request_):
    from botocore.validate import ParamValidator

    shape = service_model().operation_model("CreateEndpointConfig").input_shape
    assert refused("CreateEndpointConfig", request_) == []
    assert not ParamValidator().validate(request_, shape).has_errors()


def test_capture_keeps_answers_only_unless_text_is_asked_as_json_under_the_capture_root():
    assert "DataCaptureConfig" not in specs.endpoint_config("c", "m", instance_type="ml.c6i.xlarge", instance_count=1)
    answers = capture_config()["DataCaptureConfig"]
    assert answers == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 25,
        "DestinationS3Uri": f"{CAPTURE_ROOT}/{specs.SAGEMAKER_CAPTURE}",
        "CaptureOptions": [{"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
    }
    text = capture_config(text=True, kms_key_id=KMS_KEY)["DataCaptureConfig"]
    assert text["CaptureOptions"] == [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]
    assert text["KmsKeyId"] == KMS_KEY


@pytest.mark.parametrize(("rate", "percent"), [(1.0, 100), (0.25, 25), (0.004, 1), (0.126, 13), (0.999, 100)])
def test_sagemakers_sampling_percentage_is_the_servers_rate_in_whole_percent_at_least_one(rate, percent):
    assert specs.sampling_percentage(rate) == percent


@pytest.mark.parametrize("rate", [0, -0.1, 1.5])
def test_a_rate_the_server_refuses_has_no_sampling_percentage(rate):
    with pytest.raises(ValueError, match=r"a capture sample rate is in \(0, 1\], got"):
        specs.sampling_percentage(rate)


def test_the_models_environment_carries_the_servers_capture_which_serve_reads_back(monkeypatch):
    """SageMaker starts ``serve`` without flags: the settings travel in the container's Environment, and the
    real ServeArguments reads them back to the same values."""
    from tasks.config import CAPTURE_ENV, ServeArguments

    flags = {"capture_dir": CAPTURE_ROOT, "capture_sample_rate": 0.25, "capture_text": True}
    request = specs.model("nlp-model-x", SETTINGS, "s3://b/m/", {"NLP_MODEL_DIGEST": DIGEST}, capture=flags)
    environment = request["PrimaryContainer"]["Environment"]
    assert refused("CreateModel", request) == []
    assert environment["NLP_MODEL_DIGEST"] == DIGEST
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    served = ServeArguments()
    assert {name: getattr(served, name) for name in CAPTURE_ENV} == flags
    assert "Environment" not in specs.model("m", SETTINGS, "s3://b/m/", capture={})["PrimaryContainer"]


def test_capture_settings_serve_cannot_read_from_its_environment_are_refused():
    with pytest.raises(ValueError, match="not capture_file_bytes"):
        specs.capture_environment({"capture_dir": CAPTURE_ROOT, "capture_file_bytes": 1024})


def test_an_isolated_endpoint_cannot_write_its_capture():
    specs.check_capture(None)
    specs.check_capture(specs.Network(NETWORK.subnets, NETWORK.security_group_ids, isolation=False))
    with pytest.raises(ValueError, match="capture_sample_rate.*nlp_sagemaker_network.*network isolation"):
        specs.check_capture(NETWORK)


def rollout_context(**params) -> dict:
    """create_model's and create_endpoint_config's context: the run's evaluation and staged data in XCom."""
    import pendulum

    from tests.airflow.task_context import task_context

    xcom = {
        ("stage_dataset", "return_value"): {"uri": "s3://b/staged/job", "fingerprint": "sha256:0f"},
        ("evaluate", "return_value"): {"model": "s3://b/quantized/job/", "model_digest": DIGEST},
    }
    values = run_params(source="s3://b/raw/", base_model="s3://b/models/bert/") | params
    return task_context(
        "nlp_sagemaker",
        "create_model",
        values,
        logical_date=pendulum.datetime(2026, 4, 1, tz="UTC"),
        run_id="r",
        xcom=xcom,
    )


def test_a_run_capturing_its_traffic_rolls_out_both_captures_to_the_dags_capture_root(variables, monkeypatch):
    from nlp_pipeline import sagemaker

    from tasks.config import CAPTURE_ENV

    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_KMS_KEY", KMS_KEY)
    context = rollout_context(capture_sample_rate=0.5, capture_text=True)
    root = "s3://b/artefacts/capture/nlp_sagemaker"
    assert sagemaker.capture_root() == root
    environment = sagemaker._model_config(context)["PrimaryContainer"]["Environment"]
    assert {name: environment[variable] for name, variable in CAPTURE_ENV.items()} == {
        "capture_dir": root,
        "capture_sample_rate": "0.5",
        "capture_text": "true",
    }
    config = sagemaker._endpoint_config(context)
    assert refused("CreateEndpointConfig", config) == []
    assert config["DataCaptureConfig"] == specs.data_capture_config(
        root, sample_rate=0.5, text=True, kms_key_id=KMS_KEY
    )

    quiet = rollout_context(
        capture_sample_rate=0
    )  # capture off (null keeps the live endpoint's: test_sagemaker_endpoint)
    assert not set(CAPTURE_ENV.values()) & set(sagemaker._model_config(quiet)["PrimaryContainer"]["Environment"])
    assert "DataCaptureConfig" not in sagemaker._endpoint_config(quiet)


@pytest.mark.parametrize(
    ("params", "network", "refusal"),
    [
        (
            {"capture_sample_rate": 0.1},
            {"Subnets": ["subnet-1a"], "SecurityGroupIds": ["sg-1a"], "EnableNetworkIsolation": True},
            "capture_sample_rate asks the endpoint to capture.*network isolation",
        ),
        (
            {"capture_sample_rate": 0, "capture_text": True},
            None,
            "capture_text: capturing text needs capture_sample_rate",
        ),
    ],
    ids=["isolated", "text-without-capture"],
)
def test_a_capture_the_endpoint_could_not_write_fails_the_runs_first_job_naming_the_params(
    variables, monkeypatch, params, network, refusal
):
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline import sagemaker

    if network:
        monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_NETWORK", json.dumps(network))
    context = rollout_context(**params)
    for build in (sagemaker._stage_config, lambda context, name: sagemaker._model_config(context)):
        with pytest.raises(AirflowFailException, match=refusal):
            build(context, "nlp-stage-x")
    with pytest.raises(AirflowFailException, match=refusal):
        sagemaker._endpoint_config(context)


def test_a_kms_key_setting_that_is_not_a_key_is_refused_naming_the_variable(variables, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline import sagemaker

    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_KMS_KEY", "my key!")
    with pytest.raises(AirflowFailException, match="nlp_sagemaker_kms_key must be a KMS key id"):
        sagemaker.settings()


@pytest.mark.parametrize("key", ["", "alias/nlp-capture", KMS_KEY, "k" * 2048, "k" * 2049, "my key!"])
def test_the_kms_key_setting_is_checked_against_botocores_kms_key_id_shape(variables, monkeypatch, key):
    """The Variable nlp_sagemaker_kms_key takes what botocore's KmsKeyId shape takes (its pattern and length),
    read from the service model, not a copy of them; empty is no key."""
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline import sagemaker

    limits = service_model().shape_for("KmsKeyId").metadata
    accepted = limits["min"] <= len(key) <= limits["max"] and re.fullmatch(limits["pattern"], key)
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_KMS_KEY", key)
    if accepted:
        assert sagemaker.settings().kms_key_id == (key or None)
    else:
        with pytest.raises(AirflowFailException, match="nlp_sagemaker_kms_key must be a KMS key id"):
            sagemaker.settings()
