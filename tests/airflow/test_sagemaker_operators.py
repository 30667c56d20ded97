"""The SageMaker job and registry operators of nlp_sagemaker, run in this process against the fake (moto).

Each operator's ``execute`` is called as a task runner would call it, with a context of this run and try;
``TaskDeferred`` is what a deferrable operator raises when it hands the wait to the triggerer, and
``run_trigger`` runs that trigger as the triggerer would, on the fake's clock.
"""

import json
import sys

import pytest

from tests.airflow.sagemaker_context import context, register_operator, run_trigger
from tests.conftest import REPO
from tests.fakes.sagemaker import IMAGE, ROLE

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import sagemaker  # noqa: E402
from nlp_pipeline.assets import MODEL_PRODUCTION  # noqa: E402
from nlp_pipeline.operators.sagemaker import (  # noqa: E402
    StepProcessingOperator,
    StepTrainingOperator,
    StepTuningOperator,
    run_name,
)
from nlp_pipeline.specs import sagemaker as specs  # noqa: E402

ENDPOINT = "nlp-paraphrase"


def processing_jobs(client) -> list[str]:
    return sorted(job["ProcessingJobName"] for job in client.list_processing_jobs()["ProcessingJobSummaries"])


def stage_operator() -> StepProcessingOperator:
    return StepProcessingOperator(
        task_id="stage_dataset",
        kind="stage",
        build_config=sagemaker._stage_config,
        summarize=sagemaker._stage_summary,
        aws_conn_id="aws_default",
        deferrable=True,
        check_interval=30,
    )


def deferred(operator, run):
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as raised:
        operator.execute(run)
    return raised.value


def test_a_retry_waits_for_the_job_its_run_left_running_and_never_starts_a_second(aws):
    aws.fake.hold_jobs = True  # jobs stay InProgress: a worker was lost while SageMaker ran the job
    first = context("stage_dataset", try_number=1)
    job = deferred(stage_operator(), first).trigger.job_name
    assert processing_jobs(aws.sagemaker) == [job] == [run_name("stage", first, 1)]

    for again in (context("stage_dataset", try_number=1), context("stage_dataset", try_number=2)):
        assert deferred(stage_operator(), again).trigger.job_name == job
    assert processing_jobs(aws.sagemaker) == [job], "the same try resumed, then a retry: still one job"

    aws.fake.backend().processing_jobs[job].processing_job_status = "Failed"
    third = context("stage_dataset", try_number=3)
    deferred(stage_operator(), third)
    assert processing_jobs(aws.sagemaker) == sorted([job, run_name("stage", third, 3)]), "a failed job is replaced"


