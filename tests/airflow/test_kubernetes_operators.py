"""The nlp_eks operators and rollout, run in this process against a Kubernetes API on kmock (tests/fakes).

Each ``execute`` is called as a task runner would call it, with a context of this run and try. The pods run
the real steps (the fake kubelet runs ``python -m tasks ARGS``); the server's Deployment serves a real model.
"""

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.airflow.test_kubernetes_manifests import forbidden
from tests.conftest import REPO, upload_folder
from tests.fakes.kubernetes import DEPLOYMENTS, JOBS, PODS, SERVICES, TFJOBS, wait_for

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import eks  # noqa: E402
from nlp_pipeline.operators.kubernetes import StepPodOperator, TrainOperator, TrialPodOperator  # noqa: E402
from nlp_pipeline.params import eks_params, pipeline_params  # noqa: E402

RUN_ID = "manual__2026-05-01"
TRY1 = f"try1-{hashlib.sha1(RUN_ID.encode()).hexdigest()[:6]}"  # the first try's folder of this run
TRY2 = TRY1.replace("try1-", "try2-")


def context(task_id: str, try_number: int = 1, xcom: dict | None = None, **params) -> dict:
    defaults = {name: param.value for name, param in (pipeline_params() | eks_params()).items()}
    small = {"step_cpu": "1", "step_memory": "2Gi", "node_features": []}
    return task_context(
        "nlp_eks",
        task_id,
        defaults | small | params,
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id=RUN_ID,
        try_number=try_number,
        xcom=xcom or {("stage_dataset", "return_value"): {"fingerprint": "sha256:0f"}},
    )


def stage_operator(**kwargs) -> StepPodOperator:
    return StepPodOperator(
        task_id="stage_dataset",
        step="stage",
        build_pod=lambda ctx: eks._pod(ctx, eks._stage_arguments(ctx)),
        summarize=lambda ctx, result: {"data": eks.step_output(ctx, "staged")} | result,
        kubernetes_conn_id="kubernetes_default",
        namespace="nlp",
        poll_interval=1,
        startup_check_interval_seconds=1,
        **kwargs,
    )


def task_log(capsys, caplog) -> str:
    """What the task log would show: the provider logs through structlog (stdout) and logging."""
    return capsys.readouterr().out + caplog.text


def live_pods(cluster) -> list[dict]:
    return cluster.objects(PODS, "nlp")


def test_a_step_pod_runs_the_step_streams_its_log_returns_its_result_and_is_deleted(
    fake_kubernetes, raw_data, minilm_path, capsys, caplog
):
    caplog.set_level(logging.INFO)
    run = context("stage_dataset", source=str(raw_data), base_model=str(minilm_path))
    stage_operator().execute(run)

    result = run["ti"].xcom_pull("stage_dataset")
    staged = fake_kubernetes.volume / "nlp_eks" / "20260501T000000Z" / "staged" / TRY1
    assert result["data"] == str(staged) and (staged / "manifest.json").is_file()
    assert len(result["fingerprint"]) > 20 and result["rows"]["train"] == 256
    [pod] = fake_kubernetes.pods_run
    [container] = pod["spec"]["containers"]
    assert container["args"][:2] == ["stage", "--source"] and container["image"].endswith("nlp-tasks:test")
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["spec"]["serviceAccountName"] == "nlp-pipeline" and pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["dag_id"] == "nlp_eks" and pod["metadata"]["labels"]["try_number"] == "1"
    assert "[base]" in (log := task_log(capsys, caplog)) and "INFO tasks.data.stage: train: 256 rows" in log, "step log"
    assert live_pods(fake_kubernetes) == [], "the finished pod was deleted"


def test_with_an_s3_artefact_root_the_pods_read_and_write_s3_and_mount_no_volume(
    fake_kubernetes, s3, raw_data, minilm_path, monkeypatch
):
    bucket = s3["bucket"]
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", f"s3://{bucket}/root/")
    source = upload_folder(s3["client"], raw_data, bucket, "raw")
    run = context("stage_dataset", source=f"{source}/", base_model=str(minilm_path))
    stage_operator().execute(run)

    prefix = f"root/nlp_eks/20260501T000000Z/staged/{TRY1}"
    assert run["ti"].xcom_pull("stage_dataset")["data"] == f"s3://{bucket}/{prefix}"
    assert s3["client"].head_object(Bucket=bucket, Key=f"{prefix}/manifest.json")["ContentLength"] > 0
    [pod] = fake_kubernetes.pods_run
    [container] = pod["spec"]["containers"]
    assert not pod["spec"].get("volumes") and not container.get("volumeMounts")
    assert not [variable for variable in container["env"] if variable["name"].startswith("AWS_")], "IRSA, no keys"
    assert not list(fake_kubernetes.volume.iterdir()), "nothing on the volume"


