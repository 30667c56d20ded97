"""The learning rate and epochs a run gets when it names none: by the base model's size.

BERT-base's fine-tuning defaults (learning rate 3e-5, 3 epochs) under-train a small model: the packaged 6-layer
MiniLM reached 0.787 accuracy on real MRPC with them, where fine-tunes of its size reach ~0.86. A model of at
most ``SMALL_MODEL_LAYERS`` transformer layers gets the small-model defaults instead.
"""

from __future__ import annotations

import dataclasses
import logging

from tasks.config import TrainArguments
from tasks.errors import ModelError

log = logging.getLogger(__name__)

SMALL_MODEL_LAYERS = 6
# The hyper-parameters by model size. "small": what tuning found best for the packaged MiniLM on generated
# paraphrase data; the evidence (the search, default vs tuned, the CPU it ran on) is bench/tune.py's output as the
# README's "Hyper-parameter tuning" section reports it. "base": BERT-base's published fine-tuning defaults.
DEFAULTS = {
    "small": {"learning_rate": 1e-4, "epochs": 4},
    "base": {"learning_rate": 3e-5, "epochs": 3},
}
_RESOLVED = tuple(DEFAULTS["base"])


def hidden_layers(model: str) -> int:
    """The transformer layers of ``model`` (a local folder, hub id or s3:// URI, as training loads it), from its
    config.json."""
    from transformers import AutoConfig

    from tasks.runtime.models import resolve

    folder = resolve(model)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{model}: cannot read the number of layers: {folder} has no config.json")
    try:
        return int(AutoConfig.from_pretrained(folder).num_hidden_layers)
    except (OSError, ValueError, AttributeError) as error:
        raise ModelError(
            f"{model}: cannot read the number of layers from its config.json in {folder}: {error}"
        ) from error


def model_size(model: str) -> str:
    """``small`` (at most SMALL_MODEL_LAYERS layers) or ``base``."""
    return "small" if hidden_layers(model) <= SMALL_MODEL_LAYERS else "base"


def resolved(args: TrainArguments) -> TrainArguments:
    """``args`` with the learning rate and epochs it left to the model's size (None) filled in."""
    missing = [name for name in _RESOLVED if getattr(args, name) is None]
    if not missing:
        return args
    size = model_size(args.model)
    chosen = {name: DEFAULTS[size][name] for name in missing}
    log.info("%s: a %s model, so the %s defaults: %s", args.model, size, size, chosen)
    return dataclasses.replace(args, **chosen)
