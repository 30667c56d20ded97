"""The nlp_eks pipeline's Kubernetes objects: valid against the Kubernetes 1.37 schema, with the fields that matter."""

import contextlib
import hashlib
import json
import sys
from datetime import UTC, datetime, timedelta

import kubernetes_validate
import pytest

from tests.conftest import REPO
from tests.fakes.pod_security import restricted_violations

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline.specs import kubernetes as k8s  # noqa: E402

KUBERNETES = "1.37.0"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/nlp-tasks:test"
PLACEMENT = k8s.Placement(
    node_features=("feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI", "feature.node.kubernetes.io/cpu-cpuid.AMXBF16"),
    tolerations=({"key": "intel", "operator": "Equal", "value": "true", "effect": "NoSchedule"},),
)


def valid(manifest: dict) -> dict:
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
    return manifest


def deployment(**overrides) -> dict:
    arguments = {
        "replicas": 2,
        "resources": k8s.Resources(),
        "placement": PLACEMENT,
        "service_account": "nlp-tasks",
        "volume_claim": None,
    } | overrides
    return valid(k8s.inference_deployment("nlp-server", "nlp", IMAGE, "s3://bucket/run/quantized/", **arguments))


def test_the_inference_deployment_rolls_out_without_taking_a_serving_pod_away():
    manifest = deployment()
    spec = manifest["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == IMAGE and container["args"][:3] == ["serve", "--model", "s3://bucket/run/quantized/"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/ping", "port": "http"}, probe
    from tasks.config import ServeArguments

    # SIGTERM after the preStop pause (endpoints drop the pod meanwhile), then the server's own drain.
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": k8s.PRE_STOP_SECONDS}}}
    assert k8s.PRE_STOP_SECONDS >= 5
    assert pod["terminationGracePeriodSeconds"] > k8s.PRE_STOP_SECONDS + ServeArguments.graceful_timeout
    assert pod["serviceAccountName"] == "nlp-tasks" and container["securityContext"]["runAsNonRoot"] is True
    assert container["imagePullPolicy"] == "IfNotPresent", "a versioned tag"
    assert spec["template"]["metadata"]["annotations"]["nlp.pipeline/model-uri"] == "s3://bucket/run/quantized/"


def test_pods_go_to_intel_nodes_with_the_features_and_size_threads_from_their_cpu_limit():
    pod = deployment()["spec"]["template"]["spec"]
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [expression["key"] for expression in term["matchExpressions"]] == list(PLACEMENT.node_features)
    assert pod["tolerations"] == list(PLACEMENT.tolerations)
    [container] = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "4", "memory": "8Gi"},
    }
    threads = next(variable for variable in container["env"] if variable["name"] == "OMP_NUM_THREADS")
    assert threads["valueFrom"]["resourceFieldRef"] == {
        "containerName": "server",
        "resource": "limits.cpu",
        "divisor": "1",
    }
    unplaced = k8s.intel_placement(k8s.Placement(node_features=(), tolerations=()))
    assert unplaced == {}, "no NFD labels asked for: any node"