def completed(aws, job: str, report: dict) -> None:
    """Mark ``job`` Completed with ``report`` (the stage's manifest) in its output, as if it had run."""
    description = aws.sagemaker.describe_processing_job(ProcessingJobName=job)
    output = description["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    bucket, key = output.removeprefix("s3://").split("/", 1)
    aws.s3["client"].put_object(Bucket=bucket, Key=f"{key}/manifest.json", Body=json.dumps(report).encode())
    aws.fake.backend().processing_jobs[job].processing_job_status = "Completed"


def test_a_job_an_earlier_try_completed_is_reused_on_the_same_request_and_rerun_on_another(aws):
    aws.fake.hold_jobs = True
    first = context("stage_dataset", try_number=1)
    job = deferred(stage_operator(), first).trigger.job_name
    completed(aws, job, {"fingerprint": "sha256:ab", "splits": {"train": {"rows": 8}}})

    # The worker was lost after the job completed: the retry takes its result and starts nothing.
    result = stage_operator().execute(context("stage_dataset", try_number=2))
    assert result["fingerprint"] == "sha256:ab" and result["uri"].endswith(f"/{job}")
    assert processing_jobs(aws.sagemaker) == [job]

    # Another request (the source changed): the completed job is not this request's, so a new one runs.
    other = context("stage_dataset", try_number=3, source="s3://data/mrpc-v2/")
    waiting = deferred(stage_operator(), other)
    assert waiting.trigger.job_name == run_name("stage", other, 3)
    assert waiting.timeout.total_seconds() >= waiting.trigger.attempts * waiting.trigger.waiter_delay
    assert len(processing_jobs(aws.sagemaker)) == 2

    # Back on the first inputs: try 3's job, still running on other inputs, is stopped, not waited for, and
    # try 1's completed job is this request's again.
    assert stage_operator().execute(context("stage_dataset", try_number=4))["uri"].endswith(f"/{job}")
    stopped = aws.sagemaker.describe_processing_job(ProcessingJobName=run_name("stage", other, 3))
    assert stopped["ProcessingJobStatus"] in ("Stopping", "Stopped")


def test_job_waits_cover_the_jobs_own_limit_a_two_hour_training_job_is_waited_for(aws, monkeypatch):
    """The provider waits 60 polls (30 minutes at 30 s) unless told; SageMaker would train on, and bill."""
    aws.fake.hold_jobs = True
    run = context(
        "train",
        xcom={("stage_dataset", "return_value"): {"uri": "s3://b/run/staged/job", "fingerprint": "sha256:0f"}},
        max_runtime_hours=3,
        spot_training=True,
    )
    operator = StepTrainingOperator(
        task_id="train",
        kind="train",
        build_config=sagemaker._train_config,
        summarize=sagemaker._train_summary,
        aws_conn_id="aws_default",
        deferrable=True,
        check_interval=30,
    )
    monkeypatch.setattr(sagemaker, "production_model", lambda context: None)
    trigger = deferred(operator, run).trigger
    # Spot: MaxWaitTimeInSeconds (6 h) and an hour to provision, in polls of 30 s.
    assert trigger.attempts * trigger.waiter_delay >= 6 * 3600 + 3600
    job = aws.fake.backend().training_jobs[trigger.job_name]
    aws.fake.hold_jobs = False
    aws.fake.job_seconds["training"] = 2 * 3600
    aws.fake.finish_held(job)  # the job runs now and takes two hours of the fake's clock
    event = run_trigger(trigger, aws.fake, monkeypatch)
    assert event["status"] != "timeout", event
    assert event["polls"] >= 2 * 3600 / 30 - 1


def stage_that_fails_on_bad_data(aws) -> tuple[StepProcessingOperator, dict]:
    bucket = aws.s3["bucket"]
    aws.s3["client"].put_object(Bucket=bucket, Key="raw/train.tsv", Body=b"not\ta\tdata set\n")
    run = context("stage_dataset", source=f"s3://{bucket}/raw/", base_model="hf-internal-testing/tiny-bert")
    return stage_operator(), run


def test_a_processing_job_that_failed_on_bad_input_runs_once(aws, monkeypatch):
    """AWS puts the step's words (/opt/ml/output/message) in ExitMessage, and its own in FailureReason."""
    from airflow.sdk.exceptions import AirflowFailException

    operator, run = stage_that_fails_on_bad_data(aws)
    trigger = deferred(operator, run).trigger
    aws.fake.close()  # the job has run
    event = run_trigger(trigger, aws.fake, monkeypatch)
    description = aws.sagemaker.describe_processing_job(ProcessingJobName=trigger.job_name)
    assert "(exit 3)" in description["ExitMessage"] and "(exit 3)" not in description["FailureReason"]
    with pytest.raises(AirflowFailException, match=r"failed on bad data, not retried: .*\(exit 3\)"):
        operator.execute_complete(run, event)
    assert processing_jobs(aws.sagemaker) == [trigger.job_name]


def test_other_job_failures_are_retried(aws):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    aws.fake.hold_jobs = True
    run = context("stage_dataset")
    job = deferred(stage_operator(), run).trigger.job_name
    backend_job = aws.fake.backend().processing_jobs[job]
    backend_job.processing_job_status, backend_job.failure_reason = "Failed", "InternalServerError: capacity"
    event = {"status": "failed", "job_name": job, "message": "InternalServerError: capacity"}
    with pytest.raises(AirflowException, match="capacity") as raised:
        stage_operator().execute_complete(run, event)
    assert not isinstance(raised.value, AirflowFailException), "other failures are retried"


# ---- the model registry -------------------------------------------------------------------------------------------
EVALUATION = {
    "model": "s3://b/run/quantized/job/",
    "evaluation": "s3://b/run/evaluation/job/evaluation.json",
    "accuracy": 0.86,
    "f1": 0.89,
    "decision": "promote",
    "model_digest": "sha256:" + "ab" * 32,
}


def register_context(run_id: str = "manual__2026-04-01", **params) -> dict:
    xcom = {("evaluate", "return_value"): EVALUATION, ("stage_dataset", "return_value"): {"fingerprint": "sha256:0f"}}
    return context("register", run_id=run_id, xcom=xcom, **params)


def test_a_package_pending_manual_approval_holds_the_rollout_until_a_person_decides(aws):
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException

    run = register_context(model_approval="PendingManualApproval")
    for _attempt in (1, 2):  # a retried register adds no second version
        waiting = deferred(register_operator(), run)
    arn = waiting.kwargs["arn"]
    packages = aws.sagemaker.list_model_packages(ModelPackageGroupName="nlp-paraphrase")["ModelPackageSummaryList"]
    assert [package["ModelPackageArn"] for package in packages] == [arn]
    assert type(waiting.trigger).__name__ == "TimeDeltaTrigger" and waiting.method_name == "check_approval"
    [request] = aws.fake.requests_of("create_model_package")
    assert request["ModelApprovalStatus"] == "PendingManualApproval"
    assert request["InferenceSpecification"]["Containers"] == [
        {
            "Image": IMAGE,
            "ModelDataSource": {
                "S3DataSource": {
                    "S3Uri": "s3://b/run/quantized/job/",
                    "S3DataType": "S3Prefix",
                    "CompressionType": "None",
                }
            },
        }
    ]
    group = aws.sagemaker.describe_model_package_group(ModelPackageGroupName="nlp-paraphrase")
    assert group["ModelPackageGroupDescription"] == "Paraphrase classifiers", "the provider passes the package's"

    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred):  # still pending after a minute: waits on, holding no worker
        register_operator().check_approval(run, arn=arn, waited_seconds=60)
    with pytest.raises(AirflowException, match="still waits for approval after 0:02:00"):
        register_operator().check_approval(run, arn=arn, waited_seconds=120)

    aws.sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    entry = register_operator().check_approval(run, arn=arn, waited_seconds=60)
    assert entry == {"arn": arn, "version": "nlp-paraphrase/1", "status": "Approved"}

    rejected_run = register_context(run_id="manual__2026-04-02", model_approval="PendingManualApproval")
    arn = deferred(register_operator(), rejected_run).kwargs["arn"]
    aws.sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected")
    with pytest.raises(AirflowSkipException, match="nlp-paraphrase/2 was rejected in the model registry: no rollout"):
        register_operator().check_approval(rejected_run, arn=arn, waited_seconds=60)


