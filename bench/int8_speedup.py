"""FP32 vs INT8 inference speed of the quantize step's models, printed with ratios and accuracy in one run.

Trains (or reuses, with ``--model``) a MiniLM paraphrase classifier on generated data, quantises it with
``python -m tasks quantize``, then scores both models in one fresh process with plain TensorFlow on the
validation split: latency at batch 1 (p50, p99) and throughput at batch 32, each with every pair padded
to 128 tokens (how INC's published BERT figures are measured) and with per-batch length buckets (how
the inference server runs). Usage: ``python bench/int8_speedup.py [--model TRAINED_DIR] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steps import REPO, packaged_minilm, print_hardware, tasks


def trained_model(work: Path) -> tuple[Path, Path]:
    """A MiniLM classifier trained on generated pairs, and its staged data (reused when already there)."""
    minilm = packaged_minilm()
    if not (work / "staged" / "manifest.json").is_file():
        tasks("sample", "--output", str(work / "raw"))
        tasks("stage", "--source", str(work / "raw"), "--tokenizer", minilm, "--output", str(work / "staged"))
    if not (work / "model" / "saved_model").is_dir():
        print("training MiniLM (3 epochs, about 3 minutes) ...", flush=True)
        folders = ["--data", str(work / "staged"), "--model", minilm, "--output", str(work / "model")]
        tasks("train", *folders, "--learning-rate", "1e-4", "--epochs", "3")
    return work / "model", work / "staged"


def measure(models: dict[str, Path], data: Path, work: Path) -> dict:
    """Figures per "model padding", each workload in a fresh process that imports TensorFlow but not INC."""
    from tasks.evaluation.measure import measure_models

    figures = {}
    for padding in ("max_length", "longest"):
        result = measure_models(list(models.values()), data, work, padding=padding)
        for name, path in models.items():
            figures[f"{name} {padding}"] = result["models"][str(path)]
    print(f"threads: {result['threads']}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a trained FP32 model folder (default: train one)")
    parser.add_argument("--data", type=Path, help="its staged data (required with --model)")
    parser.add_argument("--work", type=Path, default=REPO / "bench-output" / "int8")
    options = parser.parse_args()
    print_hardware()
    if options.model and not options.data:
        parser.error("--model needs --data")
    model, data = (options.model, options.data) if options.model else trained_model(options.work)

    quantized = options.work / "quantized"
    print("quantising ...", flush=True)
    tasks("quantize", "--model", str(model), "--data", str(data), "--output", str(quantized))
    record = json.loads((quantized / "quantization.json").read_text())
    print(f"quantize chose {record['chosen_precision']}: {record['reason']}")
    for trial in record["inc"]["trials"]:
        print(
            f"  trial {trial['trial']} {trial['recipe']}: accuracy {trial['accuracy']:.4f}, "
            f"relative loss {trial['relative_accuracy_loss']:.2%}, {trial['int8_ops']} INT8 ops"
        )

    figures = measure({"fp32": model, "int8": quantized}, data, options.work)
    print(f"\n{'model, padding':<22} {'accuracy':>8} {'b1 p50 ms':>10} {'b1 p99 ms':>10} {'b32 pairs/s':>12}")
    for name, metrics in figures.items():
        print(
            f"{name:<22} {metrics['accuracy']:>8.4f} {metrics['latency_ms_b1_p50']:>10.2f} "
            f"{metrics['latency_ms_b1_p99']:>10.2f} {metrics['throughput_b32']:>12.1f}"
        )

    def ratios(label: str, fp32: str, int8: str) -> None:
        a, b = figures[fp32], figures[int8]
        loss = (a["accuracy"] - b["accuracy"]) / a["accuracy"]
        print(
            f"{label:<44} b32 {b['throughput_b32'] / a['throughput_b32']:.2f}x   "
            f"b1 p50 {a['latency_ms_b1_p50'] / b['latency_ms_b1_p50']:.2f}x   relative accuracy loss {loss:.2%}"
        )

    print()
    ratios("INT8 vs FP32, both padded to 128", "fp32 max_length", "int8 max_length")
    ratios("INT8 vs FP32, both bucketed", "fp32 longest", "int8 longest")
    ratios("INT8 bucketed vs FP32 padded to 128 (shipped)", "fp32 max_length", "int8 longest")


if __name__ == "__main__":
    main()
