"""nlp_sagemaker's rollout against the fake's endpoint, which passes through Creating, Updating, RollingBack and
UpdateRollbackFailed on its clock: every retry of ``deploy`` does the one right thing, and ``rollback`` restores
what served before the run, however many tries deploy took."""

import sys

import pytest

from tests.airflow.sagemaker_context import context, run_trigger
from tests.conftest import REPO
from tests.fakes.sagemaker import IMAGE, ROLE

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import sagemaker  # noqa: E402
from nlp_pipeline.operators.sagemaker import (  # noqa: E402
    RunEndpointConfigOperator,
    RunModelOperator,
    VerifiedEndpointOperator,
)
from nlp_pipeline.specs import sagemaker as specs  # noqa: E402

ENDPOINT = "nlp-paraphrase"
DIGEST = "sha256:" + "ab" * 32
CANARY = {"traffic": "canary", "step_percent": 10, "baking_minutes": 10, "alarms": ["nlp-5xx"]}


def xcom(digest: str = DIGEST, model: str = "s3://b/run/quantized/job/") -> dict:
    return {
        ("evaluate", "return_value"): {"model": model, "model_digest": digest},
        ("stage_dataset", "return_value"): {"fingerprint": "sha256:0f"},
    }


def rollout_context(task_id: str, try_number: int = 1, digest: str = DIGEST, **params) -> dict:
    """A rollout task's context; the endpoint has 2 instances, the fewest a canary can shift in steps."""
    return context(task_id, try_number=try_number, xcom=xcom(digest), **{"endpoint_instance_count": 2} | params)


def endpoint_on_a_previous_config(client) -> str:
    client.create_model(
        ModelName="nlp-model-old",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/old/model.tar.gz"},
    )
    client.create_endpoint_config(
        **specs.endpoint_config("nlp-config-old", "nlp-model-old", instance_type="ml.c6i.xlarge", instance_count=1)
    )
    client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="nlp-config-old")
    return "nlp-config-old"


def create_model_and_config(digest: str = DIGEST) -> str:
    """create_model and create_endpoint_config of the run, for a candidate of ``digest``: the config's name."""
    RunModelOperator(task_id="create_model", build_config=sagemaker._model_config, aws_conn_id="aws_default").execute(
        rollout_context("create_model", digest=digest)
    )
    created = RunEndpointConfigOperator(
        task_id="create_endpoint_config", build_config=sagemaker._endpoint_config, aws_conn_id="aws_default"
    ).execute(rollout_context("create_endpoint_config", digest=digest))
    return created["EndpointConfig"]["EndpointConfigName"]


def deploy_operator() -> VerifiedEndpointOperator:
    return VerifiedEndpointOperator(
        task_id="deploy", build_rollout=sagemaker._rollout, aws_conn_id="aws_default", check_interval=30
    )


def deferred(run):
    from airflow.sdk.exceptions import TaskDeferred

    with pytest.raises(TaskDeferred) as raised:
        deploy_operator().execute(run)
    return raised.value


def serving(aws) -> str:
    return aws.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]


def test_a_retried_deploy_mid_update_waits_and_keeps_the_real_previous_config(aws, monkeypatch):
    old, ours = endpoint_on_a_previous_config(aws.sagemaker), create_model_and_config()
    aws.fake.endpoint_seconds = 600
    first = deferred(rollout_context("deploy", blue_green=CANARY))
    policy = aws.fake.requests_of("update_endpoint")[0]["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    limit = policy["MaximumExecutionTimeoutInSeconds"]
    assert first.trigger.attempts * first.trigger.waiter_delay >= limit + 3600, "the wait covers the blue/green"

    # The worker is lost while SageMaker updates: the endpoint is Updating, the new config only pending.
    assert aws.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Updating"
    second = deferred(rollout_context("deploy", try_number=2, blue_green=CANARY))
    assert type(second.trigger).__name__ == "EndpointSettledTrigger"
    assert len(aws.fake.requests_of("update_endpoint")) == 1, "the retry waits; it does not update again"

    assert run_trigger(second.trigger, aws.fake, monkeypatch)["status"] == "success"
    done = deploy_operator().execute_complete(rollout_context("deploy", try_number=2, blue_green=CANARY), {})
    assert done == {"endpoint": ENDPOINT, "config": ours, "previous_config": old}
    third = deploy_operator().execute(rollout_context("deploy", try_number=3, blue_green=CANARY))
    assert third == done and len(aws.fake.requests_of("update_endpoint")) == 1


def test_rollback_after_a_retried_deploy_restores_the_old_model(aws):
    old, ours = endpoint_on_a_previous_config(aws.sagemaker), create_model_and_config()
    deferred(rollout_context("deploy"))
    assert serving(aws) == ours
    # The worker was lost after the switch: the retry finds the endpoint on this run's config.
    retried = deploy_operator().execute(rollout_context("deploy", try_number=2))
    assert retried["previous_config"] == old

    sagemaker.rollback.function(**rollout_context("rollback"))
    assert serving(aws) == old, "rollback restores what served before the run, not the run's own config"


def test_an_update_sagemaker_rolls_back_fails_at_once_and_is_never_retried(aws, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    old, ours = endpoint_on_a_previous_config(aws.sagemaker), create_model_and_config()
    aws.fake.roll_back_updates, aws.fake.endpoint_seconds = True, 600  # an alarm fires while baking
    waiting = deferred(rollout_context("deploy", blue_green=CANARY))
    event = run_trigger(waiting.trigger, aws.fake, monkeypatch)
    assert event["status"] != "success" and event["polls"] < 60, "the wait stops when the rollback starts"
    with pytest.raises(AirflowFailException, match=rf"is RollingBack on {old}, not on this run's {ours}: SageMaker"):
        deploy_operator().execute_complete(rollout_context("deploy", blue_green=CANARY), event)

    aws.fake.clock.advance(3600)  # the rollback ends: InService on the old config, with the alarm's reason
    with pytest.raises(AirflowFailException, match=rf"is InService on {old}, not on this run's {ours}"):
        deploy_operator().execute(rollout_context("deploy", try_number=2, blue_green=CANARY))
    assert len(aws.fake.requests_of("update_endpoint")) == 1, "the same bad model is not canaried again"
    update = aws.fake.requests_of("update_endpoint")[0]
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "nlp-5xx"}]}


