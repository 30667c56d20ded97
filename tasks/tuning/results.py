"""A search's results: each trial's outcome, the best setting (``tuning.json``), and train's ``--tuning`` check.

``summarise`` is a pure function of the plan and the outcomes, so a platform that runs its trials elsewhere
(SageMaker's tuning job) builds the same tuning.json from its own records::

    {"objective": "validation accuracy", "seed", "space", "max_steps", "early_stopping",
     "trials": [{"name", "setting", "accuracy", "f1", "val_loss", "epochs_run", "stopped_early", "status"}, ...],
     "best": {"name", "setting", "accuracy", "f1"}}

The best trial has the highest final validation accuracy; ties go to the higher F1, then to the first name.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from tasks.config import TRAINING_METRICS, TrainArguments, TuneArguments
from tasks.errors import ConfigError, TaskError
from tasks.tuning import files
from tasks.tuning.plan import PLAN, TRIALS
from tasks.tuning.space import CHOICE, DIMENSIONS, INTEGER

log = logging.getLogger(__name__)

TUNING = "tuning.json"
COMPLETED, STOPPED, FAILED = "completed", "stopped", "failed"
STATUSES = (COMPLETED, STOPPED, FAILED)
_PLAN_KEYS = ("objective", "seed", "space", "max_steps", "early_stopping")


def outcome(trial: dict, metrics: dict | None) -> dict:
    """A planned trial's outcome from its metrics.json (None: it wrote none, so it failed)."""
    scored = metrics is not None and metrics.get("accuracy") is not None
    status = FAILED if not scored else STOPPED if metrics.get("stopped_early") else COMPLETED
    return {
        "name": trial["name"],
        "setting": trial["setting"],
        "accuracy": metrics["accuracy"] if scored else None,
        "f1": metrics.get("f1") if scored else None,
        "val_loss": metrics.get("validation_loss") if scored else None,
        "epochs_run": metrics.get("epochs_run") if scored else None,
        "stopped_early": bool(metrics.get("stopped_early")) if scored else False,
        "status": status,
    }


def _rank(trial: dict) -> tuple:
    return (-trial["accuracy"], -(trial["f1"] or 0.0), trial["name"])


def summarise(plan: dict, outcomes: list[dict]) -> dict:
    """tuning.json from the plan (``objective``, ``seed``, ``space``, ``max_steps``, ``early_stopping``) and the
    trials' outcomes (in plan order); a TaskError when no trial was scored."""
    unknown = sorted({trial.get("status") for trial in outcomes} - set(STATUSES), key=str)
    if unknown:
        raise ValueError(f"trial status must be one of {', '.join(STATUSES)}, got {unknown}")
    scored = [trial for trial in outcomes if trial["status"] != FAILED and trial.get("accuracy") is not None]
    if not scored:
        raise TaskError(
            f"no trial of the search was scored ({len(outcomes)} planned, all failed or none planned): see the"
            " trials' logs"
        )
    best = min(scored, key=_rank)
    return {key: plan.get(key) for key in _PLAN_KEYS} | {
        "trials": list(outcomes),
        "best": {key: best[key] for key in ("name", "setting", "accuracy", "f1")},
    }


def read_plan(folder: str) -> dict:
    plan = files.read_json(files.join(folder, PLAN))
    if plan is None:
        raise ConfigError(f"--output {folder} has no {PLAN}: run `python -m tasks tune plan` first")
    return plan


def select(args: TuneArguments) -> dict:
    """``tune select``: read the plan and every trial's metrics.json, write tuning.json."""
    plan = read_plan(args.output)
    outcomes = [
        outcome(trial, files.read_json(files.join(args.output, TRIALS, trial["name"], TRAINING_METRICS)))
        for trial in plan["trials"]
    ]
    for trial in outcomes:
        if trial["status"] == FAILED:
            log.warning("trial %s wrote no scores: counted as failed", trial["name"])
    tuning = summarise(plan, outcomes)
    files.write_json_whole(files.join(args.output, TUNING), tuning)
    best = tuning["best"]
    log.info(
        "best of %d trial(s): %s, validation accuracy %.4f, F1 %s, %s",
        len(outcomes),
        best["name"],
        best["accuracy"],
        "-" if best["f1"] is None else f"{best['f1']:.4f}",
        best["setting"],
    )
    return tuning


# ---- train --tuning ------------------------------------------------------------------------------------------------
def load(uri: str) -> dict:
    """The tuning.json at ``uri`` (a local path or s3://), checked to name a best setting of every dimension."""
    tuning = files.read_json(uri)
    if tuning is None:
        raise ConfigError(f"--tuning {uri}: no such file")
    best = tuning.get("best", {})
    if not isinstance(best, dict):
        raise ConfigError(f"--tuning {uri}: best must be an object")
    setting = best.get("setting", {})
    if not isinstance(setting, dict):
        raise ConfigError(f"--tuning {uri}: best.setting must be an object")
    missing = [dimension.name for dimension in DIMENSIONS if dimension.name not in setting]
    if missing:
        raise ConfigError(f"--tuning {uri}: not a search's tuning.json (its best setting lacks {', '.join(missing)})")
    for dimension in DIMENSIONS:
        value = setting[dimension.name]
        whole = dimension.kind in (INTEGER, CHOICE)
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            raise ConfigError(
                f"--tuning {uri}: best.setting.{dimension.name} must be {'an integer' if whole else 'a number'},"
                f" got {value!r}"
            )
    return tuning


def _same(given, chosen) -> bool:
    return math.isclose(given, chosen, rel_tol=1e-9) if isinstance(given, float) else given == chosen


def with_best_setting(args: TrainArguments, tuning: dict) -> TrainArguments:
    """``args`` with the learning rate and epochs it left open (None) taken from the search's best setting; a
    given hyper-parameter that differs from it is refused (the model card would name a search that did not choose
    its setting)."""
    setting = {dimension.name: tuning["best"]["setting"][dimension.name] for dimension in DIMENSIONS}
    differing = [
        f"--{name.replace('_', '-')} {getattr(args, name)} (best: {setting[name]})"
        for name in setting
        if getattr(args, name) is not None and not _same(getattr(args, name), setting[name])
    ]
    if differing:
        best = " ".join(f"--{name.replace('_', '-')} {value}" for name, value in setting.items())
        raise ConfigError(
            f"--tuning {args.tuning}: the hyper-parameters differ from the search's best setting: {'; '.join(differing)}."
            f" Train with the best setting ({best}), or without --tuning"
        )
    open_values = {name: setting[name] for name in setting if getattr(args, name) is None}
    return dataclasses.replace(args, **open_values) if open_values else args
