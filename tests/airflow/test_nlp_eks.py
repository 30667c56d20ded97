"""``airflow dags test nlp_eks`` against a Kubernetes API on kmock (tests/fakes/kubernetes.py): every step a
pod that really runs, the server a Deployment that really serves.

One run tunes (two trial pods mapped over the plan), trains with the chosen setting, quantises and creates the
server. Rolling a new model out over a server, the champion and rollback are the operators' tests
(test_kubernetes_operators.py, test_kubernetes_rollout.py), multi-worker training too.
"""

import hashlib
import json

import yaml

from tests.airflow.conftest import REPO, dags_test, model_events, smoke_conf, task_states
from tests.airflow.test_kubernetes_manifests import forbidden
from tests.fakes.kubernetes import DEPLOYMENTS, PODS, TFJOBS


def run_hash(run_id: str) -> str:
    """What tells a run's try folders apart from another run's of the same interval (artefacts.run_hash)."""
    return hashlib.sha1(run_id.encode()).hexdigest()[:6]


def served_model(cluster) -> str:
    [deployment] = cluster.objects(DEPLOYMENTS, "nlp")
    return deployment["spec"]["template"]["metadata"]["annotations"]["nlp.pipeline/model-uri"]


def argument(arguments: list[str], flag: str) -> str:
    return arguments[arguments.index(flag) + 1]


def test_a_run_tunes_in_trial_pods_trains_the_chosen_setting_and_creates_the_server(
    airflow_home, fake_kubernetes, raw_data, tiny_model
):
    from nlp_pipeline import commands, decisions, eks

    env, cluster = airflow_home | fake_kubernetes.env, fake_kubernetes
    cluster.create_namespace(yaml.safe_load((REPO / "docker" / "kubernetes" / "namespace.yaml").read_text()))
    tuning = {
        "tuning_trials": 2,
        "learning_rate_range": [1e-4, 1e-3],
        "epochs_range": [1, 1],
        "batch_sizes": [16],
        "tuning_max_steps": 4,
    }
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
        quantize=True,
        **tuning,
    )

    first = dags_test(env, "nlp_eks", conf, "2026-06-01")
    states = task_states(env, "nlp_eks", first)
    skipped = ("reject", "approve", "rollback")
    assert {task: states[task] for task in skipped} == dict.fromkeys(skipped, "skipped"), states
    assert all(states[task] == "success" for task in states if task not in skipped), states
    steps = [pod["spec"]["containers"][0]["args"][0] for pod in cluster.pods_run]
    assert steps == ["stage", "tune", "train", "train", "tune", "train"] + [
        "quantize",
        "evaluate",
        "registry",
        "smoke-test",
        "registry",
    ], steps
    [smoke] = [pod for pod in cluster.pods_run if pod["spec"]["containers"][0]["args"][0] == "smoke-test"]
    assert smoke["spec"]["serviceAccountName"] == "nlp-serving" and not smoke["spec"].get("volumes")
    for pod in (pod for pod in cluster.pods_run if pod is not smoke):
        spec = pod["spec"]
        [term] = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchExpressions"][0]["key"] == "feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI"
        assert spec["tolerations"] == [{"key": "intel", "operator": "Exists", "effect": "NoSchedule"}]
        assert spec["volumes"] == [{"name": "artefacts", "persistentVolumeClaim": {"claimName": "nlp-artefacts"}}]
        assert pod["metadata"]["labels"]["dag_id"] == "nlp_eks"
    run_folder = cluster.volume / "nlp_eks" / "20260601T000000Z"

    # tuning: a plan pod, a pod per trial (mapped), a select pod; train takes the best setting and its tuning.json
    search = run_folder / "tune" / f"try1-{run_hash(first)}"
    trials = [pod for pod in cluster.pods_run if "--score-only" in pod["spec"]["containers"][0]["args"]]
    assert sorted(pod["metadata"]["labels"]["map_index"] for pod in trials) == ["0", "1"], "two trial pods"
    assert sorted(pod["metadata"]["name"].rsplit("-", 1)[0] for pod in trials) == [
        "nlp-tune-trial-000",
        "nlp-tune-trial-001",
    ]
    for pod in trials:
        assert argument(pod["spec"]["containers"][0]["args"], "--max-steps") == "4"
        assert argument(pod["spec"]["containers"][0]["args"], "--early-stopping-dir") == str(search / "scores")
    chosen = json.loads((search / "tuning.json").read_text())
    assert [trial["status"] for trial in chosen["trials"]] == ["completed", "completed"]
    best = chosen["best"]["setting"]
    [train] = [pod["spec"]["containers"][0]["args"] for pod in cluster.pods_run[5:6]]
    assert float(argument(train, "--learning-rate")) == best["learning_rate"], "train got the best setting"
    assert "--score-only" not in train and argument(train, "--tuning") == str(search / "tuning.json")
    model = run_folder / "model" / f"try1-{run_hash(first)}"
    assert json.loads((model / "model_card.json").read_text())["tuning"]["best"] == chosen["best"]

    evaluate = cluster.pods_run[7]["spec"]["containers"][0]["args"]
    assert "--champion" not in evaluate, "no server yet, so no champion"
    assert argument(evaluate, "--timing") == "quick", "the run's timing Param reaches the step"
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

    # What the next run reads from the server: its champion, and the training cache's fingerprint and the tuned
    # setting's configuration.
    served = eks.production_model()
    tuned = commands.with_setting({}, best)  # the Params the setting replaced
    assert served["model"] == str(quantized) and served["data_fingerprint"].startswith("sha256:")
    assert set(served["config"]) == set(decisions.training_params())
    assert {name: served["config"][name] for name in tuned} == tuned
    assert forbidden(cluster.api_calls()) == set(), "docker/kubernetes/airflow-rbac.yaml allows every call made"