def test_an_update_rollback_that_failed_stops_the_wait_and_needs_a_person(aws, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    endpoint_on_a_previous_config(aws.sagemaker)
    create_model_and_config()
    aws.fake.roll_back_updates = aws.fake.rollback_fails = True
    aws.fake.endpoint_seconds = 600
    waiting = deferred(rollout_context("deploy", blue_green=CANARY))
    event = run_trigger(waiting.trigger, aws.fake, monkeypatch)
    assert event["polls"] < 60, "the wait ends when the rollback starts; botocore's waiter polls on for hours"
    aws.fake.clock.advance(3600)
    assert aws.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "UpdateRollbackFailed"
    with pytest.raises(AirflowFailException, match="is UpdateRollbackFailed on .*: it needs a person"):
        deploy_operator().execute_complete(rollout_context("deploy", blue_green=CANARY), event)
    with pytest.raises(AirflowFailException, match="it needs a person"):
        deploy_operator().execute(rollout_context("deploy", try_number=2, blue_green=CANARY))
    assert len(aws.fake.requests_of("update_endpoint")) == 1


def test_a_retry_while_the_endpoint_is_being_created_waits_for_it(aws, monkeypatch):
    ours = create_model_and_config()
    aws.fake.endpoint_seconds = 600
    deferred(rollout_context("deploy"))
    assert aws.sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "Creating"
    again = deferred(rollout_context("deploy", try_number=2))
    assert len(aws.fake.requests_of("create_endpoint")) == 1
    run_trigger(again.trigger, aws.fake, monkeypatch)
    done = deploy_operator().execute_complete(rollout_context("deploy", try_number=2), {"status": "success"})
    assert done == {"endpoint": ENDPOINT, "config": ours, "previous_config": None}

    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="created the endpoint"):
        sagemaker.rollback.function(**rollout_context("rollback"))


def test_a_new_model_in_the_same_run_gets_a_new_model_and_config(aws):
    """Clearing quantize or evaluate in a run changes the candidate: it must not be served under the old name."""
    endpoint_on_a_previous_config(aws.sagemaker)
    first = create_model_and_config(DIGEST)
    assert create_model_and_config(DIGEST) == first, "a retry reuses the run's model and config"
    second = create_model_and_config("sha256:" + "cd" * 32)
    models = [request for request in aws.fake.requests_of("create_model") if request["ModelName"] != "nlp-model-old"]
    assert second != first and len(models) == 2
    deferred(rollout_context("deploy"))
    assert serving(aws) == first
    deferred(rollout_context("deploy", try_number=2, digest="sha256:" + "cd" * 32))
    assert serving(aws) == second, "the new candidate is rolled out, not reported as served already"
    assert models[0]["PrimaryContainer"]["Environment"]["NLP_MODEL_DIGEST"] == DIGEST