def add_packages(aws, count: int) -> list[str]:
    """``count`` Approved versions of earlier runs in the group."""
    aws.sagemaker.create_model_package_group(ModelPackageGroupName="nlp-paraphrase")
    return [
        aws.sagemaker.create_model_package(
            ModelPackageGroupName="nlp-paraphrase",
            ModelPackageDescription=f"nlp_sagemaker run earlier-{index}",
            ModelApprovalStatus="Approved",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://b/{index}/model.tar.gz"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )["ModelPackageArn"]
        for index in range(count)
    ]


def test_past_many_pages_a_retried_register_adds_no_version_and_production_is_archived(aws):
    arns = add_packages(aws, 150)
    aws.sagemaker.update_model_package(ModelPackageArn=arns[140], ModelLifeCycle=specs.life_cycle("production"))
    run = register_context()
    entry = register_operator().execute(run)
    assert register_operator().execute(register_context()) == entry, "the retry finds its version"
    assert entry["version"] == "nlp-paraphrase/151"
    pages = aws.sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName="nlp-paraphrase")
    assert sum(len(page["ModelPackageSummaryList"]) for page in pages) == 151

    sagemaker.mark_production.function(entry, {"endpoint": ENDPOINT}, **run)
    extra = run["outlet_events"][MODEL_PRODUCTION].extra
    assert (extra["version"], extra["status"], extra["uri"]) == (entry["version"], "production", EVALUATION["model"])
    assert (extra["accuracy"], extra["data_fingerprint"]) == (0.86, "sha256:0f")
    stages = {
        arn: aws.sagemaker.describe_model_package(ModelPackageName=arn).get("ModelLifeCycle", {}).get("Stage")
        for arn in (arns[140], entry["arn"])
    }
    assert stages == {
        arns[140]: specs.life_cycle("archived")["Stage"],
        entry["arn"]: specs.life_cycle("production")["Stage"],
    }


