"""Every DAG file parses, stays light, and declares what an operator of Airflow expects."""

import itertools
import subprocess
import sys

import pytest

from tests.conftest import REPO

DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = ("tensorflow", "transformers", "neural_compressor", "torch", "datasets")


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    sys.path[:0] = [str(REPO / "plugins")]
    try:
        yield DagBag(dag_folder=str(REPO / "dags"))
    finally:
        sys.path.remove(str(REPO / "plugins"))


def test_every_dag_file_imports_without_errors(dag_bag):
    assert DAG_FILES and dag_bag.import_errors == {}
    assert {"nlp_local", "nlp_sagemaker", "nlp_eks"} <= set(dag_bag.dag_ids)
    assert {"nlp_monitor_local", "nlp_monitor_sagemaker", "nlp_monitor_eks"} <= set(dag_bag.dag_ids)


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.name)
def test_dag_files_import_nothing_heavy(dag_file):
    allowed = {"kubernetes"} if dag_file.stem in ("nlp_eks", "nlp_monitor_eks") else set()
    probe = (
        f"import runpy, sys; sys.path[:0] = [{str(REPO / 'plugins')!r}]; runpy.run_path({str(dag_file)!r}); "
        f"print(sorted(m for m in {HEAVY + ('kubernetes',)!r} if m in sys.modules and m not in {allowed!r}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_each_dag_has_owner_retries_tags_docs_and_no_cycle(dag_bag):
    for dag_id, dag in dag_bag.dags.items():
        assert dag.tags and dag.doc_md, dag_id
        dag.check_cycle()
        for task in dag.tasks:
            assert task.owner == "mlops", task.task_id
            assert task.retries >= 1 and task.retry_exponential_backoff, task.task_id


ROLLOUT = {
    "nlp_local": ["deploy"],
    "nlp_sagemaker": ["create_model", "create_endpoint_config", "deploy"],
    "nlp_eks": ["deploy"],
}
# Each platform's tuning stage, in order: local and eks map a trial task over the planned trials (in the pool
# nlp_tuning), SageMaker runs a tuning job; every one ends in choose_setting, which train takes.
TUNING = {
    "nlp_local": ["plan_trials", "trial", "choose_setting"],
    "nlp_sagemaker": ["tune", "choose_setting"],
    "nlp_eks": ["plan_trials", "trial", "choose_setting"],
}


@pytest.mark.parametrize("dag_id", sorted(ROLLOUT))
def test_the_pipeline_runs_in_the_documented_order(dag_bag, dag_id):
    dag = dag_bag.dags[dag_id]
    order = [
        "policy",
        "stage_dataset",
        *TUNING[dag_id],
        "train",
        "quantize",
        "evaluate",
        "gate",
        "register",
        "choose_rollout",
        *ROLLOUT[dag_id],
        "smoke_test",
        "mark_production",
    ]
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert dag.get_task("gate").downstream_task_ids == {"register", "reject"}
    assert dag.get_task("choose_rollout").downstream_task_ids == {"approve", ROLLOUT[dag_id][0]}
    assert dag.get_task("rollback").upstream_task_ids == {"deploy", "smoke_test"}
    assert dag.get_task("rollback").trigger_rule == "one_failed"
    assert not dag.catchup and dag.max_active_runs == 1


@pytest.mark.parametrize("dag_id", sorted(TUNING))
def test_train_takes_the_setting_tuning_chose_and_tuning_off_skips_only_the_trials(dag_bag, dag_id):
    """choose_setting runs when the trials were skipped (tuning_trials 0) and hands train None; a failed trial
    fails it."""
    dag = dag_bag.dags[dag_id]
    chosen = dag.get_task("choose_setting")
    assert chosen.trigger_rule == "none_failed"
    assert chosen.downstream_task_ids == {"train"} and dag.get_task("train").trigger_rule == "all_success"
    if "trial" in TUNING[dag_id]:
        trial = dag.get_task("trial")
        assert trial.is_mapped and trial.pool == "nlp_tuning"
        assert "plan_trials" in trial.upstream_task_ids and "trial" in chosen.upstream_task_ids


# Each DAG's stages, in order: the TaskGroups of the graph and their tasks (policy stays on top: it runs first).
STAGES = {
    "data": ["stage_dataset"],
    "tuning": [],  # the platform's own: TUNING
    "training": ["train"],
    "compression": ["quantize"],
    "evaluation": ["evaluate", "gate", "register", "reject"],
    "rollout": ["choose_rollout", "approve", "smoke_test", "mark_production", "rollback"],
}


@pytest.mark.parametrize("dag_id", sorted(ROLLOUT))
def test_the_pipeline_shows_its_stages_as_task_groups_in_order(dag_bag, dag_id):
    dag = dag_bag.dags[dag_id]
    assert list(dag.task_group.children) == ["policy", *STAGES]
    stages = STAGES | {"tuning": TUNING[dag_id], "rollout": STAGES["rollout"] + ROLLOUT[dag_id]}
    for group_id, task_ids in stages.items():
        group = dag.task_group_dict[group_id]
        assert not group.prefix_group_id, "task ids stay as they were"
        assert sorted(group.children) == sorted(task_ids), group_id
    assert {task.task_id for task in dag.tasks} == {"policy"} | {task for tasks in stages.values() for task in tasks}
    group_of = {task_id: group_id for group_id, task_ids in stages.items() for task_id in task_ids}
    group_of["policy"] = "policy"
    assert dag.task_group_dict["tuning"].tooltip.startswith("Search learning rate, epochs, batch size")
    for first, then in itertools.pairwise(["policy", *STAGES]):
        upstream = {group_of[up] for task_id in stages[then] for up in dag.get_task(task_id).upstream_task_ids}
        assert first in upstream, f"{then} does not follow {first}"


@pytest.mark.parametrize("dag_id", sorted(ROLLOUT))
def test_register_reject_and_mark_production_update_the_model_assets(dag_bag, dag_id):
    from nlp_pipeline.assets import MODEL_CANDIDATES, MODEL_PRODUCTION, STAGED_DATA

    dag = dag_bag.dags[dag_id]
    outlets = {task.task_id: task.outlets for task in dag.tasks if task.outlets}
    assert outlets == {
        "stage_dataset": [STAGED_DATA],
        "register": [MODEL_CANDIDATES],
        "reject": [MODEL_CANDIDATES],
        "mark_production": [MODEL_PRODUCTION],
    }
    assert (MODEL_CANDIDATES.name, MODEL_PRODUCTION.name) == ("nlp_model_candidates", "nlp_model_production")


# A watched canary (accepted: tests/airflow/test_params.py), of which each refused blue/green conf changes a field:
# canary over 50 %, linear under 10 %, 11 alarms, a bake no alarm watches, linear 10 % with 60 min (39600 s of
# waits, over SageMaker's 28800 s), a blank alarm name.
BLUE_GREEN = {"traffic": "canary", "step_percent": 10, "baking_minutes": 10, "alarms": ["nlp-endpoint-5xx"]}


@pytest.mark.parametrize(
    ("dag_id", "conf", "field"),
    [
        ("nlp_local", {"epochs": 0}, "epochs"),
        ("nlp_local", {"learning_rate": -1.0}, "learning_rate"),
        ("nlp_local", {"precision": "fp16"}, "precision"),
        ("nlp_local", {"max_seq_length": 4}, "max_seq_length"),
        ("nlp_local", {"batch_size": "many"}, "batch_size"),
        ("nlp_local", {"endpoint_port": 80}, "endpoint_port"),
        ("nlp_local", {"tuning_trials": 33}, "tuning_trials"),  # over MAX_TUNING_TRIALS
        ("nlp_local", {"tuning_trials": -1}, "tuning_trials"),
        ("nlp_local", {"learning_rate_range": [-1e-5, 1e-3]}, "learning_rate_range"),
        ("nlp_local", {"learning_rate_range": [1e-5, 1]}, "learning_rate_range"),
        ("nlp_local", {"learning_rate_range": [1e-5]}, "learning_rate_range"),
        ("nlp_local", {"epochs_range": [0, 3]}, "epochs_range"),
        ("nlp_local", {"epochs_range": [1.5, 3]}, "epochs_range"),
        ("nlp_local", {"batch_sizes": []}, "batch_sizes"),
        ("nlp_local", {"batch_sizes": [0, 32]}, "batch_sizes"),
        ("nlp_local", {"warmup_ratio_range": [0, 1]}, "warmup_ratio_range"),
        ("nlp_local", {"weight_decay_range": [-0.1, 0.1]}, "weight_decay_range"),
        ("nlp_local", {"tuning_max_steps": -5}, "tuning_max_steps"),
        ("nlp_local", {"weight_decay": 1.0}, "weight_decay"),
        ("nlp_sagemaker", {"epochs": 0}, "epochs"),
        ("nlp_sagemaker", {"tuning_trials": 33}, "tuning_trials"),
        ("nlp_sagemaker", {"learning_rate_range": [0, 1e-3]}, "learning_rate_range"),
        ("nlp_sagemaker", {"training_instance_type": "ml.p3.2xlarge"}, "training_instance_type"),
        ("nlp_sagemaker", {"endpoint_instance_type": "ml.c6i.large"}, "endpoint_instance_type"),  # no processing job
        ("nlp_sagemaker", {"compression_instance_type": "ml.g5.xlarge"}, "compression_instance_type"),
        ("nlp_sagemaker", {"training_instance_count": 0}, "training_instance_count"),
        ("nlp_sagemaker", {"training_instance_type": "ml.c6i.large"}, "training_instance_type"),  # endpoint-only
        ("nlp_sagemaker", {"blue_green": {"traffic": "blue"}}, "blue_green"),
        ("nlp_sagemaker", {"blue_green": BLUE_GREEN | {"traffic": "canary", "step_percent": 60}}, "blue_green"),
        ("nlp_sagemaker", {"blue_green": BLUE_GREEN | {"traffic": "linear", "step_percent": 5}}, "blue_green"),
        ("nlp_sagemaker", {"blue_green": BLUE_GREEN | {"alarms": [f"nlp-{i}" for i in range(11)]}}, "blue_green"),
        ("nlp_sagemaker", {"blue_green": BLUE_GREEN | {"traffic": "all_at_once", "alarms": []}}, "blue_green"),
        ("nlp_sagemaker", {"blue_green": BLUE_GREEN | {"traffic": "linear", "baking_minutes": 60}}, "blue_green"),
        ("nlp_sagemaker", {"blue_green": BLUE_GREEN | {"alarms": [""]}}, "blue_green"),
        ("nlp_sagemaker", {"model_approval": "Rejected"}, "model_approval"),
        ("nlp_eks", {"step_cpu": "four"}, "step_cpu"),
        ("nlp_eks", {"tuning_trials": 33}, "tuning_trials"),
        ("nlp_eks", {"learning_rate_range": [-1e-5, 1e-3]}, "learning_rate_range"),
        ("nlp_eks", {"step_memory": "16 GB"}, "step_memory"),
        ("nlp_eks", {"training_workers": 0}, "training_workers"),
        ("nlp_eks", {"node_features": ["AVX512 VNNI"]}, "node_features"),
        ("nlp_eks", {"compression_node_features": ["AVX512 VNNI"]}, "compression_node_features"),
        ("nlp_eks", {"tolerations": [{"key": "intel", "effect": "Sometimes"}]}, "tolerations"),
        ("nlp_eks", {"tolerations": [{"key": "", "operator": "Exists"}]}, "tolerations"),  # tolerates every taint
        ("nlp_eks", {"tolerations": [{"operator": "Exists"}]}, "tolerations"),
        ("nlp_eks", {"tolerations": [{"key": "intel", "operator": "Exists", "value": "true"}]}, "tolerations"),
        ("nlp_eks", {"tolerations": [{"key": "intel node", "effect": "NoSchedule"}]}, "tolerations"),
        ("nlp_eks", {"step_cpu": "100000"}, "step_cpu"),  # over 64 cores
        ("nlp_eks", {"step_cpu": "64001m"}, "step_cpu"),
        ("nlp_eks", {"step_cpu": "0"}, "step_cpu"),
        ("nlp_eks", {"server_cpu": "65"}, "server_cpu"),
        ("nlp_eks", {"step_memory": "513Gi"}, "step_memory"),  # over 512Gi
        ("nlp_eks", {"step_memory": "1Ti"}, "step_memory"),
        ("nlp_eks", {"server_memory": "4K"}, "server_memory"),  # Kubernetes' kilo is k: the API server refuses K
        ("nlp_eks", {"server_replicas": 0}, "server_replicas"),
        ("nlp_eks", {"rollout_timeout_minutes": 0}, "rollout_timeout_minutes"),
    ],
)
def test_invalid_params_are_refused(dag_bag, dag_id, conf, field):
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    params = ParamsDict(dag_bag.dags[dag_id].params)
    assert field in params, f"{dag_id} has no Param {field}"
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {field}"):
        params.update(conf)
        params.validate()


def test_only_the_local_dag_has_a_local_endpoint_port(dag_bag):
    assert "endpoint_port" in dag_bag.dags["nlp_local"].params
    assert "endpoint_port" not in dag_bag.dags["nlp_sagemaker"].params
    assert "endpoint_port" not in dag_bag.dags["nlp_eks"].params


def test_every_param_is_typed_and_described(dag_bag):
    for dag in dag_bag.dags.values():
        for name, param in dag.params.items():
            assert param.schema.get("type") and param.description, (dag.dag_id, name)


def test_airflow_loads_only_the_links_plugin_of_the_plugins_folder_as_a_plugin():
    """Airflow executes each .py file of the plugins folder as a top-level module named after the file, which
    would replace the standard library's ``platform`` and the ``kubernetes`` client with nlp_pipeline's; the one
    plugin, the artefact app of the links (nlp_links_plugin.py), shadows nothing."""
    from airflow._shared.module_loading import find_path_from_directory

    loaded = [path for path in find_path_from_directory(str(REPO / "plugins"), ".airflowignore", "glob")]
    assert [path for path in loaded if path.endswith(".py")] == [str(REPO / "plugins" / "nlp_links_plugin.py")]
