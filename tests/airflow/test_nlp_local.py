"""``airflow dags test nlp_local`` end to end on a tiny BERT and generated data, as `make demo` runs it."""

import json
import sys
from pathlib import Path

import httpx
import pytest

from tests.airflow.conftest import dags_test, json_output, model_events, run_airflow, smoke_conf, task_states
from tests.conftest import REPO, free_port, run_tasks

FIGURES = ("precision", "accuracy", "f1", "latency_ms_b1_p50", "throughput_b32")


def trigger(env: dict, conf: dict) -> str:
    return dags_test(env, "nlp_local", conf)


def states_of(env: dict, run_id: str) -> dict:
    return task_states(env, "nlp_local", run_id)


def mapped_states(env: dict, run_id: str, task_id: str) -> dict[str, str]:
    """The states of a mapped task's instances, by map index."""
    rows = json_output(run_airflow(env, "tasks", "states-for-dag-run", "nlp_local", run_id, "-o", "json"))
    return {row["map_index"]: row["state"] for row in rows if row["task_id"] == task_id}


# A search of two short trials on the tiny BERT: learning rates around the smoke runs' 1e-3, 2 epochs (as the
# first run trains) and 4 steps each; the best one trains the run's model.
TUNING = {
    "tuning_trials": 2,
    "learning_rate_range": [5e-4, 2e-3],
    "epochs_range": [2, 2],
    "batch_sizes": [16],
    "tuning_max_steps": 4,
}


def registry(env: dict) -> list[dict]:
    registry_file = f"{env['AIRFLOW_VAR_NLP_ARTEFACT_ROOT']}/registry.sqlite"
    return json.loads(run_tasks("registry", "list", "--json", "--registry", registry_file).stdout)


@pytest.fixture
def endpoint_state(airflow_home):
    state = f"{airflow_home['AIRFLOW_VAR_NLP_ARTEFACT_ROOT']}/nlp_local/endpoint"
    yield state
    run_tasks("stop-local", "--state", state, check=False)


def test_a_tuned_run_deploys_then_a_worse_model_is_rejected(airflow_home, endpoint_state, raw_data, tiny_model):
    port = free_port()
    conf = smoke_conf(raw_data, tiny_model, epochs=2, endpoint_port=port) | TUNING
    first = trigger(airflow_home, conf)
    states = states_of(airflow_home, first)
    ran = [
        "stage_dataset",
        "plan_trials",
        "choose_setting",
        "train",
        "quantize",
        "evaluate",
        "gate",
        "register",
        "choose_rollout",
        "deploy",
        "smoke_test",
        "mark_production",
    ]
    assert {task: states[task] for task in ran} == dict.fromkeys(ran, "success")
    assert {task: states[task] for task in ("reject", "approve", "rollback")} == dict.fromkeys(
        ("reject", "approve", "rollback"), "skipped"
    )
    [entry] = registry(airflow_home)
    assert entry["status"] == "production" and entry["run_id"] == first and entry["dag_id"] == "nlp_local"
    assert entry["config"]["base_model"] == str(tiny_model) and entry["data_fingerprint"].startswith("sha256:")
    tuned_as_chosen(airflow_home, first, entry)
    quantization = json.loads((Path(entry["model"]) / "quantization.json").read_text())
    assert quantization["timing"] == "quick", "the run's timing Param reaches the step"
    answer = httpx.post(
        f"http://127.0.0.1:{port}/invocations",
        json={"instances": [{"sentence1": "A cat sat.", "sentence2": "A cat was sitting."}]},
    )
    assert answer.status_code == 200 and answer.json()["model_version"] == entry["version"]
    events = model_events(airflow_home, "nlp_local", first)
    assert [(task, asset) for task, asset, _ in events] == [
        ("register", "nlp_model_candidates"),
        ("mark_production", "nlp_model_production"),
    ]
    [(_, _, candidate), (_, _, production)] = events
    assert candidate == {
        "version": entry["version"],
        "status": "approved",
        **{figure: entry["metrics"][figure] for figure in FIGURES},
        "data_fingerprint": entry["data_fingerprint"],
        "uri": entry["model"],
        "model_card": f"{entry['model']}/README.md",
        "dag_id": "nlp_local",
        "run_id": first,
    }
    assert production == candidate | {"status": "production"}
    assert Path(candidate["model_card"]).is_file() and candidate["precision"] == quantization["chosen_precision"]

    barely_trained = conf | {"epochs": 1, "learning_rate": 1e-7, "quantize": False, "min_accuracy": 0.75, "min_f1": 0.8}
    barely_trained["tuning_trials"] = 0  # tuning off: train takes the form's setting
    second = trigger(airflow_home, barely_trained)
    states = states_of(airflow_home, second)
    assert states["reject"] == "success" and states["register"] == "skipped" and states["deploy"] == "skipped"
    assert (states["plan_trials"], states["trial"], states["choose_setting"]) == ("success", "skipped", "success")
    rejected, production = registry(airflow_home)  # newest first
    assert (production["id"], production["status"]) == (entry["id"], "production")
    assert rejected["status"] == "archived" and rejected["decision"] == "reject"
    assert any(reason.startswith("min_accuracy: FAIL") for reason in rejected["reasons"])
    [(task, asset, archived)] = model_events(airflow_home, "nlp_local", second)
    assert (task, asset) == ("reject", "nlp_model_candidates"), "the Assets view lists the rejected model too"
    assert (archived["version"], archived["status"], archived["uri"]) == (
        rejected["version"],
        "archived",
        rejected["model"],
    )
    assert archived["accuracy"] == rejected["metrics"]["accuracy"] and archived["precision"] == "fp32"
    assert httpx.get(f"http://127.0.0.1:{port}/ping").json()["model_version"] == entry["version"]


