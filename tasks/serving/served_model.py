"""A model folder loaded for serving: its signature, its tokenizer, its version, and batch padding.

The folder is the output of ``train`` or ``quantize`` (``saved_model/``, ``tokenizer/``); a folder holding
only a SageMaker ``model.tar.gz`` is unpacked first. Batches are padded to the smallest multiple of 16 that
holds their longest pair, so a batch of short pairs never pays for 128 positions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.data.splits import BUCKET_WIDTH
from tasks.errors import ModelError
from tasks.serving.contract import LABELS, SMOKE_PAIRS
from tasks.training.export import SIGNATURE_INPUTS, SIGNATURE_OUTPUT

log = logging.getLogger(__name__)

_WARM_UP_PAIR = SMOKE_PAIRS[0]
# Before a model may serve, the smoke pairs are scored together and one by one. Logits of a pair alone and in
# a padded batch differ by rounding only (INT8 included); more is a broken model.
SMOKE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Encoded:
    """One pair as token ids; ``attention_mask`` marks real tokens (pre-tokenised input may carry padding)."""

    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]


def bucket_length(longest: int, max_seq_length: int) -> int:
    return min(max_seq_length, -(-longest // BUCKET_WIDTH) * BUCKET_WIDTH)


def pad_batch(pairs: list[Encoded], max_seq_length: int, padding: str = "longest") -> dict[str, np.ndarray]:
    """int32 ``[batch, length]`` arrays of the signature's inputs, zero-padded to the bucket (or to the maximum)."""
    longest = max(len(pair.input_ids) for pair in pairs)
    length = max_seq_length if padding == "max_length" else bucket_length(longest, max_seq_length)
    arrays = {name: np.zeros((len(pairs), length), dtype=np.int32) for name in SIGNATURE_INPUTS}
    for row, pair in enumerate(pairs):
        for name in SIGNATURE_INPUTS:
            values = getattr(pair, name)
            arrays[name][row, : len(values)] = values
    return arrays


def model_version(folder: Path) -> str:
    """``<precision>-<first 12 hex of the graph's sha256>``: equal graphs, equal versions."""
    digest = hashlib.sha256((folder / "saved_model" / "saved_model.pb").read_bytes()).hexdigest()[:12]
    quantization = folder / "quantization.json"
    precision = json.loads(quantization.read_text())["chosen_precision"] if quantization.is_file() else "fp32"
    return f"{precision}-{digest}"


@dataclass
class ServedModel:
    folder: Path
    version: str
    function: object
    tokenizer: object
    max_seq_length: int
    padding: str = "longest"

    @classmethod
    def load(cls, source: str, max_seq_length: int = 128, padding: str = "longest") -> ServedModel:
        from transformers import AutoTokenizer

        from tasks.evaluation.measure import serving_function
        from tasks.runtime.models import resolve

        started = time.perf_counter()
        folder = resolve(source)
        function = serving_function(folder)
        if not (folder / "tokenizer").is_dir():
            raise ModelError(f"{folder}: no tokenizer/ folder; serve the output of `train` or `quantize`")
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        model = cls(folder, model_version(folder), function, tokenizer, max_seq_length, padding)
        model.warm_up()
        model.smoke_check()
        log.info(
            "loaded, warmed and smoke-checked %s (version %s) in %.1f s",
            folder,
            model.version,
            time.perf_counter() - started,
        )
        return model

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, pairs: list[tuple[str, str]]) -> list[Encoded]:
        """Tokenise sentence pairs, truncating the longer sentence first to ``max_seq_length``."""
        batch = self.tokenizer(
            [first for first, _ in pairs],
            [second for _, second in pairs],
            truncation="longest_first",
            max_length=self.max_seq_length,
        )
        return [
            Encoded(ids, types, [1] * len(ids))
            for ids, types in zip(batch["input_ids"], batch["token_type_ids"], strict=True)
        ]

    def predict(self, pairs: list[Encoded]) -> np.ndarray:
        """float32 logits ``[len(pairs), 2]``; runs the graph, so call it off the event loop."""
        inputs = pad_batch(pairs, self.max_seq_length, self.padding)
        return self.function(**inputs)[SIGNATURE_OUTPUT].numpy()

    def warm_up(self) -> None:
        """Run every bucket length once, so no request pays for graph and kernel set-up."""
        pair = self.encode([_WARM_UP_PAIR])[0]
        for length in range(BUCKET_WIDTH, self.max_seq_length + 1, BUCKET_WIDTH):
            ids = (pair.input_ids * length)[:length]
            self.predict([Encoded(ids, [0] * length, [1] * length)])

    def smoke_check(self) -> None:
        """Refuse a model whose logits are malformed, not finite, or change when a pair is batched and padded."""
        encoded = self.encode(list(SMOKE_PAIRS))
        together = self.predict(encoded)
        if together.shape != (len(encoded), len(LABELS)):
            raise ModelError(f"smoke check: logits of shape {together.shape}, expected ({len(encoded)}, {len(LABELS)})")
        if not np.isfinite(together).all():
            raise ModelError(f"smoke check: logits are not finite: {together.tolist()}")
        alone = np.concatenate([self.predict([pair]) for pair in encoded])
        drift = float(np.abs(alone - together).max())
        if drift > SMOKE_TOLERANCE:
            raise ModelError(
                f"smoke check: a pair's logits change by {drift:.3f} (more than {SMOKE_TOLERANCE}) when it is scored"
                " in a padded batch instead of alone; the attention mask is not applied"
            )


def probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def labels(logits: np.ndarray) -> list[str]:
    return [LABELS[index] for index in np.argmax(logits, axis=-1)]
