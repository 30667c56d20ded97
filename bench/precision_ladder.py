"""FP32, BF16 and INT8 inference of the compression step's candidates, printed with ratios, accuracy and the
candidate the step would ship, in one run on the CPU it runs on.

Trains (or reuses, with ``--model``) a MiniLM paraphrase classifier on generated data, builds the candidates as
the step does (BF16 only where the CPU has bf16 instructions; INT8 with INC, once per ``--recipes`` entry), then
scores every model in the same fresh processes with plain TensorFlow on the validation split: latency at batch 1
(p50, p99) and throughput at batch 32, with every pair padded to 128 tokens (equal padding, how INC's published
BERT figures are measured) and with per-batch length buckets (how the inference server runs and the step decides).

Usage: ``python bench/precision_ladder.py [--model TRAINED_DIR --data STAGED_DIR] [--work DIR]
[--recipes NAME[,NAME...]]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from steps import REPO, packaged_minilm, print_hardware, tasks

PADDINGS = {"equal": "max_length", "bucketed": "longest"}


def trained_model(work: Path) -> tuple[Path, Path]:
    """A MiniLM classifier trained on generated pairs, and its staged data (reused when already there)."""
    minilm = packaged_minilm()
    if not (work / "staged" / "manifest.json").is_file():
        tasks("sample", "--output", str(work / "raw"))
        tasks("stage", "--source", str(work / "raw"), "--tokenizer", minilm, "--output", str(work / "staged"))
    if not (work / "model" / "saved_model").is_dir():
        print("training MiniLM (3 epochs) ...", flush=True)
        folders = ["--data", str(work / "staged"), "--model", minilm, "--output", str(work / "model")]
        tasks("train", *folders, "--learning-rate", "1e-4", "--epochs", "3")
    return work / "model", work / "staged"


def int8_candidates(model: Path, data: Path, work: Path, recipes: list[str]) -> dict[str, Path]:
    """One INT8 model per recipe, as the step builds it (the speed rule waived so the INT8 model is kept)."""
    built = {}
    for recipe in recipes:
        output = work / f"int8-{recipe}"
        print(f"quantising with {recipe} ...", flush=True)
        folders = ["--model", str(model), "--data", str(data), "--output", str(output)]
        tasks("quantize", *folders, "--precision", "fp32,int8", "--recipes", recipe, "--min-speedup", "0")
        record = json.loads((output / "quantization.json").read_text())
        if record["chosen_precision"] == "int8":
            built[f"int8 {recipe}"] = output
        else:
            print(f"  no INT8 model: {record['reason']}")
    return built


def main() -> None:
    from tasks.compression import ladder
    from tasks.compression.bf16 import export_bf16
    from tasks.compression.int8 import RECIPES
    from tasks.config import QuantizeArguments
    from tasks.evaluation.measure import measure_models
    from tasks.runtime import cpu

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a trained FP32 model folder (default: train one)")
    parser.add_argument("--data", type=Path, help="its staged data (required with --model)")
    parser.add_argument("--work", type=Path, default=REPO / "bench-output" / "precision")
    parser.add_argument("--recipes", default=RECIPES[0].name, help="INT8 recipes to build, each on its own")
    options = parser.parse_args()
    print_hardware()
    if options.model and not options.data:
        parser.error("--model needs --data")
    model, data = (options.model, options.data) if options.model else trained_model(options.work)
    hardware = cpu.hardware()

    candidates = {"fp32": model}
    if hardware["bf16_instructions"]:
        shutil.rmtree(options.work / "bf16", ignore_errors=True)
        export_bf16(model, options.work / "bf16" / "saved_model")
        candidates["bf16"] = options.work / "bf16"
    else:
        print("BF16: not a candidate, this CPU has no bf16 instructions (AVX512_BF16 or AMX)")
    candidates |= int8_candidates(model, data, options.work, options.recipes.split(","))

    figures: dict[str, dict[str, dict]] = {}
    for padding, mode in PADDINGS.items():
        result = measure_models(list(candidates.values()), data, options.work, padding=mode)
        figures[padding] = {name: result["models"][str(path)] for name, path in candidates.items()}
    print(f"threads: {result['threads']}\n")
    print(f"{'model':<44} {'padding':<9} {'accuracy':>8} {'b1 p50 ms':>10} {'b1 p99 ms':>10} {'b32 pairs/s':>12}")
    for padding, models in figures.items():
        for name, metrics in models.items():
            print(
                f"{name:<44} {padding:<9} {metrics['accuracy']:>8.4f} {metrics['latency_ms_b1_p50']:>10.2f} "
                f"{metrics['latency_ms_b1_p99']:>10.2f} {metrics['throughput_b32']:>12.1f}"
            )
    print()
    for padding, models in figures.items():
        fp32 = models["fp32"]
        for name, metrics in models.items():
            if name != "fp32":
                loss = ladder.relative_loss(fp32["accuracy"], metrics["accuracy"])
                print(
                    f"{name + ' vs fp32, ' + padding:<54} b32 {metrics['throughput_b32'] / fp32['throughput_b32']:.3f}x"
                    f"   b1 p50 {fp32['latency_ms_b1_p50'] / metrics['latency_ms_b1_p50']:.3f}x"
                    f"   relative accuracy loss {loss:.2%}"
                )

    defaults = QuantizeArguments(model="", data="", output="")
    bucketed = {precision: figures["bucketed"][precision] for precision in ("fp32", "bf16") if precision in candidates}
    for name in [name for name in candidates if name.startswith("int8")] or ["no INT8 model"]:
        int8 = {"int8": figures["bucketed"][name]} if name in candidates else {}
        decision = ladder.decide(
            bucketed | int8, {}, {}, hardware, tolerance=defaults.tolerance, min_speedup=defaults.min_speedup
        )
        print(f"\nwith {name}, the step would ship {decision.chosen.upper()}: {decision.reason}")


if __name__ == "__main__":
    main()