def test_a_shared_volume_is_mounted_when_artefacts_live_on_a_claim():
    pod = deployment(volume_claim="nlp-artefacts")["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "artefacts", "persistentVolumeClaim": {"claimName": "nlp-artefacts"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "artefacts", "mountPath": "/artefacts", "readOnly": True}]


# ---- capture: the server's writable capture folder, the model read-only ------------------------------------------
VOLUME_CAPTURE = "/artefacts/capture/nlp_eks"


def served_flags(manifest: dict):
    """The server container's flags as ``python -m tasks serve`` parses them."""
    from tasks import cli

    [container] = manifest["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve"
    return cli.parse("serve", container["args"][1:])


def test_without_capture_the_server_has_no_capture_flag_and_no_writable_mount():
    manifest = deployment(volume_claim="nlp-artefacts", capture={})
    pod = manifest["spec"]["template"]["spec"]
    assert not any(argument.startswith("--capture") for argument in pod["containers"][0]["args"])
    assert served_flags(manifest).capture_dir == ""
    assert pod["containers"][0]["volumeMounts"] == [{"name": "artefacts", "mountPath": "/artefacts", "readOnly": True}]
    assert pod["volumes"] == k8s.artefact_volumes("nlp-artefacts")


def test_a_server_capturing_to_the_volume_can_write_its_capture_folder_and_nothing_else():
    """The claim again, read-write, at the capture folder only (its subPath): the model stays read-only."""
    manifest = deployment(
        volume_claim="nlp-artefacts",
        capture={"capture_dir": VOLUME_CAPTURE, "capture_sample_rate": 0.25, "capture_text": True},
    )
    pod = manifest["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    flags = served_flags(manifest)
    assert (flags.capture_dir, flags.capture_sample_rate, flags.capture_text) == (VOLUME_CAPTURE, 0.25, True)
    assert flags.model == "s3://bucket/run/quantized/", "the model is still served"
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "artefacts", "mountPath": "/artefacts", "readOnly": True},
        {"name": "artefacts", "mountPath": VOLUME_CAPTURE, "subPath": "capture/nlp_eks"},
    ]
    assert pod["volumes"] == k8s.artefact_volumes("nlp-artefacts"), "no other volume"


def test_a_server_capturing_to_s3_stages_its_files_in_an_empty_dir_and_mounts_no_claim():
    capture = "s3://bucket/root/capture/nlp_eks"
    manifest = deployment(capture={"capture_dir": capture, "capture_sample_rate": 1.0})
    pod = manifest["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert served_flags(manifest).capture_dir == capture
    assert pod["volumes"] == [{"name": "capture-staging", "emptyDir": {}}], "written with the pods' IRSA role"
    assert pod["containers"][0]["volumeMounts"] == [{"name": "capture-staging", "mountPath": k8s.CAPTURE_STAGING}]


@pytest.mark.parametrize(
    "capture",
    [
        {"capture_dir": VOLUME_CAPTURE, "capture_sample_rate": 0.25, "capture_text": True},
        {"capture_dir": "s3://bucket/root/capture/nlp_eks", "capture_sample_rate": 1.0, "capture_text": False},
        {},
    ],
    ids=["volume-text", "s3", "off"],
)
def test_the_live_servers_capture_reads_back_as_the_flags_it_was_deployed_with_as_serve_parses_them(capture):
    """What a run with capture_sample_rate null keeps (eks._server_objects): the live Deployment's capture flags."""
    manifest = deployment(volume_claim="nlp-artefacts", capture=capture)
    assert k8s.served_capture(manifest) == capture
    flags = served_flags(manifest)
    if capture:
        assert {name: getattr(flags, name) for name in capture} == capture
    assert k8s.served_capture(None) == {}


@pytest.mark.parametrize(
    ("claim", "folder"),
    [("nlp-artefacts", "/srv/capture"), ("nlp-artefacts", "/artefacts"), (None, VOLUME_CAPTURE)],
    ids=["outside the volume", "the volume itself", "no volume"],
)
def test_a_local_capture_folder_the_server_cannot_reach_on_the_volume_is_refused(claim, folder):
    with pytest.raises(ValueError, match=f"cannot write its capture to {folder}: .*artefact volume"):
        deployment(volume_claim=claim, capture={"capture_dir": folder})


def test_a_step_pod_is_a_valid_pod():
    container = k8s.step_container(
        "stage",
        IMAGE,
        ["stage", "--source", "s3://b/raw/", "--output", "/artefacts/x"],
        k8s.Resources(cpu_limit="8"),
        env={"AWS_REGION": "us-east-1"},
        volume_claim="nlp-artefacts",
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nlp-stage", "namespace": "nlp"},
        "spec": {
            "containers": [container],
            "restartPolicy": "Never",
            "serviceAccountName": "nlp-tasks",
            "volumes": k8s.artefact_volumes("nlp-artefacts"),
        }
        | k8s.intel_placement(PLACEMENT),
    }
    valid(pod)
    assert {"name": "AWS_REGION", "value": "us-east-1"} in container["env"]


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        (IMAGE, "IfNotPresent"),
        ("registry.example:5000/nlp-tasks@sha256:" + "a" * 64, "IfNotPresent"),
        ("registry.example:5000/nlp-tasks", "Always"),
        ("nlp-tasks:latest", "Always"),
    ],
)
def test_the_pull_policy_is_explicit_always_only_for_an_image_that_moves(image, policy):
    assert k8s.step_container("c", image, [], k8s.Resources())["imagePullPolicy"] == policy


def test_the_service_budget_and_autoscaler_select_the_server():
    service = valid(k8s.inference_service("nlp-server", "nlp"))
    pdb = valid(k8s.pod_disruption_budget("nlp-server", "nlp"))
    hpa = valid(k8s.horizontal_pod_autoscaler("nlp-server", "nlp", minimum=2, maximum=6, cpu_percent=70))
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == pod_labels and pdb["spec"]["selector"]["matchLabels"] == pod_labels
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"], "one replica can be drained"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nlp-server"}


def test_an_invalid_object_is_refused_by_the_schema():
    broken = deployment()
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty"
    with pytest.raises(kubernetes_validate.ValidationError, match="is not of type 'integer'"):
        valid(broken)


TRAINING = k8s.Training(
    name="nlp-train-x",
    namespace="nlp",
    image=IMAGE,
    arguments=["train", "--data", "/artefacts/staged"],
    workers=3,
    resources=k8s.Resources(cpu_limit="16"),
    placement=PLACEMENT,
    service_account="nlp-tasks",
    volume_claim="nlp-artefacts",
)


