"""The SageMaker platform: each step a SageMaker job of the task image, the rollout a SageMaker endpoint.

    stage_dataset, quantize, evaluate   processing jobs: ``python -m tasks stage|quantize|evaluate``; quantize
                                        on the endpoint's instance type (``compression_instance_type`` moves it)
    tune >> choose_setting              a hyperparameter tuning job (``tuning_trials`` score-only training jobs,
                                        ``tuning_parallel_jobs`` at a time), skipped when ``tuning_trials`` is 0;
                                        its trials summarised into ``tuning.json``
    train                               a training job (``train``), deferrable, Spot and multi-instance by Param,
                                        with the setting tuning chose
    register / reject                   a version in the model package group, with its metrics
    create_model >> create_endpoint_config >> deploy
                                        a model and endpoint config per run and model digest; create the
                                        endpoint, or update it blue/green (Param ``blue_green``)
    smoke_test                          InvokeEndpoint with sentence pairs; failure → ``rollback``
    monitor (nlp_monitor_sagemaker)     a processing job: ``python -m tasks monitor`` on the window of the
                                        endpoint's capture (``capture_root``) against the production model's card

With the Param ``capture_sample_rate`` above 0 the rollout captures the endpoint's traffic: the server's own
records through the model's Environment (tasks.config.CAPTURE_ENV), SageMaker's DataCaptureConfig beside them
(specs.data_capture_config); network isolation, which would keep the server from writing them, is then refused.

Everything AWS-side comes from Airflow: the connection (Variable ``nlp_aws_conn_id``, default
``aws_default``, which holds the region and credentials), and the Variables ``nlp_artefact_root``
(``s3://bucket/prefix``), ``nlp_sagemaker_role_arn``, ``nlp_sagemaker_image`` (the ECR URI of the task
image's root tag), ``nlp_sagemaker_endpoint`` and ``nlp_model_package_group`` (both default
``nlp-paraphrase``), and optionally ``nlp_sagemaker_network`` (a VPC, network isolation) and
``nlp_sagemaker_kms_key`` (encrypts SageMaker's data capture).
Artefacts: ``ROOT/nlp_sagemaker/RUN_KEY/STEP/JOB_NAME/``, one prefix per job, so a retry never mixes its
files with an earlier try's; XCom carries the exact prefix on. The tuning job's trials write
``ROOT/nlp_sagemaker/RUN_KEY/tuning/TRAINING_JOB/``, its summary ``ROOT/.../RUN_KEY/tuning/TUNING_JOB/tuning.json``. The rollout's record (the config served before
the run) is ``ROOT/nlp_sagemaker/RUN_KEY/rollout/record.json``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from datetime import timedelta

from airflow.sdk import Variable, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from nlp_pipeline import artefacts, commands, decisions, limits, policy
from nlp_pipeline.assets import MODEL_CANDIDATES, MODEL_PRODUCTION, STAGED_DATA, model_event
from nlp_pipeline.links import EVALUATION_LINKS, persist_evaluation, with_links
from nlp_pipeline.operators.sagemaker import (
    ENDPOINT_BUSY,
    Rollout,
    RolloutRecord,
    RunEndpointConfigOperator,
    RunModelOperator,
    RunModelVersionOperator,
    StepProcessingOperator,
    StepTrainingOperator,
    StepTuningOperator,
    VerifiedEndpointOperator,
    attempts,
    model_packages,
    not_found,
    run_name,
)
from nlp_pipeline.specs import sagemaker as specs
from nlp_pipeline.specs.sagemaker_api import MAX_EXECUTION_SECONDS
from tasks.config import MODEL_DIGEST_ENV, TuneArguments
from tasks.errors import ConfigError, TaskError
from tasks.runtime import step_result
from tasks.runtime.sagemaker_job import PROCESSING_INPUT, PROCESSING_OUTPUT
from tasks.serving import contract
from tasks.tuning.plan import OBJECTIVE
from tasks.tuning.results import COMPLETED, FAILED, STOPPED, TUNING, summarise
from tasks.tuning.space import DIMENSIONS, space

log = logging.getLogger(__name__)

DAG_ID = "nlp_sagemaker"  # the pipeline's DAG, whose endpoint this module rolls out and monitors
AWS_CONN_ID = "{{ var.value.get('nlp_aws_conn_id', 'aws_default') }}"
ROLLOUT_START = "create_model"  # the first task of the rollout: choose_rollout's branch target
# Seconds between status polls of a job or endpoint (read at parse time; the tests on moto poll every second).
CHECK_INTERVAL = int(os.environ.get("NLP_SAGEMAKER_POLL_SECONDS", "30"))


def aws_conn_id() -> str:
    return Variable.get("nlp_aws_conn_id", default="aws_default")


def settings() -> specs.Settings:
    root = artefacts.root()
    if not root.startswith("s3://"):
        raise AirflowFailException(
            f"nlp_sagemaker needs the Variable nlp_artefact_root on S3 (s3://bucket/prefix), got {root!r}"
        )
    # SageMaker writes /opt/ml only as root, so its jobs run the image's root tag (docker/task/Dockerfile,
    # target task-sagemaker), never the pods' non-root nlp_task_image.
    role_arn = Variable.get("nlp_sagemaker_role_arn", None)
    image_uri = Variable.get("nlp_sagemaker_image", None)
    required = {"nlp_sagemaker_role_arn": role_arn, "nlp_sagemaker_image": image_uri}
    if missing := [name for name, value in required.items() if value is None]:
        raise AirflowFailException(
            f"nlp_sagemaker needs the Airflow Variable(s) {', '.join(missing)}: the IAM role SageMaker assumes "
            f"and the ECR URI of the task image's root tag, task-sagemaker (docs/sagemaker.md, Setup)"
        )
    kms_key_id = Variable.get("nlp_sagemaker_kms_key", default=None) or None  # empty: no key
    if kms_key_id is not None and (refusal := specs.kms_key_id_refusal(kms_key_id)):
        raise AirflowFailException(
            f"the Airflow Variable nlp_sagemaker_kms_key must be a KMS key id, alias or ARN ({refusal}), "
            f"got {kms_key_id!r}"
        )
    return specs.Settings(
        role_arn=role_arn,
        image_uri=image_uri,
        artefact_root=root,
        endpoint_name=Variable.get("nlp_sagemaker_endpoint", default="nlp-paraphrase"),
        model_package_group=Variable.get("nlp_model_package_group", default="nlp-paraphrase"),
        kms_key_id=kms_key_id,
    )


def network() -> specs.Network | None:
    """The Variable ``nlp_sagemaker_network`` (JSON: Subnets, SecurityGroupIds, EnableNetworkIsolation), or None."""
    value = Variable.get("nlp_sagemaker_network", default=None)
    if value is None:
        return None
    try:
        return specs.Network.from_variable(value)
    except ValueError as error:
        raise AirflowFailException(f"the Airflow Variable nlp_sagemaker_network is not valid: {error}") from error


def step_prefix(context, step: str, job: str) -> str:
    return f"{artefacts.run_folder(context)}/{step}/{job}"


def _s3_hook():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id())


def _isolated_sources(**sources: str) -> None:
    """Refuse, before a job starts, a source an isolated job could not fetch (specs.check_isolation)."""
    try:
        specs.check_isolation(network(), **sources)
    except ValueError as error:
        raise AirflowFailException(str(error)) from error


def as_input(uri: str) -> str:
    """A location the pipeline did not write (the run's source) as a job's input: ``uri`` itself when it is one
    object, else the folder with its ``/``, so its files (not the folder) land in the input's path, and
    ``data-2/`` beside ``data/`` stays out. The pipeline's own outputs say what they are: a prefix ends in ``/``,
    a training job's model.tar.gz is one object (specs.processing_job)."""
    if uri.endswith("/"):
        return uri
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return uri if _s3_hook().check_for_key(key, bucket) else f"{uri}/"


def as_prefix(uri: str) -> str:
    """A folder the pipeline wrote (staged data, a quantised model), as the prefix SageMaker copies."""
    return uri.rstrip("/") + "/"


def read_json(uri: str) -> dict:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return json.loads(_s3_hook().read_key(key, bucket))


def _processing(
    context, name: str, folder: str, command: list[str], inputs: dict[str, str], instance_type: str | None = None
) -> dict:
    """``python -m tasks COMMAND`` as a processing job writing ``ROOT/.../RUN_KEY/FOLDER/JOB/``; the job's
    inputs are mounted where the step's processing contract (tasks/runtime/sagemaker_job.py) finds them. It runs
    on ``instance_type``, by default the ``processing_instance_type`` Param."""
    params = context["params"]
    return specs.processing_job(
        name,
        settings(),
        arguments=command,
        inputs=inputs,
        output=step_prefix(context, folder, name),
        instance_type=instance_type or params["processing_instance_type"],
        max_runtime_seconds=params["max_runtime_hours"] * 3600,
        network=network(),
    )


def _job(operator: type, task_id: str, kind: str, build_config, summarize, **kwargs):
    """The step's job operator, deferrable, on the pipeline's connection and poll interval."""
    return operator(
        task_id=task_id,
        kind=kind,
        build_config=build_config,
        summarize=summarize,
        aws_conn_id=AWS_CONN_ID,
        deferrable=True,
        check_interval=CHECK_INTERVAL,
        **kwargs,
    )


def _output_of(result: dict) -> str:
    return result["Processing"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"].rstrip("/")


def _result(step: str, uri: str) -> dict:
    """What the pipeline needs of the step's report under ``uri`` (as tasks/runtime/step_result.py selects it)."""
    report, select = step_result.RESULTS[step]
    return select(read_json(f"{uri}/{report}"))


# ---- stage_dataset ------------------------------------------------------------------------------------------------
def _stage_config(context, name: str) -> dict:
    """The source and the tokenizer's model come in as ProcessingInputs when they are on S3; a hub id or
    ``hf://`` data set is fetched by the job itself. The run's source is checked against the allow-list as on
    every platform (commands.values); a job given its source as an input may read that input only."""
    params, inputs, given = context["params"], {}, {"output": PROCESSING_OUTPUT}
    source, tokenizer = params["source"], params["base_model"]
    _isolated_sources(source=source, base_model=tokenizer)
    # The first job: a rollout, a search or a capture SageMaker would refuse (or could not write) hours later is
    # refused now.
    _deployment(params)
    _search(context)
    capture(params)
    if source.startswith("s3://"):
        inputs["source"], given["source"] = as_input(source), f"{PROCESSING_INPUT}/source"
        given["allowed_sources"] = [given["source"]]
    if tokenizer.startswith("s3://"):
        inputs["tokenizer"], given["tokenizer"] = as_prefix(tokenizer), f"{PROCESSING_INPUT}/tokenizer"
    command = commands.command("stage", params, **given)
    return _processing(context, name, "staged", command, inputs)


def _stage_summary(context, result: dict) -> dict:
    uri = _output_of(result)
    return {"uri": uri} | _result("stage", uri)


def stage_dataset():
    return _job(StepProcessingOperator, "stage_dataset", "stage", _stage_config, _stage_summary, outlets=[STAGED_DATA])


# ---- tune ---------------------------------------------------------------------------------------------------------
def search(context) -> TuneArguments:
    """The run's search: tune's arguments of its Params (commands.PARAM_FLAGS), in the run's tuning folder. A range
    the step refuses is refused naming its Param (the policy task refused it already when the run started)."""
    params = context["params"]
    try:
        commands.check("tune", params)
        return TuneArguments(output=tuning_folder(context), **commands.values("tune", params))
    except ConfigError as error:
        raise AirflowFailException(f"tuning: {error}") from error


def _params_of(error: specs.SearchError) -> list[str]:
    """The Params behind a refused search: its dimensions' (each one's range flag, as PARAM_FLAGS sets it) and
    ``tuning_trials`` when the number of trials is at fault; every search Param when it names none."""
    param_of = {spec.field: spec.param for spec in commands.PARAM_FLAGS if spec.step == "tune"}
    named = [param_of[each.range_flag] for each in DIMENSIONS if each.name in error.dimensions]
    if error.trials:
        named.append(param_of["trials"])
    return named or [param_of[each.range_flag] for each in DIMENSIONS] + [param_of["trials"]]


def _search(context) -> TuneArguments | None:
    """The run's search, or None when tuning is off; refused, before any job runs, when SageMaker would refuse it
    (specs.check_search: a logarithmic learning rate from 0, nothing to search, fewer settings than trials)."""
    if not context["params"]["tuning_trials"]:
        return None
    arguments = search(context)
    try:
        specs.check_search(space(arguments), arguments.trials)
    except specs.SearchError as error:
        raise AirflowFailException(f"tuning ({', '.join(_params_of(error))}): {error}") from error
    return arguments


def _trial_hyperparameters(params, arguments: TuneArguments) -> dict:
    """A trial's hyper-parameters besides its setting: train's flags of the run's Params, scoring only, within the
    search's step budget (as commands.trial_command builds a trial's command)."""
    return commands.values("train", params, model=None, score_only=True, max_steps=arguments.max_steps)


def _tune_config(context, name: str) -> dict:
    params, arguments = context["params"], _search(context)
    if arguments is None:
        raise AirflowSkipException("tuning is off (tuning_trials is 0): train uses the form's setting")
    staged = context["ti"].xcom_pull(task_ids="stage_dataset")
    hyperparameters = _trial_hyperparameters(params, arguments)
    trial = _training_request(context, params, name, staged["uri"], hyperparameters, tuning_folder(context))
    return specs.tuning_job(
        name,
        trial,
        space=space(arguments),
        trials=arguments.trials,
        parallel=params["tuning_parallel_jobs"],
        seed=arguments.seed,
        early_stopping=arguments.early_stopping == "auto",
        provisioning_seconds=int(limits.JOB_START.total_seconds()),
        budget_seconds=int(limits.TUNING_BUDGET.total_seconds()),
    )


def _tune_summary(context, result: dict) -> dict:
    job = result["Tuning"]
    return {
        "job": job["HyperParameterTuningJobName"],
        "best_training_job": (job.get("BestTrainingJob") or {}).get("TrainingJobName"),
        "counters": job["TrainingJobStatusCounters"],
    }


def tuning_folder(context) -> str:
    """Where the run's tuning writes: its trials' outputs (one prefix per training job) and each tuning job's
    tuning.json (the search's folder)."""
    return f"{artefacts.run_folder(context)}/tuning"


def _trials(client, job: str):
    """The tuning job's training jobs, page after page (ListTrainingJobsForHyperParameterTuningJob), by name: the
    order SageMaker launched them in."""
    pages = client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=job, SortBy="Name", SortOrder="Ascending"
    )
    for page in pages:
        yield from page["TrainingJobSummaries"]


def _stopped_early(training: dict, tuning: dict) -> bool:
    """SageMaker's early stopping stopped this trial: it ended Stopped with SecondaryStatus Stopped (not
    MaxRuntimeExceeded or MaxWaitTimeExceeded, its own limits), its tuning job stops trials early (Auto), and the
    tuning job was not itself stopped (StopHyperParameterTuningJob stops its running trials the same way)."""
    return (
        (training["TrainingJobStatus"], training.get("SecondaryStatus")) == ("Stopped", "Stopped")
        and tuning["HyperParameterTuningJobConfig"].get("TrainingJobEarlyStoppingType") == "Auto"
        and tuning["HyperParameterTuningJobStatus"] not in ("Stopping", "Stopped")
    )


def _setting(summary: dict, searched: dict) -> dict:
    """The trial's setting, typed as the search space's values: what SageMaker chose (TunedHyperParameters, strings)
    and what the space fixed (a range of one value)."""
    _, fixed = specs.search_space(searched)
    chosen = {}
    for name, dimension in searched.items():
        if name in fixed:
            chosen[name] = fixed[name]
            continue
        value = summary["TunedHyperParameters"][name]
        bounds = dimension.get("values") or dimension["range"]
        chosen[name] = int(value) if all(isinstance(bound, int) for bound in bounds) else float(value)
    return chosen


def _outcome(hook, summary: dict, searched: dict, tuning: dict) -> dict:
    """One trial as tuning.json records it: its setting, its last validation scores and how it ended: completed,
    stopped (early, by SageMaker: ``_stopped_early``), else failed."""
    name = summary["TrainingJobName"]
    training = hook.describe_training_job(name)
    if training["TrainingJobStatus"] == "Completed":
        status = COMPLETED
    else:
        status = STOPPED if _stopped_early(training, tuning) else FAILED
    metrics = {each["MetricName"]: each["Value"] for each in training.get("FinalMetricDataList") or []}
    scored = status != FAILED and specs.VALIDATION_ACCURACY in metrics
    return {
        "name": name,
        "setting": _setting(summary, searched),
        "accuracy": metrics[specs.VALIDATION_ACCURACY] if scored else None,
        "f1": metrics.get(specs.VALIDATION_F1) if scored else None,
        "val_loss": metrics.get(specs.VALIDATION_LOSS) if scored else None,
        "epochs_run": None,  # SageMaker keeps each metric's last value, not how many epochs gave one
        "stopped_early": status == STOPPED,
        "status": status if scored else FAILED,
    }


@task(task_id=decisions.CHOOSE_SETTING, trigger_rule="none_failed")
def choose_setting(**context) -> dict | None:
    """The setting of the tuning job's best trial, and tuning.json (every trial's setting and scores, summarised as
    on every platform by tasks.tuning.results) beside the tuning job's trials on S3; None when tuning is off."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    arguments = _search(context)
    if arguments is None:
        log.info("tuning is off (tuning_trials is 0): train uses the form's setting")
        return None
    job = context["ti"].xcom_pull(task_ids="tune")["job"]
    hook, searched = SageMakerHook(aws_conn_id=aws_conn_id()), space(arguments)
    described = hook.describe_tuning_job(job)
    outcomes = [_outcome(hook, summary, searched, described) for summary in _trials(hook.conn, job)]
    plan = {
        "seed": arguments.seed,
        "objective": OBJECTIVE,
        "max_steps": arguments.max_steps,
        "early_stopping": arguments.early_stopping,
        "space": searched,
        "trials": [{"name": outcome["name"], "setting": outcome["setting"]} for outcome in outcomes],
    }
    try:
        tuning = summarise(plan, outcomes)
    except TaskError as error:  # no trial scored: another try reads the same trials
        raise AirflowFailException(f"{job}: {error}") from error
    uri = f"{arguments.output}/{job}/{TUNING}"
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    _s3_hook().load_string(json.dumps(tuning, indent=2), key, bucket, replace=True)
    best = tuning["best"]
    sagemakers = (described.get("BestTrainingJob") or {}).get("TrainingJobName")
    log.info(
        "%s: %d trials; best %s (validation accuracy %s, F1 %s; SageMaker's best: %s): %s; %s",
        job,
        len(outcomes),
        best["name"],
        best["accuracy"],
        best["f1"],
        sagemakers,
        best["setting"],
        uri,
    )
    return decisions.chosen_setting(tuning, uri)


def tune(staged):
    """tune (the tuning job, skipped when tuning_trials is 0) >> choose_setting; returns choose_setting's XCom."""
    operator = _job(StepTuningOperator, "tune", "tune", _tune_config, _tune_summary)
    chosen = choose_setting()
    staged >> operator >> chosen
    return chosen


# ---- train --------------------------------------------------------------------------------------------------------
def _training_request(
    context, params, name: str, staged: str, hyperparameters: dict, output: str, tuning: str | None = None
) -> dict:
    """The train step as a training job of ``params``: of the final model (with the search's ``tuning``.json), or
    of a tuning job's trials."""
    hours = params["max_runtime_hours"]
    _isolated_sources(base_model=params["base_model"])
    return specs.training_job(
        name,
        settings(),
        staged=staged,
        base_model=params["base_model"],
        hyperparameters=hyperparameters,
        output=output,
        checkpoints=f"{artefacts.run_folder(context)}/checkpoints",
        tensorboard=f"{artefacts.run_folder(context)}/tensorboard",
        instance_type=params["training_instance_type"],
        instance_count=params["training_instance_count"],
        max_runtime_seconds=hours * 3600,
        spot=params["spot_training"],
        max_wait_seconds=2 * hours * 3600,
        network=network(),
        tuning=tuning,
    )


def _train_config(context, name: str) -> dict:
    (params, chosen), staged = decisions.run_params(context), context["ti"].xcom_pull(task_ids="stage_dataset")
    decisions.skip_training_if_cached(production_model(context), staged["fingerprint"], params)
    hyperparameters = commands.values("train", params, model=None)
    output = f"{artefacts.run_folder(context)}/model"
    return _training_request(
        context, params, name, staged["uri"], hyperparameters, output, tuning=chosen and chosen["tuning"]
    )


def _train_summary(context, result: dict) -> dict:
    job = result["Training"]
    return {
        "job": job["TrainingJobName"],
        "model": job["ModelArtifacts"]["S3ModelArtifacts"],
        "billable_seconds": job.get("BillableTimeInSeconds"),
    }


def train(staged, tuned):
    operator = _job(StepTrainingOperator, "train", "train", _train_config, _train_summary, print_log=True)
    [staged, tuned] >> operator
    return operator.output


# ---- quantize -----------------------------------------------------------------------------------------------------
def compression_hardware(params) -> tuple[str, str]:
    """(the quantize job's instance type, its ``--target-hardware``): the endpoint's instance type, unless the
    run's ``compression_instance_type`` names another (decisions.compression_hardware)."""
    return decisions.compression_hardware(
        params["endpoint_instance_type"],
        params["compression_instance_type"],
        "SageMaker {}".format,
        "compression_instance_type",
    )


def _quantize_config(context, name: str) -> dict:
    params, ti = context["params"], context["ti"]
    inputs = {"model": ti.xcom_pull(task_ids="train")["model"], "data": staged_input(ti)}
    instance_type, target = compression_hardware(params)
    log.info("quantize measures on %s; the decision stands for %s", instance_type, target)
    command = commands.command("quantize", params, target_hardware=target)
    return _processing(context, name, "quantized", command, inputs, instance_type=instance_type)


def _quantize_summary(context, result: dict) -> dict:
    uri = _output_of(result)
    return {"model": as_prefix(uri)} | _result("quantize", uri)


def _unquantized(context) -> dict | None:
    return decisions.unquantized_candidate(context["params"], context["ti"].xcom_pull(task_ids="train"))


def quantize(staged, trained):
    operator = _job(
        StepProcessingOperator,
        "quantize",
        "quantize",
        _quantize_config,
        _quantize_summary,
        result_without_job=_unquantized,
    )
    [staged, trained] >> operator
    return operator.output


# ---- evaluate -----------------------------------------------------------------------------------------------------
def staged_input(ti) -> str:
    return as_prefix(ti.xcom_pull(task_ids="stage_dataset")["uri"])


def candidate_model(ti) -> str:
    """The quantize task's candidate: the INT8 or FP32 model it chose (a prefix, ending in ``/``), or the
    trained one (its model.tar.gz, one object)."""
    return ti.xcom_pull(task_ids="quantize")["model"]


def endpoint_model(hook, endpoint: str) -> dict | None:
    """The model the endpoint serves now (``model``: its data, ``version``: the SageMaker model, and what it
    was trained from: ``data_fingerprint``, ``config``), or None when there is no endpoint yet."""
    from botocore.exceptions import ClientError

    try:
        config = hook.describe_endpoint(endpoint)["EndpointConfigName"]
    except ClientError as error:
        if not_found(error):
            return None
        raise
    model_name = hook.describe_endpoint_config(config)["ProductionVariants"][0]["ModelName"]
    container = hook.describe_model(model_name)["PrimaryContainer"]
    environment = container.get("Environment") or {}
    return {
        "model": container.get("ModelDataUrl") or container["ModelDataSource"]["S3DataSource"]["S3Uri"],
        "version": model_name,
        "data_fingerprint": environment.get(specs.DATA_FINGERPRINT_ENV),
        "config": json.loads(environment.get(specs.TRAINING_CONFIG_ENV, "null")),
        "capture": specs.environment_capture(environment),
    }


def production_model(context) -> dict | None:
    """The model the endpoint serves: SageMaker's production model."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return endpoint_model(SageMakerHook(aws_conn_id=aws_conn_id()), settings().endpoint_name)


def _evaluate_config(context, name: str) -> dict:
    params, ti = context["params"], context["ti"]
    inputs = {"model": candidate_model(ti), "data": staged_input(ti)}
    if champion := production_model(context):
        inputs["champion"] = champion["model"]
    return _processing(
        context, name, "evaluation", commands.command("evaluate", params, **policy.thresholds(context)), inputs
    )


def _evaluate_summary(context, result: dict) -> dict:
    uri = _output_of(result)
    persist_evaluation(context, uri, candidate_model(context["ti"]), aws_conn_id())
    report, _ = step_result.RESULTS["evaluate"]
    return {"evaluation": f"{uri}/{report}", "model": candidate_model(context["ti"])} | _result("evaluate", uri)


def evaluate(staged, candidate):
    operator = _job(StepProcessingOperator, "evaluate", "evaluate", _evaluate_config, _evaluate_summary)
    with_links(operator, *EVALUATION_LINKS)
    [staged, candidate] >> operator
    return operator.output


# ---- register / reject --------------------------------------------------------------------------------------------
def _package(context) -> dict:
    ti = context["ti"]
    lineage = {
        "data_fingerprint": ti.xcom_pull(task_ids="stage_dataset")["fingerprint"],
        "base_model": context["params"]["base_model"],
        "run_id": context["run_id"],
    }
    evaluation = ti.xcom_pull(task_ids="evaluate")
    # One version per run, task and model: clearing quantize/evaluate registers the new model, and a reject
    # never finds register's version (nor the other way round).
    once = (context["dag"].dag_id, context["run_id"], ti.task_id, evaluation.get("model_digest") or evaluation["model"])
    package = specs.model_package(settings(), evaluation, lineage, client_token=specs.client_token(*once))
    return package | {"ModelPackageDescription": "{} run {}: {} of model {}".format(*once)}


# The registry's status (tasks/endpoint/registry.py) of a decided model package's approval status: one word per
# state in every platform's Asset events. register and reject end only once the package is decided.
REGISTRY_STATUS = {"Approved": "approved", "Rejected": "archived"}


def registered(context, version: str, status: str) -> dict:
    """This run's model as a registry entry has it (assets.model_event): the package's version and status, the
    evaluate step's figures and model, the staged data's fingerprint."""
    ti = context["ti"]
    evaluation = ti.xcom_pull(task_ids="evaluate")
    return {
        "version": version,
        "status": status,
        "metrics": evaluation,
        "data_fingerprint": ti.xcom_pull(task_ids="stage_dataset")["fingerprint"],
        "model": evaluation["model"],
    }


def record_version(context, entry: dict) -> None:
    """``post_execute`` of register and reject (after the approval wait, too): the package version they return is
    the task's event on MODEL_CANDIDATES."""
    model_event(context, MODEL_CANDIDATES, registered(context, entry["version"], REGISTRY_STATUS[entry["status"]]))


def _model_version(task_id: str, approval: str | None) -> RunModelVersionOperator:
    return RunModelVersionOperator(
        task_id=task_id,
        outlets=[MODEL_CANDIDATES],
        post_execute=record_version,
        build_extras=_package,
        approval=approval,
        aws_conn_id=AWS_CONN_ID,
        package_group_name="{{ var.value.get('nlp_model_package_group', 'nlp-paraphrase') }}",
        package_group_desc="Paraphrase classifiers (BERT, INT8) trained by the nlp_sagemaker DAG",
        approval_poll=timedelta(minutes=1),
        approval_timeout=limits.APPROVAL_TIMEOUT,
    )


def register(evaluation):
    """The promoted candidate, Approved or PendingManualApproval per Param (then waits for a person)."""
    operator = _model_version("register", None)
    evaluation >> operator
    return operator.output


def reject(evaluation):
    """The rejected candidate, registered Rejected so the registry keeps its metrics and lineage."""
    operator = _model_version("reject", "Rejected")
    evaluation >> operator
    return operator.output


# ---- rollout ------------------------------------------------------------------------------------------------------
def rollout_name(kind: str, context) -> str:
    """The model or endpoint config of this run's candidate: named by the run and the model's content digest,
    so clearing quantize or evaluate in a run makes a new model and config, never serves the old one again."""
    evaluation = context["ti"].xcom_pull(task_ids="evaluate")
    digest = evaluation.get("model_digest") or f"sha256:{hashlib.sha256(evaluation['model'].encode()).hexdigest()}"
    return run_name(kind, context, digest=digest)


def capture_root() -> str:
    """Where the endpoint's traffic is captured (artefacts.capture_uri of the nlp_sagemaker DAG), which the
    monitor reads: the server's records, and SageMaker's own capture in its folder (specs.SAGEMAKER_CAPTURE)."""
    return artefacts.capture_uri(artefacts.root(), DAG_ID)


def capture(params, current: Mapping | None = None) -> dict:
    """The server's capture settings of the run (commands.capture_flags: ``{}`` when ``capture_sample_rate`` is
    0, ``current`` when it is null); refused when network isolation would keep the server from writing them
    (specs.check_capture)."""
    try:
        flags = commands.capture_flags(params, capture_root(), current)
        if flags:
            specs.check_capture(network())
    except (ConfigError, ValueError) as error:
        raise AirflowFailException(str(error)) from error
    return flags


def rollout_capture(params) -> dict:
    """The capture the run rolls out: with ``capture_sample_rate`` null, the one the live endpoint's server runs
    with (its model's Environment, ``endpoint_model``), none without an endpoint; else the Params' (``capture``)."""
    live = production_model(None) if params["capture_sample_rate"] is None else None
    return capture(params, live["capture"] if live else None)


def _model_config(context) -> dict:
    ti, evaluation = context["ti"], context["ti"].xcom_pull(task_ids="evaluate")
    lineage = {
        specs.DATA_FINGERPRINT_ENV: ti.xcom_pull(task_ids="stage_dataset")["fingerprint"],
        specs.TRAINING_CONFIG_ENV: json.dumps(
            decisions.training_config(decisions.run_params(context)[0]), sort_keys=True
        ),
    }
    if evaluation.get("model_digest"):  # the server refuses the model's files unless they have it
        lineage[MODEL_DIGEST_ENV] = evaluation["model_digest"]
    return specs.model(
        rollout_name("model", context),
        settings(),
        evaluation["model"],
        lineage,
        network=network(),
        capture=rollout_capture(context["params"]),
    )


def _endpoint_config(context) -> dict:
    """The run's endpoint config; with capture on, SageMaker's own DataCaptureConfig at the server's rate, beside
    the server's capture."""
    params, data_capture = context["params"], None
    if flags := rollout_capture(params):
        data_capture = specs.data_capture_config(
            flags["capture_dir"],
            sample_rate=flags["capture_sample_rate"],
            text=flags["capture_text"],
            kms_key_id=settings().kms_key_id,
        )
    return specs.endpoint_config(
        rollout_name("config", context),
        rollout_name("model", context),
        instance_type=params["endpoint_instance_type"],
        instance_count=params["endpoint_instance_count"],
        data_capture=data_capture,
    )


def rollout_record(context) -> str:
    """Where the run keeps its rollout's record (operators.sagemaker.RolloutRecord)."""
    return f"{artefacts.run_folder(context)}/rollout/record.json"


def _deployment(params) -> dict:
    """The blue/green DeploymentConfig of the run, checked against the new fleet's size."""
    try:
        specs.check_fleet(params["blue_green"], params["endpoint_instance_count"])
        return specs.deployment_config(params["blue_green"])
    except ValueError as error:
        raise AirflowFailException(str(error)) from error


def _rollout(context) -> Rollout:
    return Rollout(
        endpoint=settings().endpoint_name,
        config=rollout_name("config", context),
        deployment=_deployment(context["params"]),
        record_uri=rollout_record(context),
    )


def deploy(entry):
    """create_model >> create_endpoint_config >> deploy; returns deploy's XCom (endpoint, config, previous)."""
    model = RunModelOperator(
        task_id="create_model",
        build_config=_model_config,
        aws_conn_id=AWS_CONN_ID,
        trigger_rule="none_failed_min_one_success",
    )
    config = RunEndpointConfigOperator(
        task_id="create_endpoint_config", build_config=_endpoint_config, aws_conn_id=AWS_CONN_ID
    )
    endpoint = VerifiedEndpointOperator(
        task_id="deploy",
        build_rollout=_rollout,
        aws_conn_id=AWS_CONN_ID,
        deferrable=True,
        check_interval=CHECK_INTERVAL,
    )
    entry >> model >> config >> endpoint
    return endpoint.output


@task
def smoke_test(deployed: dict) -> dict:
    """Send the smoke pairs (tasks/serving/contract.py) through InvokeEndpoint; the answer must have the contract's shape."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    runtime = AwsBaseHook(aws_conn_id=aws_conn_id(), client_type="sagemaker-runtime").conn
    response = runtime.invoke_endpoint(
        EndpointName=deployed["endpoint"],
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(contract.SMOKE_REQUEST),
    )
    body, problems = contract.answer_problems(response["Body"].read())
    if problems:
        raise AirflowException(f"smoke test of endpoint {deployed['endpoint']} failed: {'; '.join(problems)}")
    log.info("endpoint %s (%s) answers: %s", deployed["endpoint"], deployed["config"], body["labels"])
    return {"endpoint": deployed["endpoint"], "config": deployed["config"], "model_version": body.get("model_version")}


@task(outlets=[MODEL_PRODUCTION])
def mark_production(entry: dict, smoke: dict, **context) -> dict:
    """The model package now served is production; the one before it is archived (both stay Approved).

    The stage is the package's ``ModelLifeCycle`` (what SageMaker Studio shows); every page of the group is
    read, newest first, so the production package is found however many versions the group holds."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    sagemaker = SageMakerHook(aws_conn_id=aws_conn_id()).conn
    production = specs.life_cycle("production")

    def mark(arn: str, stage: str) -> None:
        sagemaker.update_model_package(ModelPackageArn=arn, ModelLifeCycle=specs.life_cycle(stage))

    for summary in model_packages(sagemaker, settings().model_package_group, ModelApprovalStatus="Approved"):
        in_production = (summary.get("ModelLifeCycle") or {}).get("Stage") == production["Stage"]
        if in_production and summary["ModelPackageArn"] != entry["arn"]:
            mark(summary["ModelPackageArn"], "archived")
    mark(entry["arn"], "production")
    log.info("%s is in production on %s", entry["version"], smoke["endpoint"])
    model_event(context, MODEL_PRODUCTION, registered(context, entry["version"], "production"))
    return entry | {"stage": "production"}


@task(trigger_rule="one_failed")
def rollback(**context) -> None:
    """Put the endpoint back on the config it served before this run first touched it (the rollout's record,
    written once by deploy's first try), if it now serves a config this run asked for."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    rollout = RolloutRecord(_s3_hook().get_conn(), rollout_record(context))
    record, _ = rollout.read()
    if not record or not record["previous_config"]:
        raise AirflowSkipException("this run created the endpoint or never reached it: no earlier config to restore")
    endpoint, previous = record["endpoint"], record["previous_config"]
    hook = SageMakerHook(aws_conn_id=aws_conn_id())
    serving = settled(hook, endpoint)["EndpointConfigName"]
    if serving not in record["requested"]:
        raise AirflowSkipException(f"{endpoint} serves {serving}, not a config of this run: nothing to roll back")
    log.info("rolling %s back from %s to %s", endpoint, serving, previous)
    hook.update_endpoint(
        {"EndpointName": endpoint, "EndpointConfigName": previous},
        wait_for_completion=True,
        check_interval=CHECK_INTERVAL,
    )
    restored = hook.describe_endpoint(endpoint)["EndpointConfigName"]
    if restored != previous:
        raise AirflowException(f"rollback of {endpoint} to {previous} did not take: it serves {restored}")
    rollout.restored(serving)


def settled(hook, endpoint: str) -> dict:
    """The endpoint once no update is under way: an update deploy's wait gave up on may still switch it to
    this run's config, which rollback must then undo, not miss."""
    for _ in range(attempts(MAX_EXECUTION_SECONDS, CHECK_INTERVAL)):
        state = hook.describe_endpoint(endpoint)
        if state["EndpointStatus"] not in ENDPOINT_BUSY:
            return state
        log.info("%s is %s: waiting for it to settle before rolling back", endpoint, state["EndpointStatus"])
        time.sleep(CHECK_INTERVAL)
    raise AirflowException(f"{endpoint} is still {state['EndpointStatus']}: rollback cannot update it yet")


# ---- monitor (the nlp_monitor_sagemaker DAG) ------------------------------------------------------------------------
def _default_processing_instance() -> str:
    """The processing instance type of the pipeline's form, for the monitor DAG, whose form does not offer it."""
    from nlp_pipeline.params import sagemaker_params

    return sagemaker_params()["processing_instance_type"].value


def _monitor_config(context, name: str, *, production_task: str) -> dict:
    """``monitor`` as a processing job of the monitor DAG's run (monitoring.py's platform contract): it reads the
    window's capture records (``capture_root``) and the production model's traffic baseline (the model card in its
    data, a model.tar.gz or a prefix) from S3 itself, only what the window needs, and writes monitoring.json and
    monitoring.png to its output, ``ROOT/nlp_monitor_sagemaker/RUN_KEY/monitoring/JOB/``."""
    from nlp_pipeline import monitoring

    params, production = context["params"], context["ti"].xcom_pull(task_ids=production_task)
    net = network()
    if net is not None and net.isolation:
        # The training DAG refuses capture under isolation (specs.check_capture): nothing to monitor, which is not
        # a failure (one notice an hour); the run is skipped with the reason.
        reason = (
            "network isolation is on (the Variable nlp_sagemaker_network): the endpoint captures nothing under "
            "network isolation (capture_sample_rate is refused) and a monitor job could not read S3. Set "
            "EnableNetworkIsolation to false to capture and monitor, or pause nlp_monitor_sagemaker"
        )
        log.info("skipping the monitor: %s", reason)
        raise AirflowSkipException(reason)
    arguments = monitoring.monitor_arguments(context, production, capture_root())
    return specs.processing_job(
        name,
        settings(),
        arguments=commands.command("monitor", params, **arguments, output=PROCESSING_OUTPUT),
        inputs={},
        output=step_prefix(context, "monitoring", name),
        instance_type=params.get("processing_instance_type") or _default_processing_instance(),
        max_runtime_seconds=int(limits.MONITOR_LIMIT.total_seconds()),
        network=net,
    )


def _monitor_summary(context, result: dict) -> dict:
    uri = _output_of(result)
    return {"uri": uri} | _result("monitor", uri)


def monitor(production):
    """The monitor step on the production model's window of traffic, as a processing job (task ``monitor``);
    returns the step's result (tasks/runtime/step_result.py) and ``uri``, its monitoring folder on S3."""
    from nlp_pipeline import monitoring

    operator = _job(
        StepProcessingOperator,
        monitoring.MONITOR,
        "monitor",
        functools.partial(_monitor_config, production_task=production.operator.task_id),
        _monitor_summary,
    )
    production >> operator
    return operator.output
