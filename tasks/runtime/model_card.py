"""Every model folder describes itself: ``model_card.json`` for machines and a Hugging Face model card
(``README.md`` with YAML metadata: base model, data set, ``model-index`` with accuracy and F1, precision) for people
and the hub.

The card is the folder's own: a compression output's card states the precision and the figures of the model in
that folder, measured on the CPU it names, never the FP32 model's it came from.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.runtime.cpu import describe_hardware
from tasks.runtime.outputs import write_json

JSON_CARD = "model_card.json"
# The card's per-epoch training figures (epoch, loss, val_loss, accuracy, f1): the train step writes them, a
# compressed model's card inherits them, the evaluate step's report draws the learning curve from them.
TRAINING_HISTORY = "training_history"
# The search that chose the card's hyper-parameters (train --tuning): where its tuning.json is, the best trial and
# every trial's setting and score. A compressed model's card keeps it; the report and the registry show it.
TUNING = "tuning"
# What the model's own data looked like, for ``python -m tasks monitor`` to compare its traffic with: the train split's
# token lengths, paraphrase share and unknown-token rate, and its validation predictions' confidence
# (tasks/monitoring/baseline.py). The train step writes it; a compressed model's card keeps it.
TRAFFIC_BASELINE = "traffic_baseline"
README = "README.md"
_GLUE = "nyu-mll/glue"
_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ summary }}

| metric ({{ split }} split) | value |
|---|---|
{% for name, value in metrics %}| {{ name }} | {{ value }} |
{% endfor %}
## How it was made

{% for name, value in facts %}- **{{ name }}**: {{ value }}
{% endfor %}
## Use

A TensorFlow SavedModel in `saved_model/`: `serving_default({{ inputs }})` -> `{{ outputs }}` (int32 token ids from the
tokenizer in `tokenizer/`; logits over {{ labels }}). `python -m tasks serve --model FOLDER` serves it over HTTP.
{% if precision == "int8" %}
Its INT8 kernels are oneDNN's: load it with `TF_ENABLE_ONEDNN_OPTS=1` (TensorFlow leaves oneDNN off by default on
some CPUs, and the graph cannot run without it; `tasks` sets it).
{% endif %}"""
_METRIC_NAMES = {
    "accuracy": "accuracy",
    "f1": "F1 (paraphrase)",
    "latency_ms_b1_p50": "latency at batch 1, p50 (ms)",
    "latency_ms_b1_p99": "latency at batch 1, p99 (ms)",
    "throughput_b32": "throughput at batch 32 (pairs/s)",
}


def location(model: str) -> str | None:
    """Where the card of the model at ``model`` (a folder or URI) is: its ``README.md``; None for a model that is
    one archive (a SageMaker training job's ``model.tar.gz``: the card is inside it)."""
    if model.endswith(".tar.gz"):
        return None
    return f"{model.rstrip('/')}/{README}"


def read(folder: Path) -> dict:
    """The folder's ``model_card.json``, or {} when it has none."""
    path = folder / JSON_CARD
    return json.loads(path.read_text()) if path.is_file() else {}


def write(folder: Path, card: dict) -> None:
    """Write ``card`` as ``model_card.json`` and as the folder's Hugging Face model card ``README.md``."""
    write_json(folder / JSON_CARD, card)
    readme(card).save(folder / README)