def test_a_multi_worker_training_is_an_indexed_job_whose_pods_dial_each_other_under_a_headless_service():
    service, job = valid(k8s.headless_service(TRAINING)), valid(k8s.indexed_job(TRAINING))
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    assert pod["subdomain"] == service["metadata"]["name"] == "nlp-train-x", "pod i is nlp-train-x-i.nlp-train-x"
    assert (
        service["spec"]["clusterIP"] == "None"
        and service["spec"]["selector"] == job["spec"]["template"]["metadata"]["labels"]
    )
    assert pod["restartPolicy"] == "Never", "a pod failure policy needs it"
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (24 * 3600, 24 * 3600), (
        "bounded when nobody watches it, kept long enough for a retry to take its result"
    )
    assert spec["backoffLimit"] == 0 and spec["podFailurePolicy"]["rules"][0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "tensorflow", "operator": "In", "values": [2, 3]},
    }
    [container] = pod["containers"]
    addresses = next(variable["value"] for variable in container["env"] if variable["name"] == "TASKS_WORKER_ADDRESSES")
    assert addresses == "nlp-train-x-0.nlp-train-x:2222,nlp-train-x-1.nlp-train-x:2222,nlp-train-x-2.nlp-train-x:2222"
    assert container["args"][0] == "train" and container["resources"]["limits"]["cpu"] == "16"


def test_the_tfjob_option_is_a_tfjob_whose_pods_are_valid():
    job = k8s.tf_job(TRAINING)
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")  # a CRD: no schema in Kubernetes
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 3 and worker["restartPolicy"] == "OnFailure"
    run_policy = job["spec"]["runPolicy"]  # Training Operator v1 RunPolicy
    assert (run_policy["activeDeadlineSeconds"], run_policy["ttlSecondsAfterFinished"]) == (24 * 3600, 24 * 3600)
    valid({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "worker"}, "template": worker["template"]})
    [container] = worker["template"]["spec"]["containers"]
    assert container["name"] == "tensorflow", "the training operator sets TF_CONFIG in the container of that name"
    assert container["args"][0] == "train" and container["resources"]["limits"]["cpu"] == "16"


# ---- what nlp_eks itself creates, built by its operators and tasks from a run's Params ----------------------------
def eks_context(monkeypatch, **params) -> dict:
    import pendulum
    from nlp_pipeline.params import eks_params, pipeline_params

    from tests.airflow.task_context import task_context

    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE)
    monkeypatch.setenv("AIRFLOW_VAR_NLP_K8S_LIMITS", '{"toleration_keys": ["intel"]}')  # PLACEMENT's taint
    from nlp_pipeline import eks, policy

    monkeypatch.setattr(eks, "production_model", lambda context=None: None)  # no server yet
    defaults = {name: param.value for name, param in (pipeline_params() | eks_params()).items()}
    xcom = {
        ("stage_dataset", "return_value"): {
            "data": "/artefacts/nlp_eks/20260501T000000Z/staged",
            "fingerprint": "sha256:0f",
        },
        ("train", "return_value"): {"model": "/artefacts/nlp_eks/20260501T000000Z/model"},
        ("quantize", "return_value"): {"model": "/artefacts/nlp_eks/20260501T000000Z/quantized"},
        ("evaluate", "return_value"): {
            "model": "/artefacts/nlp_eks/20260501T000000Z/quantized",
            "evaluation": "/artefacts/nlp_eks/20260501T000000Z/evaluation",
        },
        ("register", "return_value"): {"id": 7},
        (policy.TASK_ID, "return_value"): policy.DEFAULTS,  # what the run's first task fixed
    }
    return task_context(
        "nlp_eks",
        "stage_dataset",
        defaults | {"tolerations": list(PLACEMENT.tolerations)} | params,
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id="manual__x",
        xcom=xcom,
    )


def test_a_run_of_the_same_interval_created_again_writes_folders_of_its_own(monkeypatch):
    """A run deleted and created again starts at try 1 again: its folders must not be the first run's, which a
    registry entry (perhaps production) names."""
    from nlp_pipeline import eks

    first = eks_context(monkeypatch)
    again = first | {"run_id": "manual__y"}
    assert eks.step_output(first, "model") != eks.step_output(again, "model")
    assert eks.step_output(first, "model").startswith("/artefacts/nlp_eks/20260501T000000Z/model/try1-")


