"""A model folder loaded for serving: its signature, its tokenizer, its version, and batch padding.

The folder is the output of ``train`` or ``quantize`` (``saved_model/``, ``tokenizer/``); a folder holding
only a SageMaker ``model.tar.gz`` is unpacked first. Batches are padded to the smallest multiple of 16 that
holds their longest pair, so a batch of short pairs never pays for 128 positions, and to a batch size of a power
of two: the model only ever sees a fixed set of shapes, all run once at load, so the memory oneDNN keeps per
shape is spent before the first request and never grows after.

Tokenising is linear in the text's length, but the tokenizer's own truncation of a pair is quadratic in its
number of tokens (it pairs every overflowing piece of one sentence with every piece of the other: 3.5 s for two
30 kB sentences). So each sentence is tokenised alone and cut as ``longest_first`` would cut the pair: the same
tokens as the tokenizer's truncation (a test compares them), at a cost linear in the text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
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
    """One pair as token ids; ``attention_mask`` marks real tokens (pre-tokenised input may carry padding);
    ``truncated``: ``encode`` cut the text to fit (pre-tokenised input arrives cut, if at all)."""

    input_ids: list[int]
    token_type_ids: list[int]
    attention_mask: list[int]
    truncated: bool = False


def bucket_length(longest: int, max_seq_length: int) -> int:
    return min(max_seq_length, -(-longest // BUCKET_WIDTH) * BUCKET_WIDTH)


def _long_pair() -> tuple[str, str]:
    """A pair over any model's length, the first sentence longer: what truncation must cut the same way."""
    first, second = SMOKE_PAIRS[2]
    return " ".join([first] * 40), " ".join([second] * 30)


def longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many tokens of each sentence the tokenizer's ``longest_first`` truncation keeps of a pair of ``first``
    and ``second`` tokens within ``budget`` (the model's length less the special tokens); Hugging Face tokenizers'
    rule (``truncate_encodings`` in tokenizers/src/utils/truncation.rs): the shorter sentence is kept whole if the
    longer one can make up the rest, else each gets half."""
    if first + second <= budget:
        return first, second
    short, long = sorted((first, second))
    long = short if short > budget else max(short, budget - short)
    if short + long > budget:
        short, long = budget // 2, budget // 2 + budget % 2
    return (long, short) if first > second else (short, long)


def length_buckets(max_seq_length: int, padding: str) -> list[int]:
    """Every length a batch is padded to."""
    if padding == "max_length":
        return [max_seq_length]
    return sorted({bucket_length(longest, max_seq_length) for longest in range(1, max_seq_length + 1)})


def batch_buckets(max_batch_size: int) -> list[int]:
    """Every number of rows a batch is padded to: the powers of two below ``max_batch_size``, and it."""
    return [*(2**power for power in range(max_batch_size.bit_length()) if 2**power < max_batch_size), max_batch_size]


def pad_batch(
    pairs: list[Encoded], max_seq_length: int, padding: str = "longest", rows: int = 0
) -> dict[str, np.ndarray]:
    """int32 ``[rows, length]`` arrays of the signature's inputs, zero-padded to the bucket (or to the maximum);
    ``rows`` (at least ``len(pairs)``) adds rows of padding only."""
    longest = max(len(pair.input_ids) for pair in pairs)
    length = max_seq_length if padding == "max_length" else bucket_length(longest, max_seq_length)
    arrays = {name: np.zeros((max(rows, len(pairs)), length), dtype=np.int32) for name in SIGNATURE_INPUTS}
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
    max_batch_size: int = 32
    digest: str = ""  # the folder's content digest, verified at load
    vocab_size: int = field(init=False)
    unk_token_id: int | None = field(init=False)  # what data capture counts as an unknown token

    def __post_init__(self):
        # Counted once here, off the event loop: len() of a transformers tokenizer rebuilds its whole vocabulary
        # (about 100 ms), and once per request it held the event loop, /ping included, for half its time.
        self.vocab_size = len(self.tokenizer)
        self.unk_token_id = self.tokenizer.unk_token_id

    @classmethod
    def load(
        cls,
        source: str,
        max_seq_length: int = 128,
        padding: str = "longest",
        max_batch_size: int = 32,
        digest: str = "",
    ) -> ServedModel:
        """Verify the model folder's content digest (``digest`` when given, and the one sealed in it), then
        load, warm up and smoke-check it; ModelError naming the folder and both digests when they differ."""
        from tasks.runtime.digest import verify
        from tasks.runtime.models import resolve

        started = time.perf_counter()
        folder = resolve(source)
        verified = verify(folder, digest or None)  # before a byte of it is loaded

        from transformers import AutoTokenizer

        from tasks.evaluation.measure import serving_function

        function = serving_function(folder)
        if not (folder / "tokenizer").is_dir():
            raise ModelError(f"{folder}: no tokenizer/ folder; serve the output of `train` or `quantize`")
        tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
        model = cls(
            folder, model_version(folder), function, tokenizer, max_seq_length, padding, max_batch_size, verified
        )
        shapes = model.warm_up()
        model.smoke_check()
        log.info(
            "verified, loaded, warmed (%d batch shapes) and smoke-checked %s (version %s, %s) in %.1f s; peak"
            " resident memory %.0f MB",
            shapes,
            folder,
            model.version,
            verified,
            time.perf_counter() - started,
            peak_resident_megabytes(),
        )
        return model

    def encode(self, pairs: list[tuple[str, str]]) -> list[Encoded]:
        """Tokenise sentence pairs, truncating the longer sentence first to ``max_seq_length`` (``longest_first``);
        linear in the text's length. CPU-bound: call it off the event loop."""
        firsts, seconds = (
            self.tokenizer([pair[side] for pair in pairs], add_special_tokens=False, verbose=False)["input_ids"]
            for side in (0, 1)
        )
        budget = self.max_seq_length - self.tokenizer.num_special_tokens_to_add(pair=True)
        encoded = []
        for first, second in zip(firsts, seconds, strict=True):
            kept_first, kept_second = longest_first(len(first), len(second), budget)
            truncated = kept_first < len(first) or kept_second < len(second)
            first, second = first[:kept_first], second[:kept_second]
            ids = self.tokenizer.build_inputs_with_special_tokens(first, second)
            types = self.tokenizer.create_token_type_ids_from_sequences(first, second)
            encoded.append(Encoded(ids, types, [1] * len(ids), truncated))
        return encoded

    def _check_encoding(self) -> None:
        """``encode`` builds the special tokens itself: refuse a tokenizer for which that differs from the
        tokenizer's own ``longest_first`` encoding (one without a model-specific class adds none, for one)."""
        pairs = [*SMOKE_PAIRS, _long_pair()]
        expected = self.tokenizer(
            [first for first, _ in pairs],
            [second for _, second in pairs],
            truncation="longest_first",
            max_length=self.max_seq_length,
        )
        if [pair.input_ids for pair in self.encode(pairs)] != expected["input_ids"]:
            raise ModelError(
                f"smoke check: the {type(self.tokenizer).__name__} tokenizer's pairs cannot be reproduced when"
                " each sentence is tokenised alone; serve a model saved with its model-specific tokenizer"
            )

    def predict(self, pairs: list[Encoded]) -> np.ndarray:
        """float32 logits ``[len(pairs), 2]``, in calls of at most ``max_batch_size`` pairs, each padded to a
        warmed shape; runs the graph, so call it off the event loop."""
        rows = batch_buckets(self.max_batch_size)
        logits = []
        for start in range(0, len(pairs), self.max_batch_size):
            chunk = pairs[start : start + self.max_batch_size]
            padded = next(size for size in rows if size >= len(chunk))
            inputs = pad_batch(chunk, self.max_seq_length, self.padding, padded)
            logits.append(self.function(**inputs)[SIGNATURE_OUTPUT].numpy()[: len(chunk)])
        return np.concatenate(logits)

    def warm_up(self) -> int:
        """Run every batch shape once (each batch size bucket at each length bucket), so no request pays for
        graph and kernel set-up, and oneDNN's per-shape memory is spent now; returns how many shapes."""
        pair = self.encode([_WARM_UP_PAIR])[0]
        shapes = 0
        for length in length_buckets(self.max_seq_length, self.padding):
            ids = (pair.input_ids * length)[:length]
            for rows in batch_buckets(self.max_batch_size):
                self.predict([Encoded(ids, [0] * length, [1] * length)] * rows)
                shapes += 1
        return shapes

    def smoke_check(self) -> None:
        """Refuse a model whose tokenizer ``encode`` does not reproduce, or whose logits are malformed, not
        finite, or change when a pair is batched and padded."""
        self._check_encoding()
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


def peak_resident_megabytes() -> float:
    """The most resident memory (RSS) this process has held so far, in MB (Linux counts ``ru_maxrss`` in kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def labels(logits: np.ndarray) -> list[str]:
    return [LABELS[index] for index in np.argmax(logits, axis=-1)]
