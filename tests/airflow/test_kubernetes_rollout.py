"""The inference server's rollout on Kubernetes against the fake cluster (tests/fakes/kubernetes.py), in a
namespace that enforces Pod Security "restricted": the autoscaler hand-over, restoring the previous revision,
a budget that lets a node drain, and the smoke test from a pod inside the cluster.

``deploy`` and ``rollback`` are called as the task runner calls them; the server's Deployment serves a real
model (the fake's controller runs ``python -m tasks serve``)."""

import sys

import pytest
import yaml

from tests.airflow.test_kubernetes_operators import context
from tests.conftest import REPO
from tests.fakes.kubernetes import BUDGETS, DEPLOYMENTS, wait_for
from tests.fakes.pod_security import restricted_violations

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import eks  # noqa: E402
from nlp_pipeline.hooks.kubernetes import wait_for_rollout  # noqa: E402
from nlp_pipeline.operators.kubernetes import StepPodOperator  # noqa: E402

IMAGE_A = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-tasks:1.0"
IMAGE_B = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-tasks:1.1"


@pytest.fixture
def cluster(fake_kubernetes, monkeypatch):
    """The fake cluster with the namespace docker/kubernetes/namespace.yaml makes (restricted enforced)."""
    fake_kubernetes.create_namespace(yaml.safe_load((REPO / "docker" / "kubernetes" / "namespace.yaml").read_text()))
    monkeypatch.setattr(eks, "CHECK_INTERVAL", 1)
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE_A)
    return fake_kubernetes


def run(task_id: str = "deploy", model=None, **params) -> dict:
    from tasks.serving.served_model import model_version

    xcom = {("stage_dataset", "return_value"): {"fingerprint": "sha256:0f"}}
    if model is not None:
        xcom[("register", "return_value")] = {"model": str(model), "version": model_version(model)}
    return context(task_id, xcom=xcom, **({"server_replicas": 1, "server_cpu": "1", "server_memory": "1Gi"} | params))


def deploy(model, **params) -> dict:
    from tasks.serving.served_model import model_version

    return eks.deploy.function({"model": str(model), "version": model_version(model)}, **run(**params))


def live(cluster) -> dict:
    [deployment] = cluster.objects(DEPLOYMENTS, "nlp")
    return deployment


def server_container(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def served(deployment: dict) -> tuple[str, str, str]:
    """(image, model, CPU limit) of the Deployment's pods."""
    container = server_container(deployment)
    arguments = container["args"]
    return container["image"], arguments[arguments.index("--model") + 1], container["resources"]["limits"]["cpu"]


# ---- Pod Security "restricted" --------------------------------------------------------------------------------
def test_every_pod_nlp_eks_creates_passes_pod_security_restricted(monkeypatch):
    from tests.airflow.test_kubernetes_manifests import eks_context

    context = eks_context(monkeypatch, training_workers=2, autoscale_max_replicas=4)
    context["ti"].xcom[("deploy", "return_value")] = {
        "deployment": "nlp-paraphrase",
        "namespace": "nlp",
        "version": "v",
    }
    step = eks._pod(context, ["stage", "--help"])
    server = next(obj for obj in eks._server_objects(context, "/m", {}) if obj["kind"] == "Deployment")
    [job] = [obj for obj in eks._training_job(context) if obj["kind"] == "Job"]
    templates = {
        "step": step["spec"],
        "server": server["spec"]["template"]["spec"],
        "smoke test": eks._smoke_pod(context)["spec"],
        "training worker": job["spec"]["template"]["spec"],
    }
    assert {name: restricted_violations(spec) for name, spec in templates.items()} == dict.fromkeys(templates, [])


def test_a_restricted_namespace_serves_the_server_and_refuses_what_breaks_the_profile(cluster, trained_tiny):
    deploy(trained_tiny)
    assert ("nlp", "nlp-paraphrase") in cluster.serving


# ---- a budget that allows drains ------------------------------------------------------------------------------
def test_the_budget_of_a_single_server_allows_one_eviction_so_a_node_can_be_drained(cluster, trained_tiny):
    deploy(trained_tiny, server_replicas=1)

    def budget():
        [pdb] = cluster.objects(BUDGETS, "nlp")
        return pdb.get("status", {}).get("currentHealthy") == 1 and pdb["status"]

    assert wait_for(budget, 10)["disruptionsAllowed"] == 1


# ---- the autoscaler hand-over -----------------------------------------------------------------------------------
def test_turning_the_autoscaler_on_keeps_the_replicas_and_later_rollouts_keep_what_it_scaled_to(
    cluster, trained_tiny, int8_tiny
):
    deploy(trained_tiny, server_replicas=3)
    deploy(trained_tiny, server_replicas=3, autoscale_max_replicas=8)
    history = cluster.history(DEPLOYMENTS, "nlp", "nlp-paraphrase")
    replicas = [version["spec"].get("replicas", 1) for version in history if "spec" in version]
    assert min(replicas) == 3, "never down to the default 1"

    cluster.metrics_replicas[("nlp", "nlp-paraphrase")] = 5  # load: the autoscaler scales out
    wait_for(lambda: live(cluster)["spec"]["replicas"] == 5, 10)
    scaled_at = len(cluster.history(DEPLOYMENTS, "nlp", "nlp-paraphrase"))
    deploy(int8_tiny, server_replicas=3, autoscale_max_replicas=8)
    later = cluster.history(DEPLOYMENTS, "nlp", "nlp-paraphrase")[scaled_at:]
    assert {version["spec"]["replicas"] for version in later} == {5}, "the rollout left the autoscaler's count"
    assert served(live(cluster))[1] == str(int8_tiny)
    managers = {entry["manager"] for entry in live(cluster)["metadata"]["managedFields"]}
    assert managers == {"nlp-pipeline", "kube-controller-manager"}, "the hand-over manager owns nothing now"

    deploy(int8_tiny, server_replicas=2)  # autoscaling off: the pipeline's count again
    assert live(cluster)["spec"]["replicas"] == 2


# ---- rollback restores the previous revision -------------------------------------------------------------------
def test_a_rollout_of_a_new_image_that_never_gets_ready_is_rolled_back_to_the_old_image_and_model(
    cluster, trained_tiny, int8_tiny, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException

    deploy(trained_tiny)
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE_B)
    cluster.broken_rollouts = True  # the new image's pods never become ready
    with pytest.raises(AirflowFailException, match="did not complete in 6 s.*previous revision .* is serving again"):
        deploy(int8_tiny, rollout_timeout_minutes=0.1)
    assert served(live(cluster)) == (IMAGE_A, str(trained_tiny), "1")


def test_rollback_after_a_failed_smoke_test_restores_the_previous_image_and_settings(
    cluster, trained_tiny, int8_tiny, monkeypatch
):
    deploy(trained_tiny, server_cpu="1")
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE_B)
    deploy(int8_tiny, server_cpu="2")
    deploy(int8_tiny, server_cpu="2")  # a retried deploy keeps what the first try replaced
    assert served(live(cluster)) == (IMAGE_B, str(int8_tiny), "2")

    eks.rollback.function(**run("rollback", model=int8_tiny, server_cpu="2"))
    assert served(live(cluster)) == (IMAGE_A, str(trained_tiny), "1")
    assert live(cluster)["metadata"]["annotations"][eks.DATA_FINGERPRINT] == "sha256:0f", "its lineage too"


