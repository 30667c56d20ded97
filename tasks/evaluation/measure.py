"""Scoring and timing a saved classifier with plain TensorFlow, the way the inference server runs it.

Nothing here imports Intel Neural Compressor: an INT8 model must run on TensorFlow alone. ``quantize`` and
``evaluate`` score models through ``measure_models``, which runs the ``measure`` step (``python -m tasks
measure``) in fresh processes, one per workload, because TensorFlow's thread pools are fixed when it starts:
throughput at batch 32 (with accuracy, F1 and predictions) uses a thread per core for each op, latency at
batch 1 one thread per op. Both models of a comparison are scored in the same processes, under the same
settings.

``--timing quick`` (for smoke runs: the tests' pipelines) scores everything in one fresh process with the
throughput threads and times batch 1 on fewer pairs: the same figures, less TensorFlow start-up, noisier
latency. Every record says which timing made it.

Batches are padded to their length bucket (multiples of 16), as the server pads them. Timings exclude the
data pipeline: batches are built first, and every shape is run once before the clock starts.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.config import MeasureArguments
from tasks.errors import DataError, ModelError, describe
from tasks.evaluation.scores import classification_scores
from tasks.training.export import SIGNATURE_INPUTS, SIGNATURE_OUTPUT

log = logging.getLogger(__name__)

THROUGHPUT_BATCH = 32
# What a ``measure`` process scores, by its ``--workload``: ``both`` is the quick timing's single process.
WORKLOADS = {"throughput": ("throughput",), "latency": ("latency",), "both": ("throughput", "latency")}
QUICK_LATENCY_SAMPLES = 20


@dataclass(frozen=True)
class Scored:
    """A model's figures on one split, and its predicted labels in the split's batch order."""

    metrics: dict
    predictions: np.ndarray


def saved_model_folder(model_dir: Path) -> Path:
    folder = model_dir / "saved_model"
    if not (folder / "saved_model.pb").is_file():
        raise ModelError(f"{model_dir}: no saved_model/saved_model.pb; expected the output of `train` or `quantize`")
    return folder


def size_mb(folder: Path) -> float:
    return round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6, 2)


def serving_function(model_dir: Path):
    """The ``serving_default`` signature of ``model_dir/saved_model``, checked against the contract."""
    import tensorflow as tf

    folder = saved_model_folder(model_dir)
    try:
        function = tf.saved_model.load(str(folder)).signatures["serving_default"]
    except Exception as error:  # TensorFlow raises many types for unreadable or unrunnable graphs
        raise ModelError(f"{folder}: cannot load the serving signature: {describe(error)}") from error
    inputs = set(function.structured_input_signature[1])
    outputs = set(function.structured_outputs)
    if inputs != set(SIGNATURE_INPUTS) or SIGNATURE_OUTPUT not in outputs:
        raise ModelError(
            f"{folder}: serving_default takes {sorted(inputs)} and returns {sorted(outputs)}; "
            f"expected {list(SIGNATURE_INPUTS)} -> {SIGNATURE_OUTPUT!r}"
        )
    return function


def batches(split, batch_size: int, max_seq_length: int, padding: str = "longest") -> list[tuple[dict, np.ndarray]]:
    """The split as padded batches in memory, in a fixed order (``padding`` as in ``make_dataset``)."""
    from tasks.data.splits import make_dataset

    dataset = make_dataset(split, batch_size, max_seq_length, padding=padding)
    return [({name: features[name] for name in SIGNATURE_INPUTS}, labels.numpy()) for features, labels in dataset]


def _run(function, features: dict) -> np.ndarray:
    return function(**features)[SIGNATURE_OUTPUT].numpy()


def _call(function, features: dict, where: str) -> np.ndarray:
    try:
        return _run(function, features)
    except Exception as error:  # a graph that loads but cannot run, e.g. INT8 kernels without oneDNN
        raise ModelError(f"{where}: the model fails to run: {describe(error)}") from error


def score_throughput(function, split, max_seq_length: int, *, where: str, padding: str = "longest") -> Scored:
    """Accuracy, F1, confusion matrix and throughput at batch 32 (pairs/s) over the whole split."""
    large = batches(split, THROUGHPUT_BATCH, max_seq_length, padding)
    for features, _ in large:
        _call(function, features, where)
    start = time.perf_counter()
    logits = [_run(function, features) for features, _ in large]
    elapsed = time.perf_counter() - start
    labels = np.concatenate([labels for _, labels in large])
    predictions = np.argmax(np.concatenate(logits), axis=-1)
    metrics = classification_scores(labels, predictions) | {
        "throughput_b32": round(len(labels) / elapsed, 2),
        "pairs": int(len(labels)),
    }
    return Scored(metrics, predictions)


def score_latency(function, split, max_seq_length: int, *, where: str, samples: int, padding: str = "longest"):
    """Latency at batch 1 (p50 and p99, ms) over the first ``samples`` pairs, one at a time."""
    single = batches(split, 1, max_seq_length, padding)[:samples]
    for features, _ in single:
        _call(function, features, where)
    latencies = []
    for features, _ in single:
        start = time.perf_counter()
        _run(function, features)
        latencies.append(time.perf_counter() - start)
    return {
        "latency_ms_b1_p50": round(float(np.percentile(latencies, 50)) * 1e3, 3),
        "latency_ms_b1_p99": round(float(np.percentile(latencies, 99)) * 1e3, 3),
    }


def check_labelled(data: Path, split_name: str) -> None:
    """Refuse a split with unlabelled pairs (GLUE's test split) before any model is loaded."""
    from tasks.data.checks import UNLABELLED_VALUE
    from tasks.data.splits import load_split_dataset

    labels = np.asarray(load_split_dataset(data, split_name)["label"])
    unlabelled = int(np.sum(labels == UNLABELLED_VALUE))
    if unlabelled:
        raise DataError(
            f"{data / split_name}: {unlabelled} of {len(labels)} pairs have no label, so it cannot be scored"
        )


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Share of pairs two models label alike (both scored on the same split, in the same order)."""
    return round(float(np.mean(first == second)), 4)


def thread_plan(workloads: tuple[str, ...]):
    """Threads for a process running ``workloads``, set before TensorFlow starts.

    Throughput (batch 32) uses every core for each op. Latency (batch 1) alone uses one thread per op: ops on
    a single pair are too small to split, and waking a second thread costs more than it saves (measured
    on MiniLM: INT8 batch-1 latency 15.8 ms with two threads per op, 6.5 ms with one).
    """
    import dataclasses
    import os

    from tasks.runtime import cpu

    if workloads == ("latency",):
        os.environ["OMP_NUM_THREADS"] = "1"
        return dataclasses.replace(cpu.configure_environment("fp32"), intra_op_threads=1, inter_op_threads=1)
    return cpu.configure_environment("fp32")


def timing_runs(timing: str, latency_samples: int) -> tuple[list[str], int]:
    """The ``--workload`` of each fresh process, and the pairs timed at batch 1, for a ``timing`` mode."""
    if timing == "quick":
        return ["both"], min(latency_samples, QUICK_LATENCY_SAMPLES)
    return ["throughput", "latency"], latency_samples


def measure_models(
    models: list[Path],
    data: Path,
    work: Path,
    *,
    split: str = "validation",
    latency_samples: int = 100,
    padding: str = "longest",
    timing: str = "full",
) -> dict:
    """Score models with plain TensorFlow in fresh interpreters (the ``measure`` step), one per workload
    (``timing="full"``) or one for both (``"quick"``).

    Returns ``{"models": {path: metrics}, "predictions": {path: labels}, "threads": {workload: plan},
    "timing": timing}``; raises ModelError when a model cannot be loaded or run.
    """
    import subprocess

    merged: dict = {"models": {str(model): {} for model in models}, "predictions": {}, "threads": {}, "timing": timing}
    runs, latency_samples = timing_runs(timing, latency_samples)
    for workload in runs:
        report = work / f".measure-{workload}.json"
        flags = ["--models", *map(str, models), "--data", str(data), "--report", str(report)]
        flags += ["--workload", workload, "--split", split, "--latency-samples", str(latency_samples)]
        flags += ["--padding", padding]
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "tasks", "measure", *flags], capture_output=True, text=True)
        result = json.loads(report.read_text()) if report.is_file() else {}
        report.unlink(missing_ok=True)
        if completed.returncode != 0 or "models" not in result:
            tail = " | ".join(completed.stderr.strip().splitlines()[-3:])
            raise ModelError(result.get("error") or f"scoring exited with status {completed.returncode}: {tail}")
        for model, metrics in result["models"].items():
            merged["models"][model].update(metrics)
        merged["predictions"].update(result.get("predictions", {}))
        merged["threads"] |= dict.fromkeys(WORKLOADS[workload], result["threads"])
        log.info(
            "scored %s on the %s split in a fresh process: %s (%.0f s)",
            ", ".join(str(model) for model in models),
            split,
            " and ".join(WORKLOADS[workload]),
            time.perf_counter() - started,
        )
    for model in models:
        merged["models"][str(model)]["size_mb"] = size_mb(saved_model_folder(model))
    return merged


def run(args: MeasureArguments) -> None:
    """``python -m tasks measure``: score each model in this process, for ``measure_models``.

    ``throughput`` writes accuracy, F1, confusion matrix, throughput at batch 32 and the predictions to
    ``--report``; ``latency`` writes batch-1 latency; ``both`` writes both. On a model that cannot be loaded or
    run it writes ``{"error": "..."}`` and fails.
    """
    from tasks.runtime import cpu

    workloads = WORKLOADS[args.workload]
    plan = thread_plan(workloads)
    cpu.configure_tensorflow(plan)
    from tasks.data.splits import load_split, read_manifest

    data, report = Path(args.data), Path(args.report)
    max_seq_length = read_manifest(data)["max_seq_length"]
    split = load_split(data, args.split)
    metrics, predictions = {}, {}
    try:
        for model in args.models:
            function, where = serving_function(Path(model)), model
            metrics[where] = {}
            if "throughput" in workloads:
                scored = score_throughput(function, split, max_seq_length, where=where, padding=args.padding)
                metrics[where] |= scored.metrics
                predictions[where] = scored.predictions.tolist()
            if "latency" in workloads:
                timed = score_latency(
                    function, split, max_seq_length, where=where, samples=args.latency_samples, padding=args.padding
                )
                metrics[where] |= timed
    except ModelError as error:
        report.write_text(json.dumps({"error": str(error)}))
        raise
    threads = {"intra_op": plan.intra_op_threads, "inter_op": plan.inter_op_threads}
    report.write_text(json.dumps({"models": metrics, "predictions": predictions, "threads": threads}))