def test_the_amazon_provider_gives_access_to_an_eks_cluster(fake_kubernetes, s3, raw_data, minilm_path, monkeypatch):
    """With Variable nlp_eks_cluster_name, EksHook writes the kubeconfig (endpoint and CA from DescribeCluster,
    a token from STS through the provider's exec plugin); the Kubernetes connection holds nothing."""
    import json

    import boto3
    from moto.backends import get_backend

    eks_api = boto3.client("eks", region_name="us-east-1")
    eks_api.create_cluster(
        name="nlp-eks", roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": ["subnet-1"]}
    )
    get_backend("eks")["123456789012"]["us-east-1"].clusters["nlp-eks"].endpoint = fake_kubernetes.url
    aws = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"region_name": "us-east-1", "endpoint_url": s3["env"]["AWS_ENDPOINT_URL"]},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps({"conn_type": "kubernetes"}))
    monkeypatch.setenv("AIRFLOW_VAR_NLP_EKS_CLUSTER_NAME", "nlp-eks")
    monkeypatch.setenv("PATH", f"{sys.executable.rsplit('/', 1)[0]}:{os.environ['PATH']}")  # the plugin's python

    run = context("stage_dataset", source=str(raw_data), base_model=str(minilm_path))
    stage_operator(cluster_config=eks.cluster_config).execute(run)
    assert run["ti"].xcom_pull("stage_dataset")["rows"]["train"] == 256
    [created] = [request for request in fake_kubernetes.requests_to("post", r"/namespaces/nlp/pods$")]
    assert created.headers["Authorization"].startswith("Bearer k8s-aws-v1."), "an EKS token from STS"


def test_a_pod_that_fails_fails_the_task_with_its_log_tail_and_bad_input_is_not_retried(fake_kubernetes, raw_data):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    bad_flag = context("stage_dataset", source=str(raw_data), base_model="/nowhere/tokenizer", max_seq_length=4)
    bad_flag["params"]["max_seq_length"] = "many"
    with pytest.raises(AirflowFailException, match=r"(?s)stage failed on a bad flag, not retried:.*max.seq.length"):
        stage_operator().execute(bad_flag)

    missing = context("stage_dataset", try_number=2, source=str(raw_data / "missing"), base_model="/nowhere")
    with pytest.raises(AirflowException, match=r"(?s)stage exited with \d+: \n.*missing") as raised:
        stage_operator().execute(missing)
    assert not isinstance(raised.value, AirflowFailException), "other failures are retried"
    assert live_pods(fake_kubernetes) == [], "failed pods are deleted too"


def test_a_retry_reattaches_to_the_pod_its_run_left_running(fake_kubernetes, raw_data, minilm_path):
    fake_kubernetes.hold_pods = True  # the pod is created but not yet started; the worker is then lost
    params = {"source": str(raw_data), "base_model": str(minilm_path)}
    first, lost = context("stage_dataset", **params), stage_operator()
    lost.get_or_create_pod(lost.build_pod_request_obj(first), first)  # what execute does first
    [created] = live_pods(fake_kubernetes)

    fake_kubernetes.hold_pods = False
    retry = context("stage_dataset", try_number=2, **params)
    stage_operator().execute(retry)
    assert len(fake_kubernetes.requests_to("post", r"/namespaces/nlp/pods$")) == 1, "one pod, not two"
    assert [pod["metadata"]["name"] for pod in fake_kubernetes.pods_run] == [created["metadata"]["name"]]
    assert retry["ti"].xcom_pull("stage_dataset")["rows"]["train"] == 256


def test_a_retried_step_takes_the_result_of_the_pod_that_already_succeeded(fake_kubernetes, raw_data, minilm_path):
    """The worker died after the pod succeeded: the retry finds it by its run's labels and reads its termination
    message instead of deleting it and running the step again."""
    from kubernetes import client

    params = {"source": str(raw_data), "base_model": str(minilm_path)}
    first = context("stage_dataset", **params)
    operator = stage_operator()
    pod = operator.build_pod_request_obj(first)  # as the first try created it, with its run's labels
    operator.client.create_namespaced_pod("nlp", client.ApiClient().sanitize_for_serialization(pod))
    wait_for(lambda: [pod for pod in live_pods(fake_kubernetes) if pod["status"]["phase"] == "Succeeded"])

    [succeeded] = live_pods(fake_kubernetes)

    retry = context("stage_dataset", try_number=2, **params)
    stage_operator().execute(retry)
    assert len(fake_kubernetes.requests_to("post", r"/namespaces/nlp/pods$")) == 1, "the step ran once"
    assert retry["ti"].xcom_pull("stage_dataset")["rows"]["train"] == 256
    assert retry["ti"].xcom_pull("stage_dataset")["output"].endswith(TRY1), "the first try's result"
    assert live_pods(fake_kubernetes) == [], "then deleted"
    versions = fake_kubernetes.history(PODS, "nlp", succeeded["metadata"]["name"])
    assert any(version["metadata"]["labels"].get("already_checked") == "True" for version in versions), (
        "marked as the provider marks the pods it is done with: a later try never takes it again"
    )


def test_a_retry_runs_the_step_again_when_the_pod_that_succeeded_ran_other_inputs(
    fake_kubernetes, raw_data, minilm_path
):
    from kubernetes import client

    params = {"source": str(raw_data), "base_model": str(minilm_path)}
    first = context("stage_dataset", **params, max_seq_length=64)  # then the run's Params were changed
    operator = stage_operator()
    pod = operator.build_pod_request_obj(first)
    operator.client.create_namespaced_pod("nlp", client.ApiClient().sanitize_for_serialization(pod))
    wait_for(lambda: [pod for pod in live_pods(fake_kubernetes) if pod["status"]["phase"] == "Succeeded"])

    retry = context("stage_dataset", try_number=2, **params)
    stage_operator().execute(retry)
    assert len(fake_kubernetes.requests_to("post", r"/namespaces/nlp/pods$")) == 2, "the step ran again"
    assert retry["ti"].xcom_pull("stage_dataset")["output"].endswith(TRY2), "this try's result"
    assert live_pods(fake_kubernetes) == []