def test_a_new_model_in_the_run_is_a_new_version_and_reject_never_takes_registers(aws):
    """Clearing quantize or evaluate changes the candidate: its version must be new, with its own metrics."""
    first = register_operator().execute(register_context())
    new_model = EVALUATION | {"model_digest": "sha256:" + "cd" * 32, "accuracy": 0.9}
    run = register_context()
    run["ti"].xcom[("evaluate", "return_value")] = new_model
    second = register_operator().execute(run)
    rejected = register_operator("reject").execute(context("reject", xcom=run["ti"].xcom))
    assert [first["version"], second["version"], rejected["version"]] == [f"nlp-paraphrase/{n}" for n in (1, 2, 3)]
    [_, request, _] = aws.fake.requests_of("create_model_package")
    assert request["CustomerMetadataProperties"]["accuracy"] == "0.9"


def test_settings_name_what_is_missing_and_never_take_the_non_root_image(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path))
    with pytest.raises(AirflowFailException, match=r"nlp_artefact_root on S3 \(s3://bucket/prefix\), got '/"):
        sagemaker.settings()
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/artefacts")
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_ROLE_ARN", ROLE)
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE)  # the pods' non-root image: SageMaker cannot run it
    with pytest.raises(AirflowFailException, match=r"Variable\(s\) nlp_sagemaker_image: the IAM role"):
        sagemaker.settings()
    monkeypatch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_IMAGE", f"{IMAGE}-sagemaker")
    assert sagemaker.settings().image_uri == f"{IMAGE}-sagemaker"


def test_a_network_variable_puts_the_jobs_in_the_vpc_and_isolation_refuses_what_they_cannot_fetch(aws):
    from airflow.sdk.exceptions import AirflowFailException

    network = {"Subnets": ["subnet-0abc1234"], "SecurityGroupIds": ["sg-0abc1234"], "EnableNetworkIsolation": True}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_NETWORK", json.dumps(network))
        aws.fake.hold_jobs = True
        job = deferred(stage_operator(), context("stage_dataset", base_model="s3://b/models/bert/")).trigger.job_name
        with pytest.raises(AirflowFailException, match="network isolation is on, so a job cannot fetch base_model"):
            stage_operator().execute(context("stage_dataset", try_number=2, base_model="bert-base-uncased"))
        patch.setenv("AIRFLOW_VAR_NLP_SAGEMAKER_NETWORK", json.dumps(network | {"Subnets": []}))
        with pytest.raises(AirflowFailException, match="nlp_sagemaker_network is not valid: .*Subnets"):
            sagemaker.network()
    described = aws.sagemaker.describe_processing_job(ProcessingJobName=job)
    assert described["NetworkConfig"] == {
        "VpcConfig": {"Subnets": ["subnet-0abc1234"], "SecurityGroupIds": ["sg-0abc1234"]},
        "EnableNetworkIsolation": True,
    }