def test_every_pod_nlp_eks_starts_is_valid_as_the_pod_operator_sends_it(monkeypatch):
    from kubernetes.client import ApiClient
    from nlp_pipeline import eks
    from nlp_pipeline.params import eks_params
    from nlp_pipeline.pipeline import build_pipeline

    context = eks_context(monkeypatch)
    production = {"model": "/artefacts/nlp_eks/20260424T000000Z/quantized", "data_fingerprint": None, "config": None}
    monkeypatch.setattr(eks, "production_model", lambda context=None: production)
    dag = build_pipeline("nlp_eks", eks, params=eks_params(), doc_md="nlp_eks", tags=[])
    steps = {}
    for task_id in ("stage_dataset", "train", "quantize", "evaluate", "register", "reject", "mark_production"):
        operator = dag.get_task(task_id)
        pod = ApiClient().sanitize_for_serialization(operator.build_pod_request_obj(context, dry_run=True))
        valid(pod)
        assert restricted_violations(pod["spec"]) == [], f"{task_id}: Pod Security restricted"
        [container] = pod["spec"]["containers"]
        steps[task_id] = container["args"]
        assert container["name"] == "base" and container["image"] == IMAGE
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert container["resources"] == {
            "requests": {"cpu": "4", "memory": "16Gi"},
            "limits": {"cpu": "4", "memory": "16Gi"},
        }
        assert {"name": "TASKS_RESULT_FILE", "value": "/dev/termination-log"} in container["env"]
        assert container["volumeMounts"] == [{"name": "artefacts", "mountPath": "/artefacts"}]
        assert pod["spec"]["serviceAccountName"] == "nlp-pipeline" and pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["tolerations"] == list(PLACEMENT.tolerations)
        assert pod["metadata"]["namespace"] == "nlp" and pod["metadata"]["labels"]["run_id"] == "manual__x"
    assert [arguments[0] for arguments in steps.values()] == [
        "stage",
        "train",
        "quantize",
        "evaluate",
        *["registry"] * 3,
    ]
    stage, evaluate = steps["stage_dataset"], steps["evaluate"]
    # A folder per try and run: a run of the same interval created again (try 1 again) writes elsewhere.
    run_hash = hashlib.sha1(b"manual__x").hexdigest()[:6]
    assert stage[stage.index("--output") + 1] == f"/artefacts/nlp_eks/20260501T000000Z/staged/try1-{run_hash}"
    assert evaluate[evaluate.index("--champion") + 1].endswith("20260424T000000Z/quantized")
    assert steps["register"][1:5] == ["--registry", "/artefacts/registry.sqlite", "--action", "register"]
    assert steps["reject"][steps["reject"].index("--status") + 1] == "archived"
    assert steps["mark_production"][3:] == ["--action", "promote", "--id", "7"]


def test_the_training_objects_nlp_eks_creates_are_valid(monkeypatch):
    from nlp_pipeline import eks

    context = eks_context(monkeypatch, training_workers=4)
    service, job = [valid(manifest) for manifest in eks._training_job(context)]
    assert job["metadata"]["name"].startswith("nlp-train-20260501t000000z-") and job["metadata"]["namespace"] == "nlp"
    assert (job["kind"], job["spec"]["completions"], service["spec"]["clusterIP"]) == ("Job", 4, "None")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][0] == "train"
    tfjob_context = context | {"params": context["params"] | {"training_backend": "tfjob"}}
    [tfjob] = eks._training_job(tfjob_context)
    worker = tfjob["spec"]["tfReplicaSpecs"]["Worker"]
    assert tfjob["metadata"]["name"] == job["metadata"]["name"], "named once per run, whichever kind"
    assert worker["replicas"] == 4 and worker["template"]["spec"]["containers"][0]["args"][0] == "train"
    valid({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "worker"}, "template": worker["template"]})


PREVIOUS = {"template": {"metadata": {"annotations": {"nlp.pipeline/model-uri": "/m/0"}}}, "lineage": {}}


def test_the_server_objects_nlp_eks_applies_are_valid(monkeypatch):
    from nlp_pipeline import decisions, eks

    context = eks_context(monkeypatch, training_workers=4, server_replicas=3, autoscale_max_replicas=8)
    service, deployment, budget, autoscaler = [
        valid(manifest)
        for manifest in eks._server_objects(
            context, "/artefacts/nlp_eks/20260501T000000Z/quantized", eks._lineage(context), previous=PREVIOUS
        )
    ]
    assert [manifest["kind"] for manifest in (service, deployment, budget, autoscaler)] == [
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]
    assert deployment["spec"]["replicas"] == 3, "what is handed over to the autoscaler (hooks.apply_autoscaled)"
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (3, 8)
    assert deployment["metadata"]["annotations"] == {
        "nlp.pipeline/previous-revision": json.dumps(PREVIOUS, sort_keys=True),
        "nlp.pipeline/data-fingerprint": "sha256:0f",
        "nlp.pipeline/training-config": json.dumps(decisions.training_config(context["params"]), sort_keys=True),
    }
    assert budget["spec"] == {
        "selector": {"matchLabels": service["spec"]["selector"]},
        "maxUnavailable": 1,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    }
    fixed_size = context | {"params": context["params"] | {"autoscale_max_replicas": 0}}
    fixed = eks._server_objects(fixed_size, "m", {})
    assert [manifest["kind"] for manifest in fixed] == ["Service", "Deployment", "PodDisruptionBudget"]
    assert fixed[1]["spec"]["replicas"] == 3 and fixed[1]["metadata"]["annotations"] == {}, "a rollback: no lineage"


DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_the_server_verifies_the_registered_digest_and_a_rollback_the_previous_ones(monkeypatch):
    """The server's args carry the registry entry's digest; the revision it replaced is noted with its URI and
    digest, so a failed rollout (and the rollback task) put the previous model back verified by its own digest."""
    from airflow.sdk.exceptions import AirflowFailException
    from nlp_pipeline import eks
    from nlp_pipeline.hooks import kubernetes as kube_api

    context = eks_context(monkeypatch, autoscale_max_replicas=0)
    cluster, served = {}, []

    def apply(api_client, manifest):
        if manifest["kind"] == "Deployment":
            cluster["live"] = manifest
            [server] = manifest["spec"]["template"]["spec"]["containers"]
            served.append(server["args"][server["args"].index("--model") + 1 :])

    def wait_for_rollout(api_client, name, namespace, **waiting):
        if "--model-digest" in served[-1] and served[-1][-1] == "sha256:broken":
            raise kube_api.RolloutFailed("the rollout did not complete")

    monkeypatch.setattr(kube_api, "apply", apply)
    monkeypatch.setattr(kube_api, "delete", lambda *args: None)
    monkeypatch.setattr(kube_api, "live_deployment", lambda *args: cluster.get("live"))
    monkeypatch.setattr(kube_api, "wait_for_rollout", wait_for_rollout)
    monkeypatch.setattr(eks, "_api_client", contextlib.nullcontext)
    deploy = lambda model, digest: eks._deploy(  # noqa: E731
        context, None, eks.cluster(), {"model": model, "version": model, "digest": digest}
    )

    def noted() -> list[str]:
        revision = json.loads(cluster["live"]["metadata"]["annotations"]["nlp.pipeline/previous-revision"])
        [server] = revision["template"]["spec"]["containers"]
        return server["args"][server["args"].index("--model") + 1 :]

    deploy("/m/try1", DIGEST_A)
    assert served == [["/m/try1", "--host", "0.0.0.0", "--model-digest", DIGEST_A]]
    first = json.loads(json.dumps(cluster["live"]))
    deploy("/m/try2", DIGEST_B)
    assert served[-1][-2:] == ["--model-digest", DIGEST_B]
    assert noted() == ["/m/try1", "--host", "0.0.0.0", "--model-digest", DIGEST_A]
    deploy("/m/try2", DIGEST_B)  # a retry: what it replaced is still the one noted
    assert noted() == ["/m/try1", "--host", "0.0.0.0", "--model-digest", DIGEST_A]

    assert cluster["live"]["metadata"]["annotations"][eks.MODEL_VERSION] == "/m/try2", "the version deployed"
    with pytest.raises(AirflowFailException, match=r"previous revision \(/m/try2\) is serving again"):
        deploy("/m/try3", "sha256:broken")
    assert served[-1] == ["/m/try2", "--host", "0.0.0.0", "--model-digest", DIGEST_B]
    assert cluster["live"]["metadata"]["annotations"][eks.MODEL_VERSION] == "/m/try2", "restored with its model"

    context["ti"].xcom[("register", "return_value")] = {"model": "/m/try2"}
    cluster["live"]["metadata"]["annotations"] = {
        "nlp.pipeline/previous-revision": json.dumps(eks._revision_of(first), sort_keys=True)
    }
    eks.rollback.function(**context)
    assert served[-1] == ["/m/try1", "--host", "0.0.0.0", "--model-digest", DIGEST_A]
    deploy("/m/unregistered-digest", None)
    assert served[-1] == ["/m/unregistered-digest", "--host", "0.0.0.0"], "an entry from before digests"


CLUSTER_MANIFESTS = sorted((REPO / "docker" / "kubernetes").glob("*.yaml"))


def cluster_objects() -> list[dict]:
    import yaml

    return [document for path in CLUSTER_MANIFESTS for document in yaml.safe_load_all(path.read_text()) if document]


def airflow_role() -> dict:
    return next(obj for obj in cluster_objects() if obj["kind"] == "Role" and obj["metadata"]["name"] == "nlp-airflow")