def test_stage_dataset_refuses_the_tfjob_option_on_a_cluster_without_the_training_operator_before_its_pod(
    fake_kubernetes, raw_data, minilm_path
):
    from airflow.sdk.exceptions import AirflowFailException

    run = context(
        "stage_dataset",
        source=str(raw_data),
        base_model=str(minilm_path),
        training_workers=2,
        training_backend="tfjob",
    )
    with pytest.raises(AirflowFailException, match=r"training_backend.*Training Operator v1\.9.*docs/eks\.md"):
        stage_operator().execute(run)
    assert not fake_kubernetes.requests_to("post", r".") and not fake_kubernetes.pods_run


# ---- tuning: trials mapped over the plan --------------------------------------------------------------------------
def tuning_dag():
    """nlp_eks's DAG, its pods reached through the tests' connection and watched every second."""
    from nlp_pipeline.pipeline import build_pipeline

    dag = build_pipeline("nlp_eks", eks, params=eks_params(), doc_md="nlp_eks", tags=[])
    for task_id in ("plan_trials", "choose_setting"):
        task = dag.get_task(task_id)
        task.kubernetes_conn_id, task.namespace, task.poll_interval = "kubernetes_default", "nlp", 1
        task.startup_check_interval_seconds = 1
    return dag


def trial_operators(trials: list[dict]) -> list[TrialPodOperator]:
    """The trial task as nlp_eks maps it over a plan (``partial(...).expand(trial=...)``), one per planned trial."""
    from airflow.sdk import DAG

    with DAG("nlp_eks", schedule=None):
        mapped = TrialPodOperator.partial(
            task_id="trial",
            pool="nlp_tuning",
            build_trial_pod=eks._trial_pod,
            seconds_left=eks._seconds_left,
            kubernetes_conn_id="kubernetes_default",
            namespace="nlp",
            poll_interval=1,
            startup_check_interval_seconds=1,
        ).expand(trial=trials)
    return [mapped.unmap({"trial": trial}) for trial in trials]


def trial_setting(epochs: int) -> dict:
    return {"learning_rate": 1e-3, "epochs": epochs, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01}


def run_trials(
    search: str, trials: list[dict], staged_data, model, *, seconds: float = 3600, try_number: int = 1
) -> list[dict]:
    """Each trial's task, run as the task runner runs a mapped task (its map index, its try of 3), in a search
    that ends in ``seconds``; their XComs."""
    import datetime

    deadline = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    results = []
    for index, operator in enumerate(trial_operators(trials)):
        xcom = {
            ("stage_dataset", "return_value"): {"data": str(staged_data), "fingerprint": "sha256:0f"},
            ("plan_trials", "search"): search,
            ("plan_trials", "deadline"): deadline.isoformat(),
        }
        run = context("trial", try_number, xcom, base_model=str(model), tuning_trials=len(trials), tuning_max_steps=0)
        run["ti"].map_index, run["ti"].max_tries = index, 2
        assert operator.execute(run) == run["ti"].xcom_pull("trial")
        results.append(run["ti"].xcom_pull("trial"))
    return results


def seed_peers(write) -> None:
    """Two other trials of the search that scored 1.0 after each epoch: a trial below their median stops."""
    for peer in ("peer-a", "peer-b"):
        write(f"{peer}.json", json.dumps({"run": peer, "accuracy": [1.0, 1.0]}))


def test_a_search_of_the_most_trials_is_planned_and_chosen_by_pods_whose_results_outgrow_a_termination_message(
    fake_kubernetes,
):
    """32 trials: plan.json and tuning.json are more than the 4 KiB Kubernetes keeps of a termination message, so
    ``tune`` prints them and the operators read them from the pod's log."""
    from tasks.config import MAX_TUNING_TRIALS

    dag = tuning_dag()
    run = context("plan_trials", tuning_trials=MAX_TUNING_TRIALS, tuning_max_steps=20)
    dag.get_task("plan_trials").execute(run)
    trials, search = run["ti"].xcom_pull("plan_trials"), run["ti"].xcom_pull("plan_trials", key="search")
    assert search == str(fake_kubernetes.volume / "nlp_eks" / "20260501T000000Z" / "tune" / TRY1)
    assert len(trials) == MAX_TUNING_TRIALS and trials == json.loads((Path(search) / "plan.json").read_text())["trials"]
    assert len(json.dumps(trials)) > 4096
    deadline = pendulum.parse(run["ti"].xcom_pull("plan_trials", key="deadline"))
    assert 23.9 < (deadline - pendulum.now("UTC")).total_seconds() / 3600 <= 24, "limits.TUNING_BUDGET from now"

    for index, trial in enumerate(trials):  # what each trial's pod writes: its scores
        accuracy = 0.5 + index / 100
        metrics = {
            "accuracy": accuracy,
            "f1": accuracy,
            "validation_loss": 0.6,
            "epochs_run": 1,
            "stopped_early": False,
        }
        (Path(search) / "trials" / trial["name"]).mkdir(parents=True)
        (Path(search) / "trials" / trial["name"] / "metrics.json").write_text(json.dumps(metrics))
    run["ti"].task_id = "choose_setting"
    dag.get_task("choose_setting").execute(run)
    chosen = run["ti"].xcom_pull("choose_setting")
    assert chosen == {
        "setting": trials[-1]["setting"],
        "best": {"name": trials[-1]["name"], "setting": trials[-1]["setting"], "accuracy": 0.81, "f1": 0.81},
        "trials": MAX_TUNING_TRIALS,
        "tuning": f"{search}/tuning.json",
    }
    assert (Path(search) / "tuning.json").is_file()
    names = [pod["metadata"]["name"] for pod in fake_kubernetes.pods_run]
    assert [name.rsplit("-", 1)[0] for name in names] == ["nlp-tune-plan", "nlp-tune-select"]
    assert live_pods(fake_kubernetes) == []