def test_a_first_try_that_finds_someone_elses_update_records_nothing_and_retries(aws):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    endpoint_on_a_previous_config(aws.sagemaker)
    ours = create_model_and_config()
    aws.sagemaker.create_endpoint_config(
        **specs.endpoint_config("nlp-config-other", "nlp-model-old", instance_type="ml.c6i.xlarge", instance_count=1)
    )
    aws.fake.endpoint_seconds = 600
    aws.sagemaker.update_endpoint(EndpointName=ENDPOINT, EndpointConfigName="nlp-config-other")
    with pytest.raises(AirflowException, match="is Updating .to nlp-config-other., not by this run") as raised:
        deploy_operator().execute(rollout_context("deploy"))
    assert not isinstance(raised.value, AirflowFailException), "retried once the other update ends"
    aws.fake.clock.advance(700)
    deferred(rollout_context("deploy", try_number=2))
    aws.fake.clock.advance(700)
    assert deploy_operator().execute(rollout_context("deploy", try_number=3))["previous_config"] == "nlp-config-other"
    assert serving(aws) == ours


def test_a_wait_that_runs_out_mid_update_is_retried_and_rollback_waits_to_undo_it(aws, monkeypatch):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    old, ours = endpoint_on_a_previous_config(aws.sagemaker), create_model_and_config()
    aws.fake.endpoint_seconds = 3 * 3600
    waiting = deferred(rollout_context("deploy"))
    assert waiting.timeout.total_seconds() >= waiting.trigger.attempts * waiting.trigger.waiter_delay
    short = type(waiting.trigger)(endpoint_name=ENDPOINT, waiter_delay=30, waiter_max_attempts=3)
    event = run_trigger(short, aws.fake, monkeypatch)
    assert event["status"] == "timeout"
    with pytest.raises(AirflowException, match=f"is still Updating to {ours} after the wait") as raised:
        deploy_operator().execute_complete(rollout_context("deploy"), event)
    assert not isinstance(raised.value, AirflowFailException), "a wait that ran out is no rollback"

    # The smoke test never ran; rollback waits for the update to land, then undoes it.
    monkeypatch.setattr(sagemaker.time, "sleep", aws.fake.clock.advance)
    sagemaker.rollback.function(**rollout_context("rollback"))
    assert serving(aws) == old

    # Clearing deploy in the run rolls the model out again (rollback, not SageMaker, took it out).
    deferred(rollout_context("deploy", try_number=2))
    aws.fake.clock.advance(3 * 3600 + 60)
    assert serving(aws) == ours


def test_a_canary_on_one_instance_is_refused_before_any_job_runs(aws):
    """A step moves whole instances, at most half the fleet: one instance cannot be shifted in steps."""
    from airflow.sdk.exceptions import AirflowFailException

    for count, step in ((1, 10), (3, 50)):
        run = context("stage_dataset", endpoint_instance_count=count, blue_green=CANARY | {"step_percent": step})
        with pytest.raises(AirflowFailException, match=f"moves .* of endpoint_instance_count {count} instance"):
            sagemaker._stage_config(run, "nlp-stage-x")
    assert not aws.fake.requests_of("create_processing_job")
    sagemaker._stage_config(context("stage_dataset", endpoint_instance_count=2, blue_green=CANARY), "nlp-stage-x")


def test_a_run_with_a_null_capture_rate_keeps_the_live_endpoints_capture(aws):
    """capture_sample_rate null (what a run started by drift or the schedule takes) rolls out the capture the live
    endpoint runs with again: its model's Environment (tasks.config.CAPTURE_ENV) and SageMaker's DataCaptureConfig.
    With no endpoint yet, there is none to keep: capture stays off."""
    from tasks.config import CAPTURE_ENV

    def capture_of(run) -> tuple[dict, dict | None]:
        environment = sagemaker._model_config(run)["PrimaryContainer"].get("Environment", {})
        captured = {variable: environment[variable] for variable in CAPTURE_ENV.values() if variable in environment}
        return captured, sagemaker._endpoint_config(run).get("DataCaptureConfig")

    assert capture_of(rollout_context("create_model", capture_sample_rate=None)) == ({}, None)

    capturing = rollout_context("create_model", capture_sample_rate=0.25, capture_text=True)
    model, config = sagemaker._model_config(capturing), sagemaker._endpoint_config(capturing)
    aws.sagemaker.create_model(**model)
    aws.sagemaker.create_endpoint_config(**config)
    aws.sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=config["EndpointConfigName"])
    live_environment, live_capture = capture_of(capturing)
    assert live_environment[CAPTURE_ENV["capture_dir"]] == sagemaker.capture_root()
    assert live_capture["InitialSamplingPercentage"] == 25

    retrain = rollout_context("create_model", digest="sha256:" + "cd" * 32, capture_sample_rate=None)
    assert capture_of(retrain) == (live_environment, live_capture)
    off = rollout_context("create_model", digest="sha256:" + "cd" * 32, capture_sample_rate=0)
    assert capture_of(off) == ({}, None)
