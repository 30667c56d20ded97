"""Staged data: its manifest and tokenizer, and its Arrow splits as TensorFlow input pipelines.

Token ids are stored unpadded. Arrow's list offsets become a ``tf.RaggedTensor`` without a Python loop,
and batches are padded in the graph: either to the batch's length bucket (multiples of
``BUCKET_WIDTH``; pairs of similar length are batched together, so little padding is computed) or, for
comparison, always to the maximum length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.errors import DataError

BUCKET_WIDTH = 16
FEATURES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Split:
    """One split in memory: ragged token ids, labels, and the raw text they came from."""

    input_ids: object
    token_type_ids: object
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _ragged(column):
    import tensorflow as tf

    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    return tf.RaggedTensor.from_row_splits(array.flatten().to_numpy().astype(np.int32), offsets - offsets[0])


def read_manifest(data: Path) -> dict:
    path = data / "manifest.json"
    if not path.is_file():
        channel = data / "manifest" / "manifest.json"  # SageMaker: the manifest as its own input channel
        if not channel.is_file():
            raise DataError(f"{data}: no manifest.json; --data must be a folder written by `python -m tasks stage`")
        path = channel
    return json.loads(path.read_text())


def tokenizer_folder(data: Path) -> Path:
    for folder in (data / "tokenizer", data / "manifest" / "tokenizer"):
        if folder.is_dir():
            return folder
    raise DataError(f"{data}: no tokenizer/ folder; stage the data again with `python -m tasks stage`")


def load_split_dataset(folder: Path, name: str):
    """A staged split as the ``datasets.Dataset`` that ``stage`` saved."""
    import datasets

    path = folder / name
    if not (path / "dataset_info.json").is_file():
        raise DataError(f"{folder}: no staged {name} split (expected {path}/ as written by `python -m tasks stage`)")
    return datasets.load_from_disk(str(path))


def load_split(folder: Path, name: str, tokenizer=None, max_seq_length: int = 0) -> Split:
    """Read a staged split; with a tokenizer, re-tokenise its raw text to ``max_seq_length`` instead."""
    dataset = load_split_dataset(folder, name)
    if tokenizer is not None:
        dataset = dataset.map(
            lambda rows: tokenizer(
                rows["sentence1"], rows["sentence2"], truncation="longest_first", max_length=max_seq_length
            ),
            batched=True,
            remove_columns=["input_ids", "token_type_ids"],
        )
    labels = np.asarray(dataset["label"], dtype=np.int32)
    return Split(_ragged(dataset.data.column("input_ids")), _ragged(dataset.data.column("token_type_ids")), labels)


def bucket_boundaries(max_seq_length: int) -> list[int]:
    """Boundaries that make ``bucket_by_sequence_length`` pad to 16, 32, ... up to ``max_seq_length``."""
    return list(range(BUCKET_WIDTH + 1, max_seq_length + 1, BUCKET_WIDTH)) + [max_seq_length + 1]


def make_dataset(
    split: Split,
    batch_size: int,
    max_seq_length: int,
    *,
    padding: str = "longest",
    shuffle_seed: int | None = None,
    input_context=None,
):
    """Batches of ``({input_ids, attention_mask, token_type_ids}, label)``.

    :param shuffle_seed: shuffle and repeat forever (training); None reads each pair once in order.
    :param input_context: ``tf.distribute.InputContext`` of a multi-worker job; each worker reads its shard.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(
        ({"input_ids": split.input_ids, "token_type_ids": split.token_type_ids}, split.labels)
    )
    if input_context is not None and input_context.num_input_pipelines > 1:
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True).repeat()

    def with_mask(features, label):
        features = dict(features, attention_mask=tf.ones_like(features["input_ids"]))
        features["token_type_ids"] = tf.cast(features["token_type_ids"], tf.int32)
        return features, label

    dataset = dataset.map(with_mask, num_parallel_calls=tf.data.AUTOTUNE)
    if padding == "max_length":
        shapes = ({name: [max_seq_length] for name in FEATURES}, [])
        dataset = dataset.padded_batch(batch_size, padded_shapes=shapes)
    else:
        boundaries = bucket_boundaries(max_seq_length)
        dataset = dataset.bucket_by_sequence_length(
            lambda features, label: tf.shape(features["input_ids"])[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            pad_to_bucket_boundary=True,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)
