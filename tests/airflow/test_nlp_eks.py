"""``airflow dags test nlp_eks`` against a Kubernetes API on kmock (tests/fakes/kubernetes.py): every step a
pod that really runs, the server a Deployment that really serves.

A first run creates the server; a second rolls a new model out over it, with the first as the champion.
Then a broken answer fails the smoke test (a pod calling the Service) and ``rollback`` puts the first run's
revision back.
"""

import hashlib
import json

import yaml

from tests.airflow.conftest import REPO, dags_test, model_events, run_airflow, smoke_conf, task_states
from tests.airflow.test_kubernetes_manifests import forbidden
from tests.fakes.kubernetes import DEPLOYMENTS, JOBS, PODS, SERVICES, TFJOBS


def run_hash(run_id: str) -> str:
    """What tells a run's try folders apart from another run's of the same interval (artefacts.run_hash)."""
    return hashlib.sha1(run_id.encode()).hexdigest()[:6]


def served_model(cluster) -> str:
    [deployment] = cluster.objects(DEPLOYMENTS, "nlp")
    return deployment["spec"]["template"]["metadata"]["annotations"]["nlp.pipeline/model-uri"]


def test_create_then_roll_out_a_new_model_then_roll_back(airflow_home, fake_kubernetes, raw_data, tiny_model):
    env, cluster = airflow_home | fake_kubernetes.env, fake_kubernetes
    cluster.create_namespace(yaml.safe_load((REPO / "docker" / "kubernetes" / "namespace.yaml").read_text()))
    conf = smoke_conf(
        raw_data,
        tiny_model,
        step_cpu="1",
        step_memory="2Gi",
        server_cpu="1",
        server_memory="1Gi",
        server_replicas=2,
        node_features=["feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI"],
        tolerations=[{"key": "intel", "operator": "Exists", "effect": "NoSchedule"}],
    )

    first = dags_test(env, "nlp_eks", conf | {"quantize": True}, "2026-06-01")
    states = task_states(env, "nlp_eks", first)
    skipped = ("reject", "approve", "rollback")
    assert {task: states[task] for task in skipped} == dict.fromkeys(skipped, "skipped"), states
    assert all(states[task] == "success" for task in states if task not in skipped), states
    steps = [pod["spec"]["containers"][0]["args"][0] for pod in cluster.pods_run]
    assert steps == ["stage", "train", "quantize", "evaluate", "registry", "smoke-test", "registry"], steps
    [smoke] = [pod for pod in cluster.pods_run if pod["spec"]["containers"][0]["args"][0] == "smoke-test"]
    assert smoke["spec"]["serviceAccountName"] == "nlp-serving" and not smoke["spec"].get("volumes")
    first_annotations = cluster.objects(DEPLOYMENTS, "nlp")[0]["metadata"]["annotations"]
    for pod in (pod for pod in cluster.pods_run if pod is not smoke):
        spec = pod["spec"]
        [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchExpressions"][0]["key"] == "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI"
        assert spec["tolerations"] == [{"key": "intel", "operator": "Exists", "effect": "NoSchedule"}]
        assert spec["volumes"] == [{"name": "artefacts", "persistentVolumeClaim": {"claimName": "nlp-artefacts"}}]
        assert pod["metadata"]["labels"]["dag_id"] == "nlp_eks"
    evaluate = cluster.pods_run[3]["spec"]["containers"][0]["args"]
    assert "--champion" not in evaluate, "no server yet, so no champion"
    assert evaluate[evaluate.index("--timing") + 1] == "quick", "the run's timing Param reaches the step"
    run_folder = cluster.volume / "nlp_eks" / "20260601T000000Z"
    quantized = run_folder / "quantized" / f"try1-{run_hash(first)}"  # each try and run writes a folder of its own
    assert served_model(cluster) == str(quantized)
    # quantize measured on the server's nodes (the same node_features), and its decision says so.
    record = json.loads((quantized / "quantization.json").read_text())
    assert record["hardware"]["target"] == (
        "nodes with feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI=true (the endpoint's)"
    )
    assert cluster.objects(TFJOBS) == [] and cluster.objects(PODS) == [], "finished pods are deleted"
    events = model_events(env, "nlp_eks", first)
    assert [(task, asset, extra["status"]) for task, asset, extra in events] == [
        ("register", "nlp_model_candidates", "approved"),
        ("mark_production", "nlp_model_production", "production"),
    ]
    [(_, _, candidate), (_, _, production)] = events
    assert production == candidate | {"status": "production"} and candidate["uri"] == str(quantized)
    assert candidate["model_card"] == str(quantized / "README.md") and (quantized / "README.md").is_file()
    assert candidate["precision"] == record["chosen_precision"] and candidate["run_id"] == first

    second = dags_test(env, "nlp_eks", conf | {"quantize": False, "training_workers": 2}, "2026-06-08")
    states = task_states(env, "nlp_eks", second)
    assert states["quantize"] == "success" and states["mark_production"] == "success", states
    assert [pod["spec"]["containers"][0]["args"][0] for pod in cluster.pods_run].count("quantize") == 1, "no pod"
    workers = [
        pod
        for pod in cluster.pods_run
        if "batch.kubernetes.io/job-completion-index" in pod["metadata"].get("annotations", {})
    ]
    assert len(workers) == 2 and cluster.objects(JOBS) == [] and cluster.objects(TFJOBS) == [], (
        "an Indexed Job, deleted"
    )
    assert [service["metadata"]["name"] for service in cluster.objects(SERVICES, "nlp")] == ["nlp-paraphrase"]
    evaluate = [pod["spec"]["containers"][0]["args"] for pod in cluster.pods_run][-4]
    assert evaluate[0] == "evaluate"
    assert evaluate[evaluate.index("--champion") + 1] == str(quantized)
    second_model = str(cluster.volume / "nlp_eks" / "20260608T000000Z" / "model" / f"try1-{run_hash(second)}")
    assert served_model(cluster) == second_model
    assert [extra["uri"] for _, _, extra in model_events(env, "nlp_eks", second)] == [second_model] * 2
    [deployment] = cluster.objects(DEPLOYMENTS, "nlp")
    previous = json.loads(deployment["metadata"]["annotations"]["nlp.pipeline/previous-revision"])
    assert previous["template"]["metadata"]["annotations"]["nlp.pipeline/model-uri"] == str(quantized)
    lineage = json.loads(deployment["metadata"]["annotations"]["nlp.pipeline/training-config"])
    assert lineage["quantize"] is False and deployment["metadata"]["annotations"]["nlp.pipeline/data-fingerprint"]
    assert deployment["metadata"]["generation"] == 2 and deployment["status"]["updatedReplicas"] == 2

    cluster.broken_answers = True
    failed = run_airflow(env, "tasks", "test", "nlp_eks", "smoke_test", "2026-06-08", check=False)
    assert "smoke test failed" in failed.stdout + failed.stderr
    run_airflow(env, "tasks", "test", "nlp_eks", "rollback", "2026-06-08")
    assert served_model(cluster) == str(quantized)
    [deployment] = cluster.objects(DEPLOYMENTS, "nlp")
    assert deployment["metadata"]["annotations"] == first_annotations, "the first run's revision, lineage too"
    assert forbidden(cluster.api_calls()) == set(), "docker/kubernetes/airflow-rbac.yaml allows every call made"
