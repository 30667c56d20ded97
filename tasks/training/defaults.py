"""The hyper-parameters a run gets when it names none (and has no --tuning to take them from): by the base model's
size. The learning rate and epochs differ by size; batch size, warm-up and weight decay are the same for every size,
so they are resolved without reading the model.

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
# The hyper-parameters by model size. "small": within the best trials bench/tune.py's search found for the packaged
# MiniLM on generated paraphrase data (learning rates 6.6e-5 to 1.4e-4, 4-5 epochs), at the common batch size; the
# evidence (each setting's accuracy, the CPU) is the README's "Which settings reach which accuracy" table.
# "base": BERT-base's published fine-tuning defaults.
_COMMON = {"batch_size": 32, "warmup_ratio": 0.1, "weight_decay": 0.01}
DEFAULTS = {
    "small": {"learning_rate": 1e-4, "epochs": 4} | _COMMON,
    "base": {"learning_rate": 3e-5, "epochs": 3} | _COMMON,
}
_RESOLVED = tuple(DEFAULTS["base"])
# The hyper-parameters whose default depends on the model's size.
BY_SIZE = tuple(name for name in _RESOLVED if len({DEFAULTS[size][name] for size in DEFAULTS}) > 1)


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
    """``args`` with the hyper-parameters it left open (None) filled in from DEFAULTS; the model's config is read
    only when one of them depends on its size."""
    missing = [name for name in _RESOLVED if getattr(args, name) is None]
    if not missing:
        return args
    chosen = {name: DEFAULTS["base"][name] for name in missing if name not in BY_SIZE}
    by_size = [name for name in missing if name in BY_SIZE]
    if by_size:
        size = model_size(args.model)
        chosen |= {name: DEFAULTS[size][name] for name in by_size}
        log.info("%s: a %s model, so the %s defaults: %s", args.model, size, size, chosen)
    return dataclasses.replace(args, **chosen)