def test_trials_run_as_pods_of_their_own_scoring_only_and_stop_early_through_the_shared_scores_folder(
    fake_kubernetes, staged_data, tiny_model
):
    search = fake_kubernetes.volume / "nlp_eks" / "20260501T000000Z" / "tune" / TRY1
    (search / "scores").mkdir(parents=True)
    seed_peers(lambda name, text: (search / "scores" / name).write_text(text))
    trials = [{"name": "trial-000", "setting": trial_setting(2)}, {"name": "trial-001", "setting": trial_setting(1)}]
    first, second = run_trials(str(search), trials, staged_data, tiny_model)

    names = [pod["metadata"]["name"] for pod in fake_kubernetes.pods_run]
    assert [name.rsplit("-", 1)[0] for name in names] == ["nlp-tune-trial-000", "nlp-tune-trial-001"], names
    assert [pod["metadata"]["labels"]["map_index"] for pod in fake_kubernetes.pods_run] == ["0", "1"]
    assert [pod["spec"]["containers"][0]["args"][0] for pod in fake_kubernetes.pods_run] == ["train", "train"]
    assert first["name"] == "trial-000" and first["setting"] == trials[0]["setting"]
    assert first["output"] == str(search / "trials" / "trial-000")
    assert first["metrics"]["stopped_early"] is True, "below the others' median after its first of 2 epochs"
    assert second["metrics"]["stopped_early"] is False, "a last epoch is never cut short"
    for trial in trials:
        folder = search / "trials" / trial["name"]
        assert (folder / "metrics.json").is_file() and not (folder / "saved_model").exists(), "scored only"
    assert len(list((search / "scores").glob("*.json"))) == 4, "each trial recorded its scores beside the others'"
    assert live_pods(fake_kubernetes) == [], "finished trial pods are deleted"
    assert forbidden(fake_kubernetes.api_calls()) == set(), "the Airflow workers' Role allows every call"


def test_a_trial_that_cannot_be_scored_is_reported_failed_so_the_search_goes_on(fake_kubernetes, staged_data, tmp_path):
    """Bad input at once, another failure on its last try (before, it is retried), and a trial at or past the
    search's deadline: the task succeeds with the trial failed, which tune select counts so."""
    from airflow.sdk.exceptions import AirflowException

    search = str(fake_kubernetes.volume / "search")
    bad_input = {"name": "trial-000", "setting": {"epochs": "many"}}
    [result] = run_trials(search, [bad_input], staged_data, tmp_path)
    assert result == bad_input | {"status": "failed", "reason": result["reason"]}
    assert result["reason"].startswith("failed on try 1: train failed on a bad flag, not retried")

    no_model = {"name": "trial-000", "setting": trial_setting(1)}  # the base model is missing: retried
    with pytest.raises(AirflowException, match="train exited with 1"):
        run_trials(search, [no_model], staged_data, tmp_path / "missing", try_number=1)
    [result] = run_trials(search, [no_model], staged_data, tmp_path / "missing", try_number=3)
    assert result["status"] == "failed" and result["reason"].startswith("failed on try 3: train exited with 1")

    created = len(fake_kubernetes.pods_run)
    [result] = run_trials(search, [no_model], staged_data, tmp_path, seconds=-1)
    assert result["reason"] == "did not start: the search's deadline had passed"
    assert len(fake_kubernetes.pods_run) == created, "no pod"

    [result] = run_trials(search, [no_model], staged_data, tmp_path, seconds=2)  # stopped by Kubernetes at 2 s
    [stopped] = fake_kubernetes.pods_run[created:]
    assert stopped["spec"]["activeDeadlineSeconds"] == 2
    last = [
        version for version in fake_kubernetes.history(PODS, "nlp", stopped["metadata"]["name"]) if "status" in version
    ]
    assert (last[-1]["status"]["phase"], last[-1]["status"]["reason"]) == ("Failed", "DeadlineExceeded")
    assert last[-1]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137, "killed"
    assert result["status"] == "failed" and result["reason"].startswith("ran past the search's deadline")
    assert live_pods(fake_kubernetes) == []


def test_on_an_s3_artefact_root_trials_share_their_scores_under_the_runs_prefix(
    fake_kubernetes, s3, staged_data, tiny_model, monkeypatch
):
    bucket, client = s3["bucket"], s3["client"]
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", f"s3://{bucket}/root")
    prefix = f"root/nlp_eks/20260501T000000Z/tune/{TRY1}"
    seed_peers(lambda name, text: client.put_object(Bucket=bucket, Key=f"{prefix}/scores/{name}", Body=text))
    [result] = run_trials(
        f"s3://{bucket}/{prefix}", [{"name": "trial-000", "setting": trial_setting(2)}], staged_data, tiny_model
    )

    assert result["metrics"]["stopped_early"] is True, "it read the other trials' scores on S3"
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert len([key for key in keys if key.startswith(f"{prefix}/scores/")]) == 3, "and wrote its own there"
    assert f"{prefix}/trials/trial-000/metrics.json" in keys
    assert not list(fake_kubernetes.volume.iterdir()), "nothing on a volume"


# ---- multi-worker training ----------------------------------------------------------------------------------------
def train_context(staged_data, tiny_model, **params) -> dict:
    return context(
        "train",
        xcom={("stage_dataset", "return_value"): {"data": str(staged_data), "fingerprint": "sha256:0f"}},
        base_model=str(tiny_model),
        training_workers=2,
        epochs=1,
        batch_size=16,
        **params,
    )