def tuned_as_chosen(env: dict, run_id: str, entry: dict) -> None:
    """The run's two trials ran (mapped, in the pool nlp_tuning that the Airflow home has), its search's
    tuning.json scored both, and train trained the best one's setting: in the model card, and the registry."""
    sys.path.insert(0, str(REPO / "plugins"))
    from nlp_pipeline.limits import TUNING_POOL

    assert mapped_states(env, run_id, "trial") == {"0": "success", "1": "success"}
    [pool] = json_output(run_airflow(env, "pools", "get", TUNING_POOL, "-o", "json"))
    rows = json_output(run_airflow(env, "tasks", "states-for-dag-run", "nlp_local", run_id, "-o", "json"))
    spans = [(row["start_date"], row["end_date"]) for row in rows if row["task_id"] == "trial"]
    at_once = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert 1 <= at_once <= int(pool["slots"]), "the pool let no more trials run at once than its slots"
    run = Path(env["AIRFLOW_VAR_NLP_ARTEFACT_ROOT"], "nlp_local")
    [search] = [path for path in run.glob("*/tune/search/try*") if path.is_dir()]
    tuning = json.loads((search / "tuning.json").read_text())
    assert [trial["name"] for trial in tuning["trials"]] == ["trial-000", "trial-001"]
    assert all(
        trial["status"] in ("completed", "stopped") and trial["accuracy"] is not None for trial in tuning["trials"]
    )
    best = tuning["best"]
    assert best["name"] in ("trial-000", "trial-001") and 5e-4 <= best["setting"]["learning_rate"] <= 2e-3
    [trained] = [path for path in run.glob("*/model/try*") if path.is_dir()]
    card = json.loads((trained / "model_card.json").read_text())
    assert {name: card["hyperparameters"][name] for name in best["setting"]} == best["setting"]
    assert card["tuning"]["best"] == best, "the model card records the search"
    assert {name: entry["config"][name] for name in best["setting"]} == best["setting"], "the registry's config"
    assert entry["tuning"]["best"] == best, "the registry entry records the search"


def test_an_s3_artefact_root_gets_every_artefact_and_serves_from_s3(airflow_home, s3, raw_data, tiny_model):
    root = f"s3://{s3['bucket']}/artefacts"
    env = airflow_home | s3["env"] | {"AIRFLOW_VAR_NLP_ARTEFACT_ROOT": root}
    port = free_port()
    conf = smoke_conf(raw_data, tiny_model, quantize=False, endpoint_port=port)
    state = f"{env['AIRFLOW_HOME']}/nlp-artefacts/nlp_local/endpoint"
    try:
        trigger(env, conf)
        listed = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix="artefacts/nlp_local/")["Contents"]
        steps = {key["Key"].split("/")[3] for key in listed}
        assert steps == {"staged", "model", "evaluation"}
        assert {key["Key"].split("/", 3)[3] for key in listed if key["Key"].endswith("/LATEST")} == {
            f"{step}/LATEST" for step in steps
        }
        registry_file = f"{env['AIRFLOW_HOME']}/nlp-artefacts/registry.sqlite"
        [entry] = json.loads(run_tasks("registry", "list", "--json", "--registry", registry_file).stdout)
        assert entry["status"] == "production" and entry["model"].startswith(f"{root}/nlp_local/")
        assert entry["model"].rsplit("/", 1)[1].endswith("-try1"), "the registry names one upload of the model"
        served = httpx.get(f"http://127.0.0.1:{port}/ping").json()
        assert served["model_version"] == entry["version"]
    finally:
        run_tasks("stop-local", "--state", state, check=False)