def test_s3_folders_are_prefixes_whatever_their_name(aws):
    bucket, client = aws.s3["bucket"], aws.s3["client"]
    client.put_object(Bucket=bucket, Key="models/bert-v1.0/config.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="models/bert-v1.0-old/config.json", Body=b"{}")
    client.put_object(Bucket=bucket, Key="run/model.tar.gz", Body=b"x")
    assert sagemaker.as_input(f"s3://{bucket}/models/bert-v1.0") == f"s3://{bucket}/models/bert-v1.0/"
    assert sagemaker.as_input(f"s3://{bucket}/run/model.tar.gz") == f"s3://{bucket}/run/model.tar.gz"
    assert sagemaker.as_input(f"s3://{bucket}/models/") == f"s3://{bucket}/models/"


def test_names_are_valid_sagemaker_names_per_run_and_try():
    run = context("train")
    names = {
        run_name(kind, run, try_number)
        for kind in ("stage", "quantize", "evaluate", "train")
        for try_number in (1, 2, 99)
    }
    assert len(names) == 12 and all(len(name) <= 63 for name in names)
    assert run_name("train", run, 1) == run_name("train", context("train"), 1), "deterministic"
    assert run_name("train", run, 1) != run_name("train", context("train", run_id="manual__other"), 1)


def test_the_training_jobs_whole_log_reaches_the_task_log_when_it_ends(aws, monkeypatch, capfd):
    """The wait is deferred, so nothing streams meanwhile; the job's CloudWatch log is copied in at its end."""
    aws.fake.hold_jobs = True
    run = context(
        "train",
        xcom={("stage_dataset", "return_value"): {"uri": "s3://b/run/staged/job", "fingerprint": "sha256:0f"}},
    )
    monkeypatch.setattr(sagemaker, "production_model", lambda context: None)
    operator = StepTrainingOperator(
        task_id="train",
        kind="train",
        build_config=sagemaker._train_config,
        summarize=sagemaker._train_summary,
        aws_conn_id="aws_default",
        check_interval=30,
        print_log=True,
    )
    job = deferred(operator, run).trigger.job_name
    aws.fake._log("/aws/sagemaker/TrainingJobs", f"{job}/algo-1-1", "epoch 1/1: validation accuracy 0.81, F1 0.86")
    aws.fake.backend().training_jobs[job].training_job_status = "Completed"
    capfd.readouterr()
    result = operator.execute_complete(run, {"status": "success", "job_name": job})
    assert result["job"] == job
    assert "epoch 1/1: validation accuracy 0.81, F1 0.86" in "".join(capfd.readouterr())


# ---- tuning ---------------------------------------------------------------------------------------------------------
def tune_operator() -> StepTuningOperator:
    return StepTuningOperator(
        task_id="tune",
        kind="tune",
        build_config=sagemaker._tune_config,
        summarize=sagemaker._tune_summary,
        aws_conn_id="aws_default",
        deferrable=True,
        check_interval=30,
    )


def staged_on_s3(aws) -> dict:
    """The stage step's output on S3, as the tuning job's channels name it (the provider's hook checks they exist)."""
    bucket = aws.s3["bucket"]
    for key in ("train/part-0", "validation/part-0", "manifest.json", "tokenizer/vocab.txt"):
        aws.s3["client"].put_object(Bucket=bucket, Key=f"run/staged/job/{key}", Body=b"x")
    return {("stage_dataset", "return_value"): {"uri": f"s3://{bucket}/run/staged/job", "fingerprint": "sha256:0f"}}


def scores_by_learning_rate(fake, monkeypatch) -> None:
    """Each trial logs the train step's epoch line; its validation accuracy grows with its learning rate."""

    def run(arguments, root, environment):
        learning_rate = float(json.loads((root / "input/config/hyperparameters.json").read_text())["learning_rate"])
        accuracy = 0.5 + learning_rate * 100
        return 0, (
            f"epoch 1: train loss 0.5000, validation loss 0.4000, validation accuracy {accuracy:.6f}, "
            f"F1 {accuracy - 0.1:.6f}, 10.0 samples/s"
        )

    monkeypatch.setattr(fake, "_run", run)


def test_the_tune_task_is_skipped_when_tuning_is_off_and_choose_setting_hands_train_nothing(aws):
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="tuning is off \\(tuning_trials is 0\\)"):
        tune_operator().execute(context("tune", xcom=staged_on_s3(aws), tuning_trials=0))
    assert aws.sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"] == []
    assert sagemaker.choose_setting.function(**context("choose_setting", tuning_trials=0)) is None