def readme(card: dict):
    """The card as a ``huggingface_hub.ModelCard``."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    precision = card["precision"]["exported"]
    metrics = card.get("metrics") or {}
    data = card.get("data") or {}
    source = str(data.get("source", ""))
    split = card.get("evaluation_split", "validation")
    results = [
        EvalResult(
            task_type="text-classification",
            task_name="paraphrase detection",
            dataset_type=_GLUE if source.startswith("hf://") else "generated-paraphrase-pairs",
            dataset_name="GLUE MRPC" if source.startswith("hf://") else f"paraphrase pairs from {source}",
            dataset_config="mrpc" if source.startswith("hf://") else None,
            dataset_split=split,
            metric_type=name,
            metric_value=metrics[name],
        )
        for name in ("accuracy", "f1")
        if metrics.get(name) is not None
    ]
    base_model = card.get("base_model")
    card_data = ModelCardData(
        base_model=base_model if _is_hub_id(base_model) else None,
        datasets=[_GLUE] if source.startswith("hf://") else None,
        library_name="tf-keras",
        pipeline_tag="text-classification",
        tags=["paraphrase", "tensorflow", precision, *(["intel-neural-compressor"] if precision == "int8" else [])],
        metrics=[result.metric_type for result in results] or None,
        model_name=f"{card.get('architecture', 'classifier')} paraphrase classifier ({precision})",
        eval_results=results or None,
    )
    compression = card.get("compression") or {}
    return ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        title=card_data.model_name,
        summary=_summary(card, precision, compression),
        split=split,
        metrics=[(label, metrics[name]) for name, label in _METRIC_NAMES.items() if metrics.get(name) is not None],
        facts=_facts(card, compression),
        inputs=", ".join(card.get("signature", {}).get("inputs", [])),
        outputs=", ".join(card.get("signature", {}).get("outputs", [])),
        labels=", ".join(card.get("labels", [])),
        precision=precision,
    )


def _summary(card: dict, precision: str, compression: dict) -> str:
    task = card.get("task", "sentence-pair classification")
    base = card.get("base_model", "a BERT-family model")
    text = f"A {precision.upper()} model for {task}, fine-tuned from `{base}`."
    if compression.get("reason"):
        text += f" Compression chose {precision.upper()}: {compression['reason']}."
    return text


def _facts(card: dict, compression: dict) -> list[tuple[str, str]]:
    data = card.get("data") or {}
    hardware = compression.get("hardware") or {}
    facts = [
        ("precision", f"trained in {card['precision'].get('training')}, served in {card['precision']['exported']}"),
        ("data", f"{data.get('source')} (fingerprint {data.get('fingerprint')}, rows {data.get('rows')})"),
        ("hyper-parameters", json.dumps(card.get("hyperparameters") or {}, sort_keys=True)),
    ]
    if tuning := card.get(TUNING):
        facts.append(("tuning", describe_tuning(tuning)))
    if compression.get("recipe"):
        facts.append(("INC recipe", f"{compression['recipe']['name']}: {compression['recipe']['description']}"))
    if compression.get("relative_accuracy_loss") is not None:
        facts.append(("relative accuracy loss against FP32", f"{compression['relative_accuracy_loss']:.2%}"))
    if hardware:
        facts.append(("measured on", describe_hardware(hardware)))
    cpu = card.get("cpu") or {}
    if cpu:
        facts.append(("trained on", f"{cpu.get('cores')} core(s), ISA {' '.join(cpu.get('flags') or [])}"))
    facts.append(("packages", ", ".join(f"{name} {version}" for name, version in (card.get("packages") or {}).items())))
    return facts


def describe_tuning(tuning: dict) -> str:
    """The search in one line: the chosen setting, its score, how many trials, where the search is."""
    from tasks.tuning.space import describe

    best = tuning["best"]
    setting = describe(best["setting"])
    scored = [trial for trial in tuning.get("trials", []) if trial.get("accuracy") is not None]
    f1 = "-" if best.get("f1") is None else f"{best['f1']:.4f}"
    return (
        f"{setting} (trial {best['name']}: validation accuracy {best['accuracy']:.4f}, F1 {f1}), the best"
        f" of {len(scored)} scored trial(s) of {len(tuning.get('trials', []))} ({tuning.get('uri')})"
    )


def _is_hub_id(name: object) -> bool:
    """``owner/name`` as the hub spells model ids; a local path or URI is no hub id."""
    text = str(name or "")
    return text.count("/") == 1 and not text.startswith(("/", ".", "~")) and "://" not in text
