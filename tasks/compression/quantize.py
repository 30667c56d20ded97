"""``python -m tasks quantize``: the compression step, a precision ladder decided on the CPU it runs on.

Candidates (``--precision``, default all three): FP32 (the trained model, always measured as the baseline), BF16
(``tasks.compression.bf16``, only where the CPU has bf16 instructions) and INT8 (``tasks.compression.int8``, INC).
Every candidate built is scored and timed beside FP32 in the same fresh processes with plain TensorFlow
(``python -m tasks measure``), and ``tasks.compression.ladder`` ships the fastest that keeps accuracy and is
faster than FP32, or FP32. A candidate that fails to build, load or run is rejected with its reason; the output is
always a servable model.

Output (written to a temporary sibling, renamed into place)::

    saved_model/        the chosen model: serving_default(...) -> {"logits"}
    tokenizer/, config.json   copied from the trained model
    model_card.json, README.md   this folder's own card: the chosen precision, its measured figures, the CPU
    quantization.json   the decision: chosen precision and why, every candidate's figures and verdict, the
                        hardware they were measured on, the INC recipe and trials
"""

from __future__ import annotations

import logging
import shutil
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from tasks.compression import int8, ladder
from tasks.config import QuantizeArguments
from tasks.errors import ModelError, describe
from tasks.evaluation.measure import agreement, measure_models, saved_model_folder
from tasks.runtime import model_card
from tasks.runtime.outputs import atomic_output, write_json

log = logging.getLogger(__name__)

_COPIED_FILES = ("config.json",)
_FIGURES = ("accuracy", "f1", "latency_ms_b1_p50", "latency_ms_b1_p99", "throughput_b32")


def measure_candidates(built: dict[str, Path], data: Path, work: Path, timing: str) -> tuple[dict, dict[str, str]]:
    """Every built model scored in the same fresh processes; a candidate that cannot load or run there is dropped
    with its reason and the others measured again. Returns ``(measure_models result by precision, failures)``."""
    failures: dict[str, str] = {}
    remaining = dict(built)
    while True:
        try:
            result = measure_models(list(remaining.values()), data, work, timing=timing)
        except ModelError as error:
            failed = [name for name, path in remaining.items() if name != ladder.BASELINE and str(path) in str(error)]
            if not failed:
                raise
            for name in failed:
                failures[name] = f"the {name.upper()} model fails in a fresh TensorFlow process: {error}"
                del remaining[name]
            continue
        by_precision = {
            "models": {name: result["models"][str(path)] for name, path in remaining.items()},
            "predictions": {name: result["predictions"][str(path)] for name, path in remaining.items()},
            "threads": result["threads"],
        }
        return by_precision, failures


def build_candidates(
    args: QuantizeArguments, model_dir: Path, data: Path, manifest: dict, work: Path, offered, recipes
) -> tuple:
    """Build each offered candidate under ``work`` (INT8 with INC's ``recipes``): ``(folders by precision, failures,
    INC trials or None)``."""
    from tasks.compression.bf16 import export_bf16

    built, failures, trials = {ladder.BASELINE: model_dir}, {}, None
    if "bf16" in offered:
        log.info("building the BF16 candidate")
        try:
            export_bf16(model_dir, work / "bf16" / "saved_model")
            built["bf16"] = work / "bf16"
        except Exception as error:  # TensorFlow and transformers raise many types; FP32 still ships
            log.warning("the BF16 export failed", exc_info=True)
            failures["bf16"] = f"the BF16 export failed: {describe(error)}"
    if "int8" in offered:
        trials = int8.Trials(int8.validation_batches(data, manifest, args.batch_size), args.tolerance, recipes)
        reason = int8.try_int8(args, model_dir, manifest, trials, work / "int8" / "saved_model")
        if reason:
            failures["int8"] = reason
        else:
            built["int8"] = work / "int8"
    return built, failures, trials


