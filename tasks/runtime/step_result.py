"""The small JSON result of a finished step, for a platform that hands it back to the orchestrator without
reading the artefact store.

When ``TASKS_RESULT_FILE`` is set, a step that succeeded writes there the figures the pipeline decides on
(taken from its output folder's report). A Kubernetes pod sets it to the container's
``terminationMessagePath``: the API server then shows the file as the container's termination message, which
the orchestrator reads from the pod's status, whatever volume or bucket the artefacts went to. Kubernetes
keeps at most 4096 bytes of it, so the result is kept under that.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tasks.config import MONITORING_REPORT, TRAINING_METRICS

RESULT_FILE_ENV = "TASKS_RESULT_FILE"
LIMIT = 4096
_REASON_CHARS = 300


def _stage(report: dict) -> dict:
    return {
        "fingerprint": report["fingerprint"],
        "rows": {name: split["rows"] for name, split in report["splits"].items()},
    }


def _quantize(report: dict) -> dict:
    return {key: report.get(key) for key in ("chosen_precision", "reason", "speedup_b32")}


def _evaluate(report: dict) -> dict:
    keys = (
        "decision",
        "accuracy",
        "f1",
        "latency_ms_b1_p50",
        "throughput_b32",
        "precision",
        "champion_model",
        "model_digest",
    )
    champion = report.get("champion")
    return {key: report.get(key) for key in keys} | {
        "reasons": [reason[:_REASON_CHARS] for reason in report["reasons"]],
        "champion": champion and {key: champion[key] for key in ("accuracy", "f1")},
    }


def _monitor(report: dict) -> dict:
    statistics = [{key: statistic[key] for key in ("name", "value", "status")} for statistic in report["statistics"]]
    return {key: report[key] for key in ("status", "records", "drifted", "window")} | {"statistics": statistics}


# step -> (its report in the output folder, the part of it the pipeline needs)
RESULTS = {
    "stage": ("manifest.json", _stage),
    "train": (TRAINING_METRICS, lambda report: {"metrics": {k: v for k, v in report.items() if k != "epochs"}}),
    "quantize": ("quantization.json", _quantize),
    "evaluate": ("evaluation.json", _evaluate),
    "monitor": (MONITORING_REPORT, _monitor),
}


def result_of(step: str, output: str | os.PathLike) -> dict:
    report_name, select = RESULTS[step]
    return select(json.loads((Path(output) / report_name).read_text()))


def write(result) -> None:
    """Write ``result`` (JSON) where ``TASKS_RESULT_FILE`` says; nothing when it is unset."""
    target = os.environ.get(RESULT_FILE_ENV)
    if not target:
        return
    text = json.dumps(result, separators=(",", ":"))
    if len(text) > LIMIT:
        raise ValueError(f"the result is {len(text)} bytes, more than the {LIMIT} a termination message keeps")
    Path(target).write_text(text)


def write_result(step: str, args, output: str) -> None:
    """Write the result of a step that has a report (RESULTS), with ``output``, where the caller asked it to
    write (a local folder or a URI); the other steps write theirs themselves, or none. Of a multi-worker
    training only the chief writes the model, so only the chief has a result."""
    from tasks.training.distributed import cluster_from_environment

    if step in RESULTS and os.environ.get(RESULT_FILE_ENV) and cluster_from_environment().is_chief:
        write(result_of(step, args.output) | {"output": output})
