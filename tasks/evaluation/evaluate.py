"""``python -m tasks evaluate``: score a candidate (and the champion) and decide whether to promote it.

Both models are loaded with plain TensorFlow and scored in the same process on the same split, so their
figures compare. The INT8 rule reads the candidate's ``quantization.json`` (written by ``quantize``).

Output (written to a temporary sibling, renamed into place)::

    evaluation.json   the candidate's metrics, ``decision`` (promote/reject), ``reasons``, ``champion``
    report.md         the same as a table and a list of rules, for people
    report.png        FP32 vs candidate vs champion: accuracy and batch-1 latency; the candidate's learning curve
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

from tasks.config import EvaluateArguments
from tasks.evaluation.gate import Thresholds, decide
from tasks.evaluation.report import write_report
from tasks.runtime import digest, model_card
from tasks.runtime.outputs import atomic_output, write_json

log = logging.getLogger(__name__)


def read_quantization(model_dir: Path) -> dict | None:
    path = model_dir / "quantization.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run(args: EvaluateArguments) -> None:
    from tasks.data.splits import read_manifest
    from tasks.evaluation.measure import check_labelled, measure_models
    from tasks.runtime.models import resolve

    started = time.perf_counter()
    data = Path(args.data)
    manifest = read_manifest(data)
    check_labelled(data, args.split)
    model_dir = resolve(args.model)
    champion_dir = resolve(args.champion) if args.champion else None

    with atomic_output(args.output) as work:
        models = [model_dir] + ([champion_dir] if champion_dir else [])
        measured = measure_models(
            models, data, work, split=args.split, latency_samples=args.latency_samples, timing=args.timing
        )
        candidate = measured["models"][str(model_dir)]
        champion = measured["models"][str(champion_dir)] if champion_dir else None
        log.info("candidate %s: %s", args.model, _summary(candidate))
        if champion:
            log.info("champion %s: %s", args.champion, _summary(champion))
        quantization = read_quantization(model_dir)
        evaluation = _evaluation(args, candidate, champion, quantization, manifest)
        evaluation |= {
            "model_digest": digest.verify(model_dir),  # the bytes the gate judged, for the registry to record
            "threads": measured["threads"],
            "timing": args.timing,
            "wall_time_s": round(time.perf_counter() - started, 1),
        }
        write_json(work / "evaluation.json", evaluation)
        card = model_card.read(model_dir)
        write_report(work, evaluation, quantization, card.get(model_card.TRAINING_HISTORY), card.get(model_card.TUNING))
    for reason in evaluation["reasons"]:
        log.info("gate: %s", reason)
    log.info("evaluate: %s (%s)", evaluation["decision"].upper(), args.output)


def _evaluation(args: EvaluateArguments, candidate: dict, champion: dict | None, quantization, manifest) -> dict:
    thresholds = Thresholds(args.min_accuracy, args.min_f1, args.max_int8_loss, args.champion_margin)
    decision = decide(candidate, thresholds, champion=champion, quantization=quantization)
    return (
        candidate
        | decision.as_dict()
        | {
            "model": args.model,
            "precision": quantization["chosen_precision"] if quantization else "fp32",
            "champion": champion,
            "champion_model": args.champion or None,
            "split": args.split,
            "data_fingerprint": manifest.get("fingerprint"),
            "thresholds": asdict(thresholds),
        }
    )


def _summary(metrics: dict) -> str:
    return (
        f"accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, "
        f"b1 p50 {metrics['latency_ms_b1_p50']:.1f} ms, b32 {metrics['throughput_b32']:.1f} pairs/s"
    )
