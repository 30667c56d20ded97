"""The local platform: every step is its ``python -m tasks`` command in a subprocess of the worker.

Artefacts are folders under the artefact root (artefacts.py: local, or uploaded to s3://), the registry
is a SQLite file beside them, and the endpoint is the long-running local server of ``deploy-local``,
swapped in place. XCom carries each artefact's ``uri`` (under the root) and the local copy the next steps
of the run read.
"""

from __future__ import annotations

import json
import logging

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from nlp_pipeline import artefacts
from nlp_pipeline.assets import STAGED_DATA
from nlp_pipeline.operators.local import run_step, run_step_json
from nlp_pipeline.params import training_config

log = logging.getLogger(__name__)

ROLLOUT_START = "deploy"  # the first task of the rollout: choose_rollout's branch target


def production_model() -> dict | None:
    return run_step_json("registry", "--registry", artefacts.registry_file(), "--action", "production")


@task(outlets=[STAGED_DATA])
def stage_dataset(**context) -> dict:
    params, output = context["params"], artefacts.workspace(context, "staged")
    run_step("stage", "--source", params["source"], "--output", output, "--tokenizer", params["base_model"],
             "--max-seq-length", params["max_seq_length"])  # fmt: skip
    manifest = json.loads((output / "manifest.json").read_text())
    rows = {name: split["rows"] for name, split in manifest["splits"].items()}
    uri = artefacts.publish(context, "staged", output)
    return {"data": str(output), "uri": uri, "fingerprint": manifest["fingerprint"], "rows": rows}


@task
def train(staged: dict, **context) -> dict:
    params, output = context["params"], artefacts.workspace(context, "model")
    production, config = production_model(), training_config(params)
    if production and production["data_fingerprint"] == staged["fingerprint"] and production["config"] == config:
        raise AirflowSkipException(
            f"cached: production model {production['version']} (registry entry {production['id']}) was trained on"
            f" the same data ({staged['fingerprint'][:19]}) with the same configuration; nothing to retrain"
        )
    run_step("train", "--data", staged["data"], "--model", params["base_model"], "--output", output,
             "--epochs", params["epochs"], "--batch-size", params["batch_size"],
             "--learning-rate", params["learning_rate"], "--precision", params["precision"],
             "--seed", params["seed"])  # fmt: skip
    metrics = json.loads((output / "metrics.json").read_text())
    return {"model": str(output), "uri": artefacts.publish(context, "model", output), "metrics": metrics}


@task
def quantize(staged: dict, trained: dict, **context) -> dict:
    params = context["params"]
    if not params["quantize"]:
        log.info("quantisation is off for this run: the FP32 model is the candidate")
        return {"model": trained["model"], "uri": trained["uri"], "chosen_precision": "fp32",
                "reason": "quantisation off"}  # fmt: skip
    output = artefacts.workspace(context, "quantized")
    run_step("quantize", "--model", trained["model"], "--data", staged["data"], "--output", output,
             "--tolerance", params["quantization_tolerance"], "--timing", params["timing"])  # fmt: skip
    report = json.loads((output / "quantization.json").read_text())
    return {"model": str(output), "uri": artefacts.publish(context, "quantized", output)} | {
        key: report.get(key) for key in ("chosen_precision", "reason", "speedup_b32")
    }


@task
def evaluate(staged: dict, candidate: dict, **context) -> dict:
    params, output = context["params"], artefacts.workspace(context, "evaluation")
    production = production_model()
    champion = ["--champion", production["model"]] if production else []
    run_step("evaluate", "--model", candidate["model"], "--data", staged["data"], "--output", output, *champion,
             "--min-accuracy", params["min_accuracy"], "--min-f1", params["min_f1"],
             "--max-int8-loss", params["max_int8_loss"], "--champion-margin", params["champion_margin"],
             "--timing", params["timing"])  # fmt: skip
    evaluation = json.loads((output / "evaluation.json").read_text())
    keys = ("decision", "reasons", "accuracy", "f1", "latency_ms_b1_p50", "throughput_b32", "precision")
    artefacts.publish(context, "evaluation", output)
    return {"evaluation": str(output), "model": candidate["uri"], "champion_model": evaluation["champion_model"],
            "champion": evaluation["champion"] and {k: evaluation["champion"][k] for k in ("accuracy", "f1")},
            } | {key: evaluation[key] for key in keys}  # fmt: skip


def _register(evaluation: dict, status: str, context) -> dict:
    return run_step_json("registry", "--registry", artefacts.registry_file(), "--action", "register",
                         "--model", evaluation["model"], "--evaluation", evaluation["evaluation"],
                         "--status", status, "--config", json.dumps(training_config(context["params"])),
                         "--dag-id", context["dag"].dag_id, "--run-id", context["run_id"],
                         "--logical-date", artefacts.run_key(context))  # fmt: skip


@task
def register(evaluation: dict, **context) -> dict:
    """Record the promoted candidate: approved, or a candidate still waiting for a person's approval."""
    status = "candidate" if context["params"]["require_approval"] else "approved"
    return _register(evaluation, status, context)


@task
def reject(evaluation: dict, **context) -> dict:
    """Record the rejected candidate, archived with the gate's reasons."""
    for reason in evaluation["reasons"]:
        log.info("gate: %s", reason)
    return _register(evaluation, "archived", context)


@task(trigger_rule="none_failed_min_one_success")
def deploy(entry: dict, **context) -> dict:
    state, port = artefacts.endpoint_state(context), context["params"]["endpoint_port"]
    run_step("deploy-local", "--model", entry["model"], "--state", state, "--port", port)
    status = run_step_json("status", "--state", state, "--json")
    served = status["current"]["version"]
    if served != entry["version"]:
        raise AirflowFailException(f"the endpoint serves {served} after the rollout, not {entry['version']}")
    return {"url": status["url"], "version": served, "state": str(state)}


@task
def smoke_test(deployed: dict) -> dict:
    return run_step_json("smoke-test", "--url", deployed["url"], "--expect-version", deployed["version"])


@task
def mark_production(entry: dict, smoke: dict) -> dict:
    log.info("%s passed its smoke test at %s", entry["version"], smoke["url"])
    return run_step_json("registry", "--registry", artefacts.registry_file(), "--action", "promote",
                         "--id", entry["id"])  # fmt: skip


@task(trigger_rule="one_failed")
def rollback(**context) -> None:
    """Undo a rollout whose smoke test failed; a deploy that never switched left nothing to undo."""
    deployed = context["ti"].xcom_pull(task_ids="deploy")
    if not deployed:
        raise AirflowSkipException("nothing was deployed, so nothing to roll back")
    run_step("rollback", "--state", deployed["state"], "--expect-version", deployed["version"])