def forbidden(calls: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """The (group, resource, verb) calls the Airflow workers' Role does not allow."""
    rules = airflow_role()["rules"]
    return {
        (group, resource, verb)
        for group, resource, verb in calls
        if not any(
            group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"] for rule in rules
        )
    }


def test_the_cluster_prerequisites_are_valid_and_agree_with_the_dag_defaults():
    objects = [valid(obj) for obj in cluster_objects()]
    kinds = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert kinds == {
        ("Namespace", "nlp"),
        ("ServiceAccount", "nlp-pipeline"),
        ("ServiceAccount", "nlp-serving"),
        ("PersistentVolumeClaim", "nlp-artefacts"),
        ("Role", "nlp-airflow"),
        ("RoleBinding", "nlp-airflow"),
    }
    assert all(obj["metadata"].get("namespace", "nlp") == "nlp" for obj in objects)
    [claim] = [obj for obj in objects if obj["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "TFJob workers and server pods mount it at once"
    assert forbidden({("", "pods", "create"), ("", "pods/log", "get"), ("kubeflow.org", "tfjobs", "delete")}) == set()
    assert forbidden({("kubeflow.org", "tfjobs", "list"), ("batch", "jobs", "list")}) != set(), (
        "never used, not granted"
    )
    assert forbidden({("", "secrets", "get")}) == {("", "secrets", "get")}, "nothing beyond what the DAG does"
    assert forbidden({("", "services/proxy", "create")}), "the smoke test runs in a pod, not through the proxy"
    [namespace] = [obj for obj in objects if obj["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    [serving] = [obj for obj in objects if obj["kind"] == "ServiceAccount" and obj["metadata"]["name"] == "nlp-serving"]
    assert serving["automountServiceAccountToken"] is False, "the server never calls the Kubernetes API"


def test_the_smoke_test_pod_is_valid_restricted_and_runs_where_the_server_does(monkeypatch):
    from kubernetes.client import ApiClient
    from nlp_pipeline import eks
    from nlp_pipeline.params import eks_params
    from nlp_pipeline.pipeline import build_pipeline

    context = eks_context(monkeypatch)
    context["ti"].xcom[("deploy", "return_value")] = {
        "deployment": "nlp-paraphrase",
        "namespace": "nlp",
        "version": "v",
    }
    dag = build_pipeline("nlp_eks", eks, params=eks_params(), doc_md="nlp_eks", tags=[])
    operator = dag.get_task("smoke_test")
    pod = valid(ApiClient().sanitize_for_serialization(operator.build_pod_request_obj(context, dry_run=True)))

    assert restricted_violations(pod["spec"]) == []
    assert pod["spec"]["serviceAccountName"] == "nlp-serving" and not pod["spec"].get("volumes")
    assert (
        pod["spec"]["affinity"] == eks.manifests.intel_placement(eks._server_placement(context["params"]))["affinity"]
    )
    [container] = pod["spec"]["containers"]
    assert container["args"][:3] == ["smoke-test", "--url", "http://nlp-paraphrase.nlp.svc.cluster.local"]


# ---- tuning: the plan, trial and select pods -----------------------------------------------------------------------
SEARCH = "/artefacts/nlp_eks/20260501T000000Z/tune/try1-abcdef"
TRIALS = [
    {
        "name": f"trial-00{index}",
        "setting": {"learning_rate": rate, "epochs": 2, "batch_size": 16, "warmup_ratio": 0.05, "weight_decay": 0.02},
    }
    for index, rate in enumerate((2e-4, 5e-5))
]
TUNED = {
    "setting": TRIALS[1]["setting"],
    "best": {"name": "trial-001", "setting": TRIALS[1]["setting"], "accuracy": 0.8, "f1": 0.85},
    "trials": 2,
    "tuning": f"{SEARCH}/tuning.json",
}


def tuning_context(monkeypatch, **params) -> dict:
    """A run with 2 trials planned in SEARCH and the second chosen."""
    context = eks_context(monkeypatch, tuning_trials=2, tuning_max_steps=40, **params)
    context["ti"].xcom |= {
        ("plan_trials", "return_value"): TRIALS,
        ("plan_trials", "search"): SEARCH,
        ("plan_trials", "deadline"): (datetime.now(UTC) + timedelta(hours=20)).isoformat(),
        ("choose_setting", "return_value"): TUNED,
    }
    return context


def pod_of(operator, context) -> dict:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(operator.build_pod_request_obj(context, dry_run=True))


def parsed(pod: dict):
    from tasks import cli

    [container] = pod["spec"]["containers"]
    step, *flags = container["args"]
    return cli.parse(step, flags)


def tuning_dag():
    from nlp_pipeline import eks
    from nlp_pipeline.params import eks_params
    from nlp_pipeline.pipeline import build_pipeline

    return build_pipeline("nlp_eks", eks, params=eks_params(), doc_md="nlp_eks", tags=[])


def test_the_tuning_pods_are_valid_restricted_and_sized_and_placed_as_the_train_pod(monkeypatch):
    context, dag = tuning_context(monkeypatch), tuning_dag()
    trial = dag.get_task("trial")
    assert trial.is_mapped and trial.partial_kwargs["pool"] == "nlp_tuning"
    trial_pods = []
    for index, planned in enumerate(TRIALS):
        context["ti"].map_index = index
        trial_pods.append(pod_of(trial.unmap({"trial": planned}), context))
    context["ti"].map_index = -1
    pods = {task_id: pod_of(dag.get_task(task_id), context) for task_id in ("plan_trials", "choose_setting", "train")}
    train = pods["train"]
    for pod in [*pods.values(), *trial_pods]:
        valid(pod)
        assert restricted_violations(pod["spec"]) == []
        [container] = pod["spec"]["containers"]  # no XCom sidecar: the result is the termination message
        [train_container] = train["spec"]["containers"]
        same = ("resources", "securityContext", "volumeMounts", "env", "image", "terminationMessagePolicy")
        assert {key: container[key] for key in same} == {key: train_container[key] for key in same}
        for key in ("affinity", "tolerations", "securityContext", "serviceAccountName", "volumes", "restartPolicy"):
            assert pod["spec"][key] == train["spec"][key], key

    assert [19 * 3600 < pod["spec"]["activeDeadlineSeconds"] <= 20 * 3600 for pod in trial_pods] == [True, True], (
        "stopped at the search's deadline"
    )
    names = [pod["metadata"]["name"] for pod in trial_pods]
    assert [name.rsplit("-", 1)[0] for name in names] == ["nlp-tune-trial-000", "nlp-tune-trial-001"], names
    assert [pod["metadata"]["labels"]["map_index"] for pod in trial_pods] == ["0", "1"], "a retry finds its own pod"
    assert pods["plan_trials"]["metadata"]["name"].startswith("nlp-tune-plan-")
    assert pods["choose_setting"]["metadata"]["name"].startswith("nlp-tune-select-")


def test_the_tuning_pods_run_the_plan_each_trial_and_the_selection_and_train_takes_the_chosen_setting(monkeypatch):
    from nlp_pipeline import commands, decisions, eks

    context, dag = tuning_context(monkeypatch), tuning_dag()
    plan = parsed(pod_of(dag.get_task("plan_trials"), context))
    assert (plan.action, plan.trials, plan.max_steps, plan.seed) == ("plan", 2, 40, context["params"]["seed"])
    run_hash = hashlib.sha1(b"manual__x").hexdigest()[:6]
    assert plan.output == f"/artefacts/nlp_eks/20260501T000000Z/tune/try1-{run_hash}"

    context["ti"].map_index = 1
    trial = parsed(pod_of(dag.get_task("trial").unmap({"trial": TRIALS[1]}), context))
    assert trial.score_only and trial.max_steps == 40
    assert {name: getattr(trial, name) for name in TRIALS[1]["setting"]} == TRIALS[1]["setting"]
    assert (trial.data, trial.output) == ("/artefacts/nlp_eks/20260501T000000Z/staged", f"{SEARCH}/trials/trial-001")
    assert trial.early_stopping_dir == f"{SEARCH}/scores", "the trials share the volume's folder"

    context["ti"].map_index = -1
    select = parsed(pod_of(dag.get_task("choose_setting"), context))
    assert (select.action, select.output) == ("select", SEARCH)
    train = parsed(pod_of(dag.get_task("train"), context))
    assert {name: getattr(train, name) for name in TUNED["setting"]} == TUNED["setting"]
    assert not train.score_only and train.tuning == f"{SEARCH}/tuning.json", "recorded in the model card"
    chosen = decisions.training_config(commands.with_setting(context["params"], TUNED["setting"]))
    register = parsed(pod_of(dag.get_task("register"), context))
    assert json.loads(register.config) == chosen, "the registry keeps the tuned setting"
    lineage = json.loads(eks._lineage(context)[eks.TRAINING_CONFIG])
    assert lineage == chosen, "so does the server, whose lineage the next run's training cache reads"


def test_on_an_s3_artefact_root_the_trials_share_their_scores_under_the_runs_prefix(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/root")
    search = "s3://bucket/root/nlp_eks/20260501T000000Z/tune/try1-abcdef"
    context = tuning_context(monkeypatch)
    context["ti"].xcom[("plan_trials", "search")] = search
    context["ti"].map_index = 0
    pod = pod_of(tuning_dag().get_task("trial").unmap({"trial": TRIALS[0]}), context)
    trial = parsed(pod)
    assert (trial.output, trial.early_stopping_dir) == (f"{search}/trials/trial-000", f"{search}/scores")
    assert not pod["spec"].get("volumes"), "no volume: the pods reach S3 with their service account"


def test_with_tuning_off_the_plan_and_selection_need_no_pod_and_train_takes_the_runs_params(monkeypatch):
    dag = tuning_dag()
    context = eks_context(monkeypatch, tuning_trials=0)
    for task_id, result in (("plan_trials", []), ("choose_setting", None)):
        context["ti"].task_id = task_id
        assert dag.get_task(task_id).execute(context) == result, task_id
        assert context["ti"].xcom[(task_id, "return_value")] == result, task_id
    assert dag.get_task("plan_trials").do_xcom_push, "what Airflow maps trial over: [], so trial is skipped"
    assert dag.get_task("choose_setting").trigger_rule == "none_failed"
    train = parsed(pod_of(dag.get_task("train"), context))
    assert (train.learning_rate, train.tuning) == (context["params"]["learning_rate"], "")


# ---- capture and monitoring: the server nlp_eks applies, the pod nlp_monitor_eks starts ---------------------------
def server_deployment(context) -> dict:
    from nlp_pipeline import eks

    objects = eks._server_objects(context, "/artefacts/nlp_eks/20260501T000000Z/quantized", eks._lineage(context))
    return valid(next(manifest for manifest in objects if manifest["kind"] == "Deployment"))


def test_the_server_nlp_eks_applies_captures_into_the_artefact_root_as_the_runs_params_say(monkeypatch):
    off = server_deployment(eks_context(monkeypatch))
    assert served_flags(off).capture_dir == "", "capture is off by default"

    on = server_deployment(eks_context(monkeypatch, capture_sample_rate=0.5))
    flags, pod = served_flags(on), on["spec"]["template"]["spec"]
    assert (flags.capture_dir, flags.capture_sample_rate, flags.capture_text) == (VOLUME_CAPTURE, 0.5, False)
    assert restricted_violations(pod) == []
    assert pod["containers"][0]["volumeMounts"][1] == {
        "name": "artefacts",
        "mountPath": VOLUME_CAPTURE,
        "subPath": "capture/nlp_eks",
    }

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/root/")
    on_s3 = server_deployment(eks_context(monkeypatch, capture_sample_rate=1.0, capture_text=True))
    flags, pod = served_flags(on_s3), on_s3["spec"]["template"]["spec"]
    assert (flags.capture_dir, flags.capture_text) == ("s3://bucket/root/capture/nlp_eks", True)
    assert [volume["name"] for volume in pod["volumes"]] == ["capture-staging"] and restricted_violations(pod) == []


PRODUCTION = {"model": "/artefacts/nlp_eks/20260424T000000Z/quantized/try1-abcdef", "version": "v7"}


def monitor_context(monkeypatch, **params) -> dict:
    import pendulum
    from nlp_pipeline.params import monitor_params

    from tests.airflow.task_context import task_context

    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", IMAGE)
    defaults = {name: param.value for name, param in monitor_params().items()}
    context = task_context(
        "nlp_monitor_eks",
        "monitor",
        defaults | params,
        logical_date=pendulum.datetime(2026, 5, 1, 13, tz="UTC"),
        run_id="scheduled__2026-05-01T13:00:00+00:00",
        xcom={("production_model", "return_value"): PRODUCTION},
    )
    return context | {"data_interval_end": pendulum.datetime(2026, 5, 1, 14, tz="UTC")}


def test_the_monitor_pod_reads_the_servers_capture_against_the_production_model(monkeypatch):
    from nlp_pipeline import eks, limits
    from nlp_pipeline.monitoring import build_monitor

    context = monitor_context(monkeypatch, window_minutes=120, min_records=50)
    operator = build_monitor(eks).get_task("monitor")
    pod = pod_of(operator, context)
    valid(pod)
    assert restricted_violations(pod["spec"]) == []
    arguments = parsed(pod)
    assert (arguments.capture, arguments.baseline) == (VOLUME_CAPTURE, PRODUCTION["model"])
    assert (arguments.window_minutes, arguments.min_records) == (120, 50), "the monitor DAG's Params"
    assert arguments.window(None) == (
        datetime(2026, 5, 1, 11, tzinfo=UTC),
        datetime(2026, 5, 1, 13, tzinfo=UTC),
    ), "the window ends at the run's logical date, not its data interval's end (monitoring.window_end)"
    run_hash = hashlib.sha1(context["run_id"].encode()).hexdigest()[:6]
    assert arguments.output == f"/artefacts/nlp_monitor_eks/20260501T130000Z/monitoring/try1-{run_hash}"
    spec, [container] = pod["spec"], pod["spec"]["containers"]
    assert spec["serviceAccountName"] == "nlp-pipeline", "reads the capture and the model, writes the report"
    assert container["volumeMounts"] == [{"name": "artefacts", "mountPath": "/artefacts"}]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert not spec.get("affinity") and not spec.get("tolerations"), "any node: it needs no CPU feature"
    assert spec["activeDeadlineSeconds"] == limits.MONITOR_LIMIT.total_seconds()
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError", "its result: the termination message"

    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/root")
    on_s3 = pod_of(operator, context)
    assert parsed(on_s3).capture == "s3://bucket/root/capture/nlp_eks" and not on_s3["spec"].get("volumes")
