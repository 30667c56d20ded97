"""Scoring and timing a saved classifier with plain TensorFlow, the way the inference server runs it.

Nothing here imports Intel Neural Compressor: an INT8 model must run on TensorFlow alone. The quantize
step runs this module in a fresh process (``python -m tasks.inference``) to prove exactly that, and to
time FP32 and INT8 under the same conditions, away from the memory and threads INC used.

Batches are padded to their length bucket (multiples of 16), as the server pads them. Timings exclude the
data pipeline: batches are built first, and every shape is run once before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.errors import DataError, ModelError, describe
from tasks.export import SIGNATURE_INPUTS, SIGNATURE_OUTPUT
from tasks.scores import classification_scores

THROUGHPUT_BATCH = 32


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
    from tasks.batches import make_dataset

    dataset = make_dataset(split, batch_size, max_seq_length, padding=padding)
    return [({name: features[name] for name in SIGNATURE_INPUTS}, labels.numpy()) for features, labels in dataset]


def _run(function, features: dict) -> np.ndarray:
    return function(**features)[SIGNATURE_OUTPUT].numpy()


def _call(function, features: dict, where: str) -> np.ndarray:
    try:
        return _run(function, features)
    except Exception as error:  # a graph that loads but cannot run, e.g. INT8 kernels without oneDNN
        raise ModelError(f"{where}: the model fails to run: {describe(error)}") from error


def score(
    function, split, max_seq_length: int, *, where: str, latency_samples: int = 100, padding: str = "longest"
) -> Scored:
    """Accuracy, F1, confusion matrix, latency at batch 1 (p50/p99 ms) and throughput at batch 32 (pairs/s)."""
    large = batches(split, THROUGHPUT_BATCH, max_seq_length, padding)
    for features, _ in large:
        _call(function, features, where)
    start = time.perf_counter()
    logits = [_run(function, features) for features, _ in large]
    elapsed = time.perf_counter() - start
    labels = np.concatenate([labels for _, labels in large])
    predictions = np.argmax(np.concatenate(logits), axis=-1)

    single = batches(split, 1, max_seq_length, padding)[:latency_samples]
    for features, _ in single:
        _run(function, features)
    latencies = []
    for features, _ in single:
        start = time.perf_counter()
        _run(function, features)
        latencies.append(time.perf_counter() - start)

    metrics = classification_scores(labels, predictions) | {
        "latency_ms_b1_p50": round(float(np.percentile(latencies, 50)) * 1e3, 3),
        "latency_ms_b1_p99": round(float(np.percentile(latencies, 99)) * 1e3, 3),
        "throughput_b32": round(len(labels) / elapsed, 2),
        "pairs": int(len(labels)),
    }
    return Scored(metrics, predictions)


def score_model(model_dir: Path, data: Path, split_name: str, latency_samples: int = 100) -> Scored:
    """Load ``model_dir`` and score it on the staged ``split_name`` of ``data``, with its size."""
    from tasks.batches import load_split
    from tasks.train import read_manifest

    max_seq_length = read_manifest(data)["max_seq_length"]
    split = load_split(data, split_name)
    unlabelled = int(np.sum(split.labels < 0))
    if unlabelled:
        raise DataError(
            f"{data / split_name}: {unlabelled} of {len(split)} pairs have no label, so it cannot be scored"
        )
    function = serving_function(model_dir)
    scored = score(function, split, max_seq_length, where=str(model_dir), latency_samples=latency_samples)
    scored.metrics["size_mb"] = size_mb(saved_model_folder(model_dir))
    return scored


def agreement(first: np.ndarray, second: np.ndarray) -> float:
    """Share of pairs two models label alike (both scored on the same split, in the same order)."""
    return round(float(np.mean(first == second)), 4)


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.inference --data D --output F.json MODEL...``: score each model in this process.

    Writes ``{"models": {MODEL: metrics}, "predictions": {MODEL: [...]}}``, or ``{"error": "..."}`` with
    exit status 1 when a model cannot be loaded or run.
    """
    parser = argparse.ArgumentParser(prog="python -m tasks.inference", description=main.__doc__)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)

    from tasks import cpu
    from tasks.cli import configure_logging

    configure_logging()
    cpu.configure_tensorflow(cpu.configure_environment("fp32"))
    try:
        scored = {str(model): score_model(model, args.data, args.split, args.latency_samples) for model in args.models}
    except (ModelError, DataError) as error:
        args.output.write_text(json.dumps({"error": str(error)}))
        return 1
    args.output.write_text(
        json.dumps(
            {
                "models": {model: result.metrics for model, result in scored.items()},
                "predictions": {model: result.predictions.tolist() for model, result in scored.items()},
                "modules": sorted(name for name in sys.modules if name.split(".")[0] == "neural_compressor"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