def test_the_tuning_job_runs_once_per_run_and_choose_setting_summarises_its_trials(aws, monkeypatch):
    scores_by_learning_rate(aws.fake, monkeypatch)
    aws.fake.page_size = 2  # choose_setting must follow NextToken
    ranges = {"learning_rate_range": [1e-4, 1e-3], "epochs_range": [1, 2], "batch_sizes": [8, 16]}
    params = {"tuning_trials": 3, "tuning_parallel_jobs": 2, "tuning_max_steps": 4, "seed": 5} | ranges
    run = context("tune", xcom=staged_on_s3(aws), **params)
    trigger = deferred(tune_operator(), run).trigger
    job = trigger.job_name
    assert job == specs.tuning_job_name("20260401T000000Z", run["run_id"], 1)
    again = context("tune", try_number=2, xcom=run["ti"].xcom, **params)
    assert deferred(tune_operator(), again).trigger.job_name == job, "a retry waits for its run's tuning job"
    [request] = aws.fake.requests_of("create_hyper_parameter_tuning_job")
    assert request["TrainingJobDefinition"]["StaticHyperParameters"]["max_steps"] == "4"
    assert run["ti"].xcom[("tune", "nlp_sagemaker_tuning_job")]["job_name"] == job, "the console link"

    event = run_trigger(trigger, aws.fake, monkeypatch)
    tuned = tune_operator().execute_complete(run, event)
    assert tuned["job"] == job and tuned["counters"]["Completed"] == 3

    chosen = sagemaker.choose_setting.function(
        **context("choose_setting", xcom={("tune", "return_value"): tuned}, **params)
    )
    trials = [
        summary
        for page in aws.sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=job
        )
        for summary in page["TrainingJobSummaries"]
    ]
    best = max(trials, key=lambda trial: float(trial["TunedHyperParameters"]["learning_rate"]))
    tuned_setting = best["TunedHyperParameters"]
    assert chosen["setting"] == {
        "learning_rate": float(tuned_setting["learning_rate"]),
        "epochs": int(tuned_setting["epochs"]),
        "batch_size": int(tuned_setting["batch_size"]),
        "warmup_ratio": float(tuned_setting["warmup_ratio"]),
        "weight_decay": float(tuned_setting["weight_decay"]),
    }
    assert (chosen["trials"], chosen["best"]["name"]) == (3, best["TrainingJobName"])
    assert (
        chosen["tuning"] == f"s3://{aws.s3['bucket']}/artefacts/nlp_sagemaker/20260401T000000Z/tuning/{job}/tuning.json"
    )
    key = chosen["tuning"].split("/", 3)[3]
    tuning = json.loads(aws.s3["client"].get_object(Bucket=aws.s3["bucket"], Key=key)["Body"].read())
    assert (tuning["seed"], tuning["max_steps"], tuning["objective"], tuning["early_stopping"]) == (
        5,
        4,
        "validation accuracy",
        "auto",
    )
    assert [trial["name"] for trial in tuning["trials"]] == sorted(trial["TrainingJobName"] for trial in trials)
    accuracy = 0.5 + chosen["setting"]["learning_rate"] * 100
    assert tuning["best"] == chosen["best"] and chosen["best"]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert chosen["best"]["f1"] == pytest.approx(accuracy - 0.1, abs=1e-6)
    assert {trial["status"] for trial in tuning["trials"]} == {"completed"}
    assert all(trial["val_loss"] == 0.4 for trial in tuning["trials"])


