"""Training throughput of the train step under four CPU settings, printed with ratios to the first.

1. stock:       FP32, oneDNN off (TF_ENABLE_ONEDNN_OPTS=0), every pair padded to 128 tokens
2. oneDNN:      FP32, oneDNN on, padded to 128
3. bf16:        bf16 mixed precision, oneDNN on, padded to 128
4. bf16+bucket: bf16, oneDNN on, each batch padded to its length bucket (multiples of 16)

Each runs ``python -m tasks train --max-steps N`` (within enough epochs for N steps) in a fresh process on
generated MRPC-like data and reports the steady-state samples/s the step itself records (the second half of its
steps, after graph tracing). Usage: ``make bench`` or ``python bench/train_throughput.py [--model DIR] [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

from steps import packaged_minilm, print_hardware, tasks

CONFIGURATIONS = (
    (
        "stock fp32, oneDNN off, pad 128",
        {"TF_ENABLE_ONEDNN_OPTS": "0"},
        ["--precision", "fp32", "--padding", "max_length"],
    ),
    ("fp32, oneDNN on, pad 128", {"TF_ENABLE_ONEDNN_OPTS": "1"}, ["--precision", "fp32", "--padding", "max_length"]),
    ("bf16, oneDNN on, pad 128", {"TF_ENABLE_ONEDNN_OPTS": "1"}, ["--precision", "bf16", "--padding", "max_length"]),
    (
        "bf16, oneDNN on, per-batch padding",
        {"TF_ENABLE_ONEDNN_OPTS": "1"},
        ["--precision", "bf16", "--padding", "longest"],
    ),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="base model (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per configuration")
    parser.add_argument("--batch-size", type=int, default=32)
    options = parser.parse_args()
    print_hardware()
    model = options.model or packaged_minilm()

    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        work = Path(work)
        tasks("sample", "--output", str(work / "raw"))
        tasks("stage", "--source", str(work / "raw"), "--output", str(work / "staged"), "--tokenizer", model)
        manifest = json.loads((work / "staged" / "manifest.json").read_text())
        print(
            f"model {model}\ndata: {manifest['splits']['train']['rows']} pairs, mean "
            f"{manifest['splits']['train']['tokens']['mean']} tokens; {options.steps} steps of batch "
            f"{options.batch_size} per configuration\n"
        )
        # --max-steps stops a run within its own schedule: enough epochs for the steps asked.
        epochs = math.ceil(options.steps * options.batch_size / manifest["splits"]["train"]["rows"])
        results = []
        for index, (name, env, flags) in enumerate(CONFIGURATIONS):
            output = work / f"model-{index}"
            folders = ["--data", str(work / "staged"), "--model", model, "--output", str(output)]
            steps = [
                "--max-steps",
                str(options.steps),
                "--epochs",
                str(epochs),
                "--batch-size",
                str(options.batch_size),
            ]
            tasks("train", *folders, *steps, *flags, env=env)
            metrics = json.loads((output / "metrics.json").read_text())
            results.append((name, metrics["steady_samples_per_second"]))
            print(f"  measured {name}: {metrics['steady_samples_per_second']:.1f} samples/s", flush=True)

    baseline = results[0][1]
    print(f"\n{'configuration':<40} {'samples/s':>10} {'vs stock':>9}")
    for name, rate in results:
        print(f"{name:<40} {rate:>10.1f} {rate / baseline:>8.2f}x")


if __name__ == "__main__":
    main()
