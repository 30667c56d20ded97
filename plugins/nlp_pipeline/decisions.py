"""The pipeline's decisions, made the same way on every platform.

- **Training cache**: a run whose staged data has the production model's fingerprint and whose training
  configuration equals the production model's reuses that model: training and everything after it are skipped.
- **Tuning**: a run with ``tuning_trials`` above 0 trains with the setting its tuning stage chose (``tuned_params``)
  in place of the form's; the training cache and the registry's configuration are of that setting.
- **Quantisation off**: the quantize task succeeds without quantising; the FP32 model is the candidate.
- **Where compression measures**: the quantize step ships the precision it measured fastest on the CPU it runs on,
  so it runs on the hardware the endpoint serves on, unless a run's Param moves it; its ``--target-hardware``
  says which hardware the decision stands for (quantization.json keeps it as ``hardware.target``).
- **Gate**: the evaluate step's decision picks ``register`` or ``reject``.
- **Rollout**: a backfill never deploys (production never goes back in time), nor a run whose ``deploy`` Param is
  off; ``require_approval`` waits for a person before the platform's first rollout task.

Each platform supplies only the facts (its production model, its trained model); pipeline.py and the platform
modules call these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from airflow.sdk.exceptions import AirflowSkipException

from nlp_pipeline import commands

QUANTISATION_OFF = "quantisation off"
Hardware = TypeVar("Hardware")  # what a platform places a step on: an instance type, a node placement


def training_params() -> tuple[str, ...]:
    """The Params that decide which model a run produces: whether it quantises, and every flag of stage, train and
    quantize but the source (the data fingerprint stands for the data) and how models are timed."""
    flags = (spec.param for spec in commands.PARAM_FLAGS if spec.step in ("stage", "train", "quantize"))
    return (*dict.fromkeys(name for name in flags if name not in ("source", "timing")), "quantize")


# The tuning stage's last task on every platform: its XCom is the setting train takes, or None when tuning is off.
CHOOSE_SETTING = "choose_setting"
BACKFILL = "backfill"  # the run_type of a DagRun of `airflow backfill create`


def chosen_setting(tuning: dict, uri: str) -> dict:
    """``choose_setting``'s XCom from a search's tuning.json (tasks.tuning.results.summarise) found at ``uri``: the
    best trial's setting, its scores and how many trials ran."""
    best = tuning["best"]
    return {"setting": best["setting"], "best": best, "trials": len(tuning["trials"]), "tuning": uri}


def run_params(context) -> tuple[dict, dict | None]:
    """(the run's Params with the setting its tuning stage chose, ``choose_setting``'s XCom or None when off)."""
    chosen = context["ti"].xcom_pull(task_ids=CHOOSE_SETTING)
    return tuned_params(context["params"], chosen), chosen


def tuned_params(params: Mapping, tuned: dict | None) -> dict:
    """The run's Params with the setting its tuning stage chose (``choose_setting``'s ``setting``: learning rate,
    epochs, batch size, warm-up, weight decay) in place of the form's; ``params`` when tuning is off (None)."""
    return dict(params) if tuned is None else commands.with_setting(params, tuned["setting"])


def training_config(params: Mapping) -> dict:
    """What a model keeps of the Params it was trained with: the ones that decide which model training produces.
    A hyper-parameter left to train (None) is decided by train's defaults table, so the table is part of the
    configuration then: a model trained under an older table is not this run's."""
    from tasks.training.defaults import DEFAULTS

    config = {name: params[name] for name in training_params()}
    defaulted = {spec.param for spec in commands.PARAM_FLAGS if spec.step == "train" and spec.field in DEFAULTS["base"]}
    if any(config.get(name) is None for name in defaulted):
        config["training_defaults"] = {size: dict(values) for size, values in DEFAULTS.items()}
    return config


def skip_training_if_cached(production: dict | None, fingerprint: str, params: Mapping) -> None:
    """Skip training (and with it the rest of the run) when ``production`` (the platform's production model:
    ``model``, ``data_fingerprint``, ``config``) was trained on this data with this configuration."""
    if production and production.get("data_fingerprint") == fingerprint:
        if production.get("config") == training_config(params):
            raise AirflowSkipException(
                f"cached: the production model {production['model']} was trained on the same data "
                f"({fingerprint[:19]}) with the same configuration; nothing to retrain"
            )


def unquantized_candidate(params: Mapping, trained: dict) -> dict | None:
    """The candidate of a run with quantisation off (the trained FP32 model), or None when quantize runs."""
    if params["quantize"]:
        return None
    return {"model": trained["model"], "chosen_precision": "fp32", "reason": QUANTISATION_OFF, "speedup_b32": None}


def compression_hardware(
    serving: Hardware, override: Hardware | None, describe: Callable[[Hardware], str], param: str
) -> tuple[Hardware, str]:
    """(where the quantize step runs, its ``--target-hardware``): the hardware the endpoint serves on
    (``serving``), since the step keeps the precision it measured fastest on its own CPU; the run's Param
    ``param`` moves it to ``override``, and the label then names both. ``describe`` spells hardware for people."""
    target = f"{describe(serving)} (the endpoint's)"
    if override is None or override == serving:
        return serving, target
    return override, f"{target}; measured on {describe(override)} ({param})"


def gate(evaluation: dict) -> str:
    """The task after the gate: register a promoted candidate, record a rejected one."""
    return "register" if evaluation["decision"] == "promote" else "reject"


def rollout(params: Mapping, run_type: str, rollout_start: str) -> tuple[str | None, str]:
    """(the task to roll out with, or None for no rollout; why)."""
    if run_type == BACKFILL:
        return None, "a backfill run never deploys, so production never goes back in time"
    if not params["deploy"]:
        return None, "deploy is off for this run"
    if params["require_approval"]:
        return "approve", "waiting for a person's approval"
    return rollout_start, "rolling out"