def train_operator(**kwargs) -> TrainOperator:
    defaults = {
        "task_id": "train",
        "build_pod": lambda ctx: eks._pod(ctx, eks._train_arguments(ctx)),
        "build_job": eks._training_job,
        "workers": lambda ctx: ctx["params"]["training_workers"],
        "summarize": lambda ctx, result: {"model": eks.step_output(ctx, "model")} | result,
        "kubernetes_conn_id": "kubernetes_default",
        "namespace": "nlp",
        "job_poll_interval": 1,
    }
    return TrainOperator(**(defaults | kwargs))


def staging_job(ctx) -> list[dict]:
    """The run's training Service and Job, its workers running the cheap stage step of the context's try
    (``source``, ``base_model`` Params): a result that tells which try's job gave it."""
    service, job = eks._training_job(ctx)
    stage = [str(argument) for argument in eks._stage_arguments(ctx)]
    job["spec"]["template"]["spec"]["containers"][0]["args"] = stage
    return [service, job]


def earlier_staging_job(fake_kubernetes, ctx) -> None:
    """What an earlier try (``ctx``) left: its ``staging_job``, run to completion."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from kubernetes import client

    service, job = staging_job(ctx)
    api = KubernetesHook(conn_id="kubernetes_default").api_client
    client.CoreV1Api(api).create_namespaced_service("nlp", service)
    client.BatchV1Api(api).create_namespaced_job("nlp", job)
    wait_for(
        lambda: [found for found in fake_kubernetes.objects(JOBS) if (found.get("status") or {}).get("conditions")]
    )


def test_training_on_several_workers_is_an_indexed_job_under_a_headless_service_without_any_crd(
    fake_kubernetes, staged_data, tiny_model, capsys, caplog
):
    caplog.set_level(logging.INFO)
    run = train_context(staged_data, tiny_model)
    train_operator().execute(run)

    result = run["ti"].xcom_pull("train")
    assert (fake_kubernetes.volume / "nlp_eks" / "20260501T000000Z" / "model" / TRY1 / "saved_model").is_dir()
    assert result["metrics"]["workers"] == 2 and 0 <= result["metrics"]["accuracy"] <= 1, "trained on 2 workers"
    [job] = [request.data for request in fake_kubernetes.requests_to("post", r"/namespaces/nlp/jobs$")]
    [service] = [request.data for request in fake_kubernetes.requests_to("post", r"/namespaces/nlp/services$")]
    name = job["metadata"]["name"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    assert pod["subdomain"] == service["metadata"]["name"] == name and pod["restartPolicy"] == "Never"
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"][0]["port"] == 2222
    [rule] = [rule for rule in spec["podFailurePolicy"]["rules"] if rule["action"] == "FailJob"]
    assert rule["onExitCodes"]["values"] == [2, 3], "bad input fails the Job"
    names = sorted(pod["metadata"]["name"] for pod in fake_kubernetes.pods_run)
    assert [pod_name.rsplit("-", 1)[0] for pod_name in names] == [f"{name}-0", f"{name}-1"]
    [container] = pod["containers"]
    listed = next(variable["value"] for variable in container["env"] if variable["name"] == "TASKS_WORKER_ADDRESSES")
    assert listed == f"{name}-0.{name}:2222,{name}-1.{name}:2222", "each worker's stable hostname"
    environments = [fake_kubernetes.environments[pod_name] for pod_name in names]
    assert [environment["JOB_COMPLETION_INDEX"] for environment in environments] == ["0", "1"]
    [dialled] = {environment["TASKS_WORKER_ADDRESSES"] for environment in environments}
    assert len(set(dialled.split(","))) == 2 and "nlp-train" not in dialled, "the hostnames resolved"
    log = task_log(capsys, caplog)
    assert (
        f'TF_CONFIG={{"cluster": {{"worker": {json.dumps(dialled.split(","))}}}, "task": {{"type": "worker", "index": 0}}}}'
        in log
    )
    assert "[worker-0]" in log and "[worker-0] b'" not in log, "the chief's log line by line, not a bytes repr"
    assert not fake_kubernetes.requests_to("get", r"kubeflow"), "no Training Operator involved"
    assert fake_kubernetes.objects(JOBS) == [] and fake_kubernetes.objects(SERVICES) == [], "job and Service deleted"
    assert live_pods(fake_kubernetes) == [], "with its pods"
    assert forbidden(fake_kubernetes.api_calls()) == set(), "the Airflow workers' Role allows every call"


def test_a_completed_training_job_of_an_earlier_try_is_reused(fake_kubernetes, staged_data, raw_data, minilm_path):
    """The worker died after the Job completed: the retry takes its chief's result instead of training again.
    (The Jobs here run the cheap stage step, so the result tells which try's Job gave it.)"""
    params = {"source": str(raw_data)}
    earlier_staging_job(fake_kubernetes, train_context(staged_data, minilm_path, **params))

    retry = train_context(staged_data, minilm_path, try_number=2, **params)
    train_operator(build_job=staging_job).execute(retry)
    assert len(fake_kubernetes.requests_to("post", r"/namespaces/nlp/jobs$")) == 1, "no second Job"
    result = retry["ti"].xcom_pull("train")
    assert result["rows"]["train"] == 256 and result["output"].endswith(TRY1), "the earlier try's result"


def test_a_completed_training_job_of_other_inputs_or_without_its_pods_is_not_reused(
    fake_kubernetes, staged_data, raw_data, minilm_path
):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    params = {"source": str(raw_data)}
    other = train_context(staged_data, minilm_path, max_seq_length=64, **params)  # then the Params were changed
    earlier_staging_job(fake_kubernetes, other)
    retry = train_context(staged_data, minilm_path, try_number=2, **params)
    train_operator(build_job=staging_job).execute(retry)
    assert len(fake_kubernetes.requests_to("post", r"/namespaces/nlp/jobs$")) == 2, "run again"
    assert retry["ti"].xcom_pull("train")["output"].endswith(TRY2), "this try's result"

    earlier_staging_job(fake_kubernetes, retry)
    core = KubernetesHook(conn_id="kubernetes_default").core_v1_client
    for pod in live_pods(fake_kubernetes):  # the completed Job's pods are gone (deleted by hand, evicted)
        core.delete_namespaced_pod(pod["metadata"]["name"], "nlp")
    third = train_context(staged_data, minilm_path, try_number=3, **params)
    train_operator(build_job=staging_job).execute(third)
    assert len(fake_kubernetes.requests_to("post", r"/namespaces/nlp/jobs$")) == 4, "run again, not 'failed'"
    assert third["ti"].xcom_pull("train")["output"].endswith(TRY1.replace("try1-", "try3-"))


def test_a_crash_looping_bad_input_worker_fails_the_task_at_once_without_a_retry(
    fake_kubernetes, staged_data, tiny_model
):
    """A TFJob's workers restart in place (restartPolicy OnFailure): exit 2 is read from the last state."""
    from airflow.sdk.exceptions import AirflowFailException

    fake_kubernetes.training_operator = True
    run = train_context(staged_data, tiny_model, training_backend="tfjob")
    run["params"]["epochs"] = "many"  # a bad flag: exit 2, again after every restart
    with pytest.raises(AirflowFailException, match=r"(?s)train failed on a bad flag, not retried:.*epochs") as raised:
        train_operator().execute(run)
    assert "-1" not in str(raised.value)
    assert fake_kubernetes.objects(TFJOBS) == [] and live_pods(fake_kubernetes) == [], "the job was deleted"


def test_bad_input_fails_an_indexed_job_through_its_pod_failure_policy(fake_kubernetes, staged_data, tiny_model):
    from airflow.sdk.exceptions import AirflowFailException

    run = train_context(staged_data, tiny_model)
    run["params"]["epochs"] = "many"
    with pytest.raises(AirflowFailException, match=r"(?s)train failed on a bad flag, not retried:.*epochs"):
        train_operator().execute(run)
    assert len(fake_kubernetes.pods_run) == 2, "no worker ran twice"
    assert fake_kubernetes.objects(JOBS) == [] and live_pods(fake_kubernetes) == []


@pytest.mark.parametrize("backend", ["indexed-job", "tfjob"])
def test_training_workers_no_node_can_take_time_out_like_a_single_pod(
    fake_kubernetes, staged_data, tiny_model, backend
):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    fake_kubernetes.training_operator = True
    fake_kubernetes.unschedulable = True
    run = train_context(staged_data, tiny_model, training_backend=backend)
    with pytest.raises(
        AirflowException,
        match=r"(?s)worker nlp/nlp-train-\S+ did not start in 3 s \(Unschedulable: 0/3 nodes.*Insufficient cpu",
    ) as raised:
        train_operator(startup_timeout_seconds=3).execute(run)
    assert not isinstance(raised.value, AirflowFailException), "retried, as a single pod's timeout is"
    assert fake_kubernetes.objects(JOBS) == fake_kubernetes.objects(TFJOBS) == [] and live_pods(fake_kubernetes) == []


@pytest.mark.parametrize("backend", ["indexed-job", "tfjob"])
def test_training_workers_the_cluster_refuses_to_create_time_out_naming_its_failed_create_events(
    fake_kubernetes, staged_data, tiny_model, backend, monkeypatch
):
    """No pod at all, so none is Pending: only the job's FailedCreate events say why (here Pod Security)."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
    from nlp_pipeline.specs import kubernetes as manifests

    from tests.airflow.test_fake_kubernetes import RESTRICTED

    fake_kubernetes.training_operator = True
    fake_kubernetes.create_namespace({"metadata": {"name": "nlp", "labels": RESTRICTED}})
    monkeypatch.setattr(manifests, "CONTAINER_SECURITY", {})  # workers the restricted profile refuses
    monkeypatch.setattr(manifests, "POD_SECURITY", {})
    run = train_context(staged_data, tiny_model, training_backend=backend)
    with pytest.raises(
        AirflowException,
        match=r'(?s)nlp/nlp-train-\S+: the cluster created 0 of 2 workers in 3 s \(Error creating: pods "nlp-train-'
        r'\S+" is forbidden: violates PodSecurity "restricted:latest"',
    ) as raised:
        train_operator(startup_timeout_seconds=3, job_timeout_seconds=30).execute(run)
    assert not isinstance(raised.value, AirflowFailException), "retried, as a startup timeout is"
    assert fake_kubernetes.objects(JOBS) == fake_kubernetes.objects(TFJOBS) == fake_kubernetes.objects(SERVICES) == []


def test_a_training_job_the_api_server_refuses_leaves_no_service_behind(fake_kubernetes, staged_data, tiny_model):
    from kubernetes.client.exceptions import ApiException

    def invalid_job(ctx) -> list[dict]:
        service, job = eks._training_job(ctx)
        job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"  # 422 with a pod failure policy
        return [service, job]

    with pytest.raises(ApiException) as refused:
        train_operator(build_job=invalid_job).execute(train_context(staged_data, tiny_model))
    assert refused.value.status == 422
    assert fake_kubernetes.requests_to("post", r"/namespaces/nlp/services$"), "the Service was created first"
    assert fake_kubernetes.objects(SERVICES) == [], "and deleted when the Job was refused"


def test_a_training_task_killed_before_its_job_exists_never_creates_it(fake_kubernetes, staged_data, tiny_model):
    """Airflow calls on_kill from its SIGTERM handler and the task's code goes on: it must not start the job."""
    from airflow.sdk.exceptions import AirflowException

    fake_kubernetes.hold_pods = True
    operator = train_operator(job_timeout_seconds=5)
    operator.on_kill()  # while the task was building the job's objects
    with pytest.raises(AirflowException, match="killed before it started Job nlp/nlp-train-"):
        operator.execute(train_context(staged_data, tiny_model))
    assert not fake_kubernetes.requests_to("post", r"/namespaces/nlp/(jobs|services)$")


@pytest.mark.parametrize("backend", ["indexed-job", "tfjob"])
def test_killing_the_training_task_deletes_the_whole_job(fake_kubernetes, staged_data, tiny_model, backend):
    import threading

    from airflow.sdk.exceptions import AirflowException

    fake_kubernetes.training_operator = True
    fake_kubernetes.hold_pods = True
    operator = train_operator()
    run = train_context(staged_data, tiny_model, training_backend=backend)
    running = threading.Thread(target=lambda: pytest.raises(AirflowException, operator.execute, run), daemon=True)
    running.start()
    wait_for(lambda: len(live_pods(fake_kubernetes)) == 2)

    operator.on_kill()
    wait_for(lambda: not live_pods(fake_kubernetes), 30)
    assert fake_kubernetes.objects(JOBS) == fake_kubernetes.objects(TFJOBS) == [], "the job"
    assert fake_kubernetes.objects(SERVICES) == [], "and its headless Service"
    running.join(30)
    assert not running.is_alive(), "the task's wait ends"


def test_the_tfjob_option_on_a_cluster_without_the_training_operator_is_refused_before_any_pod(
    fake_kubernetes, staged_data, tiny_model
):
    from airflow.sdk.exceptions import AirflowFailException

    run = train_context(staged_data, tiny_model, training_backend="tfjob")
    with pytest.raises(AirflowFailException, match=r"training_backend.*Training Operator v1\.9.*docs/eks\.md"):
        train_operator().execute(run)
    assert not fake_kubernetes.requests_to("post", r".") and not fake_kubernetes.pods_run


def test_the_tfjob_option_runs_a_tfjob_watched_to_completion_then_deleted(
    fake_kubernetes, staged_data, tiny_model, capsys, caplog
):
    caplog.set_level(logging.INFO)
    fake_kubernetes.training_operator = True
    run = train_context(staged_data, tiny_model, training_backend="tfjob")
    operator = train_operator()
    operator.execute(run)

    result = run["ti"].xcom_pull("train")
    assert (fake_kubernetes.volume / "nlp_eks" / "20260501T000000Z" / "model" / TRY1 / "saved_model").is_dir()
    assert result["metrics"]["workers"] == 2 and 0 <= result["metrics"]["accuracy"] <= 1
    [job] = [request.data for request in fake_kubernetes.requests_to("post", r"/tfjobs$")]
    assert job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2
    assert sorted(pod["metadata"]["name"] for pod in fake_kubernetes.pods_run) == [
        f"{job['metadata']['name']}-worker-0",
        f"{job['metadata']['name']}-worker-1",
    ]
    assert "[worker-0]" in (log := task_log(capsys, caplog)) and "workers active" in log
    assert fake_kubernetes.objects(TFJOBS) == [] and live_pods(fake_kubernetes) == [], "job and pods deleted"
    assert forbidden(fake_kubernetes.api_calls()) == set(), "the Airflow workers' Role allows every call"


# ---- rollout ------------------------------------------------------------------------------------------------------
def deploy(cluster, model, **params) -> dict:
    from tasks.serving.served_model import model_version

    run = context("deploy", server_replicas=2, server_cpu="1", server_memory="1Gi", **params)
    return eks.deploy.function({"model": str(model), "version": model_version(model)}, **run)


def serving(cluster) -> str:
    [deployment] = cluster.objects(DEPLOYMENTS, "nlp")
    return deployment["spec"]["template"]["metadata"]["annotations"]["nlp.pipeline/model-uri"]


def test_deploy_applies_the_server_waits_for_the_rollout_and_undoes_one_that_never_completes(
    fake_kubernetes, trained_tiny, int8_tiny, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline.hooks.kubernetes import served_model

    monkeypatch.setattr(eks, "CHECK_INTERVAL", 1)
    first = deploy(fake_kubernetes, trained_tiny)
    assert first["previous_model"] is None and serving(fake_kubernetes) == str(trained_tiny)
    [deployment] = fake_kubernetes.objects(DEPLOYMENTS, "nlp")
    assert deployment["status"]["updatedReplicas"] == deployment["status"]["availableReplicas"] == 2
    assert deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"] == 1
    assert {obj["kind"] for obj in (request.data for request in fake_kubernetes.requests_to("patch", r"/nlp/"))} >= {
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    }
    assert deploy(fake_kubernetes, trained_tiny)["previous_model"] is None, "applied again: no change"
    assert fake_kubernetes.objects(DEPLOYMENTS, "nlp")[0]["metadata"]["generation"] == 1

    # the smoke test against it: tests/airflow/test_kubernetes_rollout.py

    fake_kubernetes.broken_rollouts = True  # the new model's pods never become ready
    with pytest.raises(AirflowFailException, match="did not complete in 6 s.*previous revision .* is serving again"):
        # 0.1 minutes: below the Param's minimum (1), which this direct call does not check; the same wait
        deploy(fake_kubernetes, int8_tiny, rollout_timeout_minutes=0.1)
    assert serving(fake_kubernetes) == str(trained_tiny)
    assert served_model(fake_kubernetes.objects(DEPLOYMENTS, "nlp")[0]) == str(trained_tiny)


def test_the_served_model_is_the_next_runs_champion_and_a_broken_answer_fails_the_smoke_test(
    fake_kubernetes, trained_tiny, monkeypatch
):
    """What a second run finds on the server: the model it is gated against and what the training cache compares
    (its data fingerprint and training configuration); and the smoke-test pod refusing an answer no model gives."""
    from airflow.sdk.exceptions import AirflowException
    from nlp_pipeline import decisions, policy

    from tests.airflow.test_kubernetes_rollout import smoke_operator

    monkeypatch.setattr(eks, "CHECK_INTERVAL", 1)
    deployed = deploy(fake_kubernetes, trained_tiny)
    next_run = context("evaluate", try_number=1)
    assert eks.production_model() == {
        "model": str(trained_tiny),
        "version": deployed["version"],  # what the monitor DAG's drift events name
        "data_fingerprint": "sha256:0f",
        "config": decisions.training_config(next_run["params"]),
    }
    next_run["ti"].xcom |= {
        ("stage_dataset", "return_value"): {"data": "/staged", "fingerprint": "sha256:0f"},
        ("quantize", "return_value"): {"model": "/quantized"},
        (policy.TASK_ID, "return_value"): policy.DEFAULTS,  # what the run's first task fixed
    }
    evaluate = eks._evaluate_arguments(next_run)
    assert evaluate[evaluate.index("--champion") + 1] == str(trained_tiny)

    fake_kubernetes.broken_answers = True
    smoke = context("smoke_test")
    smoke["ti"].xcom[("deploy", "return_value")] = deployed
    with pytest.raises(AirflowException, match="smoke test failed"):
        smoke_operator().execute(smoke)
    assert live_pods(fake_kubernetes) == []


# ---- monitor: nlp_monitor_eks's pod ---------------------------------------------------------------------------------
MONITOR_RUN_ID = "scheduled__2026-12-03T16:00:00+00:00"


def monitor_run(cluster, capture: list[dict]) -> tuple[StepPodOperator, dict]:
    """nlp_monitor_eks's monitor task and its context: the ``capture`` records under the volume's capture/nlp_eks
    (as the server writes them), the production model a folder whose card holds the traffic baseline."""

    from nlp_pipeline.monitoring import build_monitor
    from nlp_pipeline.params import monitor_params

    from tasks.runtime import model_card
    from tests.tasks.monitoring.conftest import WINDOW_END, traffic_baseline, write_capture

    write_capture(cluster.volume / "capture" / "nlp_eks", capture)
    model = cluster.volume / "nlp_eks" / "20261126T000000Z" / "quantized" / TRY1
    model.mkdir(parents=True)
    card = {model_card.TRAFFIC_BASELINE: traffic_baseline(2000)}
    (model / model_card.JSON_CARD).write_text(json.dumps(card))
    run = task_context(
        "nlp_monitor_eks",
        "monitor",
        {name: param.value for name, param in monitor_params().items()},
        logical_date=pendulum.instance(WINDOW_END),  # the cron timetable's: its data interval's end
        run_id=MONITOR_RUN_ID,
        xcom={("production_model", "return_value"): {"model": str(model), "version": "v1"}},
    ) | {"data_interval_end": pendulum.instance(WINDOW_END)}
    operator = build_monitor(eks).get_task("monitor")
    operator.kubernetes_conn_id, operator.namespace = "kubernetes_default", "nlp"
    operator.poll_interval = operator.startup_check_interval_seconds = 1
    return operator, run


def test_the_monitor_pod_compares_the_servers_capture_with_the_production_models_baseline(fake_kubernetes):
    """The pod's result is the step's (status, records, ...) and ``uri``, the folder of the monitor run where
    monitoring.json is."""
    from tests.tasks.monitoring.conftest import draw

    operator, run = monitor_run(fake_kubernetes, draw(250))
    result = operator.execute(run)

    folder = fake_kubernetes.volume / "nlp_monitor_eks" / "20261203T170000Z" / "monitoring"
    uri = folder / f"try1-{hashlib.sha1(MONITOR_RUN_ID.encode()).hexdigest()[:6]}"
    assert result["uri"] == result["output"] == str(uri)
    assert (result["status"], result["records"], result["drifted"]) == ("ok", 250, [])
    assert json.loads((uri / "monitoring.json").read_text())["records"] == 250
    assert run["ti"].xcom_pull("monitor") == result
    [pod] = fake_kubernetes.pods_run
    assert pod["metadata"]["labels"]["dag_id"] == "nlp_monitor_eks"
    assert live_pods(fake_kubernetes) == [], "the finished pod was deleted"


def test_a_capture_file_the_monitor_cannot_read_fails_the_task_naming_it_without_a_retry(fake_kubernetes):
    from airflow.sdk.exceptions import AirflowFailException

    from tests.tasks.monitoring.conftest import draw

    broken = draw(3)
    broken[1]["probability"] = "high"
    operator, run = monitor_run(fake_kubernetes, broken)
    with pytest.raises(
        AirflowFailException,
        match=r"(?s)monitor failed on bad data, not retried:.*\.jsonl:2: field 'probability' is 'high'",
    ):
        operator.execute(run)
    assert not list(fake_kubernetes.volume.rglob("monitoring.json")), "nothing written"
