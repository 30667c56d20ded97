"""nlp_eks when its EKS credentials expire while a task runs, and with deferral on by default.

Access is the amazon provider's: moto's EKS cluster points at the fake API server, the AWS connection assumes a role
on moto (each fetch from the connection gives new session credentials), and the fake answers 401 to a token signed
with credentials the test expired, as EKS does (tests/fakes/kubernetes.py, EksAuthentication).
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.airflow.test_kubernetes_operators import context, deploy, serving, stage_operator
from tests.conftest import REPO
from tests.fakes.kubernetes import DEPLOYMENTS, JOBS, PODS, SERVICES

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import eks  # noqa: E402
from nlp_pipeline.operators.kubernetes import TrainOperator  # noqa: E402


@pytest.fixture
def eks_cluster(fake_kubernetes, s3, monkeypatch):
    """The fake cluster as an EKS cluster on moto (one per test: the moto server lives for the session), reached
    through the Variable nlp_eks_cluster_name and an AWS connection that assumes a role; the Kubernetes connection
    holds nothing."""
    import uuid

    import boto3
    from moto.backends import get_backend

    name = f"nlp-{uuid.uuid4().hex[:8]}"
    boto3.client("eks", region_name="us-east-1").create_cluster(
        name=name, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": ["subnet-1"]}
    )
    get_backend("eks")["123456789012"]["us-east-1"].clusters[name].endpoint = fake_kubernetes.url
    aws = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {
            "region_name": "us-east-1",
            "endpoint_url": s3["env"]["AWS_ENDPOINT_URL"],
            "role_arn": "arn:aws:iam::123456789012:role/airflow",  # session credentials that expire
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))
    monkeypatch.setenv("AIRFLOW_VAR_NLP_EKS_CLUSTER_NAME", name)
    monkeypatch.setenv("PATH", f"{sys.executable.rsplit('/', 1)[0]}:{os.environ['PATH']}")  # the plugin's python
    return fake_kubernetes


def expire_when(cluster, ready, timeout: float = 120) -> threading.Thread:
    """In the background: once ``ready()`` holds, the session credentials of every token so far expire."""

    def expire():
        deadline = time.monotonic() + timeout
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.authentication.expire()

    thread = threading.Thread(target=expire, daemon=True)
    thread.start()
    return thread


def test_a_step_pod_whose_credentials_expire_while_it_runs_finishes_and_returns_its_result(
    eks_cluster, raw_data, minilm_path
):
    run = context("stage_dataset", source=str(raw_data), base_model=str(minilm_path))
    expiry = expire_when(eks_cluster, lambda: bool(eks_cluster.processes))  # the pod's container has started
    stage_operator(cluster_config=eks.cluster_config).execute(run)

    expiry.join()
    assert eks_cluster.authentication.refusals, "the token expired while the pod ran"
    assert run["ti"].xcom_pull("stage_dataset")["rows"]["train"] == 256
    assert eks_cluster.objects(PODS, "nlp") == [], "the finished pod was deleted"


def test_a_rollout_wait_that_gets_401_renews_the_credentials_and_completes(eks_cluster, trained_tiny, monkeypatch):
    monkeypatch.setattr(eks, "CHECK_INTERVAL", 1)
    expiry = expire_when(eks_cluster, lambda: bool(eks_cluster.objects(DEPLOYMENTS, "nlp")))  # while it rolls out
    deployed = deploy(eks_cluster, trained_tiny)

    expiry.join()
    assert eks_cluster.authentication.refusals, "the token expired during the rollout"
    assert deployed["model"] == serving(eks_cluster) == str(trained_tiny)


def test_the_training_job_is_deleted_in_the_end_though_the_token_expired_while_it_ran(eks_cluster):
    from airflow.sdk.exceptions import AirflowException

    eks_cluster.hold_pods = True  # the workers never start: the wait runs out, then the cleanup deletes the job
    run = context(
        "train",
        xcom={("stage_dataset", "return_value"): {"data": "/artefacts/staged", "fingerprint": "sha256:0f"}},
        training_workers=2,
    )
    operator = TrainOperator(
        task_id="train",
        build_pod=lambda ctx: eks._pod(ctx, eks._train_arguments(ctx)),
        build_job=eks._training_job,
        workers=lambda ctx: ctx["params"]["training_workers"],
        summarize=lambda ctx, result: result,
        cluster_config=eks.cluster_config,
        kubernetes_conn_id="kubernetes_default",
        namespace="nlp",
        job_poll_interval=0.5,
        job_timeout_seconds=3,
    )
    expiry = expire_when(eks_cluster, lambda: bool(eks_cluster.objects(JOBS, "nlp")))
    with pytest.raises(AirflowException, match="did not finish in 3 s"):
        operator.execute(run)

    expiry.join()
    assert eks_cluster.authentication.refusals, "the token expired while the job ran"
    assert eks_cluster.objects(JOBS, "nlp") == eks_cluster.objects(SERVICES, "nlp") == [], "job and Service deleted"
    assert eks_cluster.objects(PODS, "nlp") == [], "and the job's pods"


def test_the_nlp_eks_operators_do_not_defer_when_deferral_is_the_default():
    """``[operators] default_deferrable`` is read when the provider's module is imported: a fresh interpreter."""
    probe = """
import sys
sys.path.insert(0, "plugins")
from nlp_pipeline.operators.kubernetes import StepPodOperator, TrainOperator
from nlp_pipeline import eks
from nlp_pipeline.pipeline import build_pipeline
from nlp_pipeline.params import eks_params
dag = build_pipeline("nlp_eks", eks, params=eks_params(), tags=["eks"], doc_md="")
pods = [task for task in dag.tasks if isinstance(task, StepPodOperator)]
print(len(pods), sorted({getattr(task, "deferrable", None) for task in pods}, key=str))
"""
    environment = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    count, deferrable = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) >= 6 and deferrable == "[False]", result.stdout


def test_asking_an_nlp_eks_pod_operator_to_defer_is_refused():
    with pytest.raises(ValueError, match="stage_dataset: deferrable=True is not supported"):
        stage_operator(deferrable=True)