def decision_record(args, decision: ladder.Decision, measured: dict, hardware: dict, trials) -> dict:
    """``quantization.json``: the keys it has always had (the shipped model against FP32) and the ladder's."""
    chosen = decision.verdicts[decision.chosen]
    predictions = measured["predictions"]
    chosen_trial = trials.chosen() if trials and decision.chosen == "int8" else None
    return {
        "chosen_precision": decision.chosen,
        "reason": decision.reason,
        **{precision: measured["models"].get(precision) for precision in ("fp32", "bf16", "int8")},
        "relative_accuracy_loss": round(chosen.relative_accuracy_loss, 4),
        "speedup_b32": round(chosen.speedup_b32, 4),
        "speedup_b1_p50": round(chosen.speedup_b1_p50, 4),
        "agreement": agreement(np.asarray(predictions["fp32"]), np.asarray(predictions[decision.chosen])),
        "candidates": {precision: verdict.as_dict() for precision, verdict in decision.verdicts.items()},
        "asked": list(args.candidates()),
        "hardware": hardware,
        "threads": measured["threads"],
        "tolerance": args.tolerance,
        "min_speedup": args.min_speedup,
        "timing": args.timing,
        "evaluation_split": "validation",
        "inc": {
            "version": metadata.version("neural-compressor-tf"),
            "recipe": int8.recipe(chosen_trial["recipe"]).as_dict() if chosen_trial else None,
            "baseline_accuracy": trials.baseline if trials else None,
            "trials": trials.results if trials else [],
        },
        "trials_run": len(trials.results) if trials else 0,
    }


def compressed_card(trained_card: dict, record: dict) -> dict:
    """The output folder's own card: the trained model's provenance, the shipped precision and its figures."""
    figures = record[record["chosen_precision"]] or {}
    precision = dict(trained_card.get("precision") or {"training": "unknown"})
    return trained_card | {
        "precision": precision | {"exported": record["chosen_precision"]},
        "metrics": {name: figures.get(name) for name in _FIGURES},
        "evaluation_split": record["evaluation_split"],
        "compression": {
            "chosen_precision": record["chosen_precision"],
            "reason": record["reason"],
            "relative_accuracy_loss": record["relative_accuracy_loss"],
            "tolerance": record["tolerance"],
            "recipe": record["inc"]["recipe"],
            "hardware": record["hardware"],
        },
    }


def run(args: QuantizeArguments) -> None:
    from tasks.data.splits import read_manifest, tokenizer_folder
    from tasks.runtime import cpu
    from tasks.runtime.models import resolve

    recipes = int8.planned_recipes(args)  # a bad --recipes fails before anything is loaded
    plan = cpu.configure_environment("fp32")
    cpu.configure_tensorflow(plan)
    started = time.perf_counter()
    hardware = cpu.hardware(args.target_hardware)
    model_dir = resolve(args.model)
    saved_model_folder(model_dir)
    data = Path(args.data)
    manifest = read_manifest(data)
    tokenizer = model_dir / "tokenizer" if (model_dir / "tokenizer").is_dir() else tokenizer_folder(data)
    offered, skipped = ladder.offered(args.candidates(), hardware)
    log.info("candidates beside FP32: %s%s", ", ".join(offered) or "none", "".join(f"; {s}" for s in skipped.values()))

    with atomic_output(args.output) as work:
        built, failures, trials = build_candidates(args, model_dir, data, manifest, work, offered, recipes)
        measured, unmeasured = measure_candidates(built, data, work, args.timing)
        decision = ladder.decide(
            measured["models"],
            failures | unmeasured,
            skipped,
            hardware,
            tolerance=args.tolerance,
            min_speedup=args.min_speedup,
        )
        if decision.chosen == ladder.BASELINE:
            shutil.copytree(saved_model_folder(model_dir), work / "saved_model")
        else:
            shutil.move(built[decision.chosen] / "saved_model", work / "saved_model")
        for precision in ("bf16", "int8"):
            shutil.rmtree(work / precision, ignore_errors=True)
        shutil.copytree(tokenizer, work / "tokenizer")
        for name in _COPIED_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, work / name)
        record = decision_record(args, decision, measured, hardware, trials) | {
            "calibration": {"split": "train", "pairs": min(args.calibration_size, manifest["splits"]["train"]["rows"])},
            "source_model": args.model,
            "data_fingerprint": manifest.get("fingerprint"),
            "wall_time_s": round(time.perf_counter() - started, 1),
            "cpu": plan.as_dict(),
        }
        write_json(work / "quantization.json", record)
        model_card.write(work, compressed_card(model_card.read(model_dir), record))
    (log.info if decision.chosen != ladder.BASELINE else log.warning)(
        "quantize: shipping %s to %s: %s", decision.chosen.upper(), args.output, decision.reason
    )