def test_choose_setting_counts_a_trial_without_scores_as_failed_and_fails_when_none_scored(aws, monkeypatch):
    from tasks.errors import TaskError

    monkeypatch.setattr(aws.fake, "_run", lambda arguments, root, environment: (1, "Traceback: out of memory"))
    params = {"tuning_trials": 2, "tuning_parallel_jobs": 2}
    run = context("tune", xcom=staged_on_s3(aws), **params)
    trigger = deferred(tune_operator(), run).trigger
    event = run_trigger(trigger, aws.fake, monkeypatch)
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match="failed"):
        tune_operator().execute_complete(run, event)
    tuned = {("tune", "return_value"): {"job": trigger.job_name}}
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="no trial of the search was scored") as raised:
        sagemaker.choose_setting.function(**context("choose_setting", xcom=tuned, **params))
    assert isinstance(raised.value.__cause__, TaskError), "not retried: the trials' scores will not change"


class TrialsHook:
    """SageMakerHook as choose_setting uses it, over a tuning job's described trials (one page)."""

    def __init__(self, tuning: dict, trials: list[dict]):
        from types import SimpleNamespace

        self.tuning, self.trials = tuning, {trial["TrainingJobName"]: trial for trial in trials}
        setting = {"learning_rate": "0.0001", "epochs": "2", "batch_size": "16", "warmup_ratio": "0.1"}
        setting["weight_decay"] = "0.01"
        pages = [
            {
                "TrainingJobSummaries": [
                    {key: trial[key] for key in ("TrainingJobName", "TrainingJobStatus")}
                    | {"TunedHyperParameters": setting}
                    for trial in trials
                ]
            }
        ]
        paginator = SimpleNamespace(paginate=lambda **request: pages)
        self.conn = SimpleNamespace(get_paginator=lambda operation: paginator)

    def describe_training_job(self, name):
        return self.trials[name]

    def describe_tuning_job(self, name):
        return self.tuning


def trial_job(name, status, secondary, accuracy=None):
    metrics = [] if accuracy is None else [{"MetricName": specs.VALIDATION_ACCURACY, "Value": accuracy}]
    return {"TrainingJobName": name, "TrainingJobStatus": status, "SecondaryStatus": secondary} | {
        "FinalMetricDataList": metrics
    }


@pytest.mark.parametrize("tuning_status", ["Completed", "Stopped"])
def test_only_trials_sagemaker_stopped_early_count_as_stopped_early(aws, monkeypatch, tuning_status):
    """A partly failed search: Completed, Failed, Stopped by early stopping, Stopped at its MaxRuntimeInSeconds. A
    trial stopped with its tuning job (StopHyperParameterTuningJob) was not stopped early either."""
    from airflow.providers.amazon.aws.hooks import sagemaker as hooks

    trials = [
        trial_job("t-001", "Completed", "Completed", 0.8),
        trial_job("t-002", "Failed", "Failed"),
        trial_job("t-003", "Stopped", "Stopped", 0.6),
        trial_job("t-004", "Stopped", "MaxRuntimeExceeded", 0.7),
    ]
    tuning = {
        "HyperParameterTuningJobStatus": tuning_status,
        "HyperParameterTuningJobConfig": {"TrainingJobEarlyStoppingType": "Auto"},
    }
    monkeypatch.setattr(hooks, "SageMakerHook", lambda **kwargs: TrialsHook(tuning, trials))
    params = {"tuning_trials": 4, "tuning_parallel_jobs": 2, "learning_rate_range": [1e-4, 1e-3]}
    params |= {"epochs_range": [1, 2], "batch_sizes": [8, 16]}
    tuned = {("tune", "return_value"): {"job": "nlp-tune-x"}}
    chosen = sagemaker.choose_setting.function(**context("choose_setting", xcom=tuned, **params))
    tuning_json = json.loads(
        aws.s3["client"].get_object(Bucket=aws.s3["bucket"], Key=chosen["tuning"].split("/", 3)[3])["Body"].read()
    )
    ended = {trial["name"]: (trial["status"], trial["stopped_early"]) for trial in tuning_json["trials"]}
    early = ("stopped", True) if tuning_status == "Completed" else ("failed", False)
    assert ended == {
        "t-001": ("completed", False),
        "t-002": ("failed", False),
        "t-003": early,
        "t-004": ("failed", False),
    }
    assert chosen["best"]["name"] == "t-001"