def test_a_restore_that_fails_too_fails_deploy_without_a_retry_naming_both(
    cluster, trained_tiny, int8_tiny, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline.hooks import kubernetes as kube_api

    deploy(trained_tiny)

    def never_completes(api_client, name, namespace, **waiting):
        raise kube_api.RolloutFailed(f"the rollout of Deployment {namespace}/{name} did not complete")

    monkeypatch.setattr(kube_api, "wait_for_rollout", never_completes)
    with pytest.raises(AirflowFailException, match=r"(?s)did not complete.*restoring the previous revision.*failed"):
        deploy(int8_tiny)


def test_a_retried_rollback_waits_for_the_restore_its_earlier_try_applied_and_fails_if_it_never_completes(
    cluster, trained_tiny, int8_tiny, monkeypatch
):
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline.hooks import kubernetes as kube_api

    deploy(trained_tiny)
    deploy(int8_tiny)

    def worker_dies(*args, **kwargs):
        raise SystemExit("the worker died after applying the restore")

    monkeypatch.setattr(kube_api, "wait_for_rollout", worker_dies)
    with pytest.raises(SystemExit):
        eks.rollback.function(**run("rollback", model=int8_tiny))
    assert served(live(cluster))[1] == str(trained_tiny), "the restore is applied"

    monkeypatch.setattr(kube_api, "wait_for_rollout", wait_for_rollout)
    monkeypatch.setattr(kube_api, "rollout_state", lambda deployment: (False, "0 of 1 updated replicas available"))
    with pytest.raises(AirflowFailException, match="did not complete.*no working revision"):
        eks.rollback.function(**run("rollback", model=int8_tiny, rollout_timeout_minutes=0.05))


# ---- the smoke test, from inside the cluster ---------------------------------------------------------------------
def smoke_operator() -> StepPodOperator:
    return StepPodOperator(
        task_id="smoke_test",
        step="smoke-test",
        build_pod=eks._smoke_pod,
        summarize=eks._smoke_result,
        kubernetes_conn_id="kubernetes_default",
        namespace="nlp",
        poll_interval=1,
        startup_check_interval_seconds=1,
    )


def test_the_smoke_test_is_a_pod_in_the_cluster_calling_the_service_not_the_api_servers_proxy(cluster, trained_tiny):
    from airflow.sdk.exceptions import AirflowException

    from tests.airflow.test_kubernetes_manifests import forbidden

    deployed = deploy(trained_tiny)
    smoke = run("smoke_test")
    smoke["ti"].xcom[("deploy", "return_value")] = deployed
    smoke_operator().execute(smoke)

    assert smoke["ti"].xcom_pull("smoke_test")["model_version"] == deployed["version"]
    [pod] = cluster.pods_run
    assert pod["spec"]["serviceAccountName"] == "nlp-serving" and not pod["spec"].get("volumes")
    assert "http://nlp-paraphrase.nlp.svc.cluster.local" in server_container({"spec": {"template": pod}})["args"]
    calls = cluster.api_calls()
    assert not [call for call in calls if call[1].startswith("services/")], "nothing through the API server"
    assert forbidden(calls) == set(), "the Airflow workers' Role allows every call"

    wrong = run("smoke_test", try_number=2)
    wrong["ti"].xcom[("deploy", "return_value")] = deployed | {"version": "another-model"}
    with pytest.raises(AirflowException, match="serves .*, not the deployed another-model"):
        smoke_operator().execute(wrong)


# ---- capture: the server writes what it serves under the artefact root --------------------------------------------
def test_a_server_deployed_with_capture_on_writes_what_it_serves_into_the_capture_folder_of_the_volume(
    cluster, trained_tiny
):
    """The fake's server runs the Deployment's flags on this machine, where the volume's capture folder (the
    pod's writable subPath mount) is the volume's folder: what it wrote is what the monitor pod reads."""
    import json

    import httpx

    from tasks.monitoring import records
    from tasks.serving.contract import LABELS

    deployed = deploy(trained_tiny, capture_sample_rate=1.0)
    server = cluster.servers[cluster.serving[("nlp", "nlp-paraphrase")]]
    pairs = [
        {"sentence1": "The cat sat on the mat.", "sentence2": "A cat was sitting on the mat."},
        {"sentence1": "Shares rose by two percent.", "sentence2": "It rained all day in the city."},
    ]
    answer = httpx.post(f"{server.url}/invocations", json={"instances": pairs}, timeout=60)
    assert answer.status_code == 200, answer.text
    server.stop()  # SIGTERM, as the kubelet stops a pod: the server drains and closes its capture file

    capture = cluster.volume / "capture" / "nlp_eks"
    [written] = [path for path in capture.rglob("*") if path.is_file()]
    assert not written.name.startswith(records.HIDDEN) and written.suffix == records.SUFFIX
    captured = [json.loads(line) for line in written.read_text().splitlines()]
    assert [record["model_version"] for record in captured] == [deployed["version"]] * len(pairs)
    assert [LABELS[record["label"]] for record in captured] == answer.json()["labels"]
    assert set(records.FIELDS) <= set(captured[0]) and records.TEXT not in captured[0], "no text unless asked"
    hour = records.hour_folder(records.parse_time(captured[0]["time"]))
    assert written.parent == capture / hour, "one folder per UTC hour"


def test_a_run_with_a_null_capture_rate_keeps_the_live_servers_capture_flags_and_mount(
    cluster, trained_tiny, int8_tiny
):
    """capture_sample_rate null (what a run started by drift or the schedule takes) rolls the next model out with
    the capture the live server runs with: its capture flags and its writable capture mount. With no server yet,
    there is none to keep."""

    from tasks import cli

    def capture_of(deployment: dict) -> tuple[tuple, list[dict]]:
        """The server's capture flags as ``serve`` parses them, and its mounts."""
        container = server_container(deployment)
        flags = cli.parse("serve", container["args"][1:])
        return (flags.capture_dir, flags.capture_sample_rate, flags.capture_text), container.get("volumeMounts", [])

    deploy(trained_tiny, capture_sample_rate=None)
    assert capture_of(live(cluster))[0][0] == "", "no server before: nothing to keep"
    deploy(trained_tiny, capture_sample_rate=0.5, capture_text=True)
    capturing = capture_of(live(cluster))
    assert capturing[0] == (eks.capture_root(), 0.5, True) and capturing[1], "a writable capture mount"

    deploy(int8_tiny, capture_sample_rate=None)
    assert served(live(cluster))[1] == str(int8_tiny)
    assert capture_of(live(cluster)) == capturing
    deploy(trained_tiny, capture_sample_rate=0)
    assert capture_of(live(cluster))[0][0] == ""


# ---- a read-only serving identity ---------------------------------------------------------------------------------
def test_the_server_runs_as_its_read_only_serving_account_with_the_model_volume_mounted_read_only(monkeypatch):
    from tests.airflow.test_kubernetes_manifests import eks_context

    context = eks_context(monkeypatch)
    server = next(obj for obj in eks._server_objects(context, "/m", {}) if obj["kind"] == "Deployment")
    pod = server["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nlp-serving" and pod["automountServiceAccountToken"] is False
    assert server_container(server)["volumeMounts"] == [
        {"name": "artefacts", "mountPath": "/artefacts", "readOnly": True}
    ]
    monkeypatch.setenv("AIRFLOW_VAR_NLP_K8S_SERVING_SERVICE_ACCOUNT", "my-serving")
    server = next(obj for obj in eks._server_objects(context, "/m", {}) if obj["kind"] == "Deployment")
    assert server["spec"]["template"]["spec"]["serviceAccountName"] == "my-serving"
