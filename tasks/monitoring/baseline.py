"""The traffic baseline: the figures of a model's own data that ``monitor`` compares its traffic with.

``train`` writes it into the model card, under ``model_card.TRAFFIC_BASELINE``; a compressed model's card keeps it::

    {"pairs": 3668,                                   # the train split's
     "max_seq_length": 128,                           # the length its pairs were cut at (as trained)
     "token_length": {"edges": [...], "shares": [...]},  # decile bins of its pairs' token lengths, their shares
     "positive_share": 0.67,                          # share labelled paraphrase
     "unknown_token_rate": 0.0004,                    # unknown tokens ([UNK]) per token
     "validation": {"pairs": 408, "low_confidence": 0.6,        # the trained model's predictions on the
                    "predicted_positive_share": 0.7,            # validation split: what it answers to data
                    "mean_confidence": 0.91,                    # like its training data
                    "low_confidence_share": 0.05}}

A staged data folder gives the same without ``validation`` (it has no predictions). A pair's token length is
what its attention mask counts: a staged pair's unpadded ``input_ids``, a captured pair's ``tokens`` summed.
A server may cut pairs at another max length than the model was trained at; ``monitor`` clips traffic's
lengths at the baseline's ``max_seq_length`` before binning, so a server cutting longer compares like with like
(a baseline without it, from older code, is compared as it is).
Traffic's paraphrase share is a share of predictions, so it is compared with the validation predictions' share
when there is one (a model's bias towards one label is then no drift), else with the train split's labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.monitoring import statistics
from tasks.monitoring.statistics import LOW_CONFIDENCE_SHARE, MEAN_CONFIDENCE, POSITIVE_SHARE, UNKNOWN_TOKEN_RATE

VALIDATION = "validation"
MAX_SEQ_LENGTH = "max_seq_length"
# The figures of a model's validation predictions (a training epoch's record has them too).
PREDICTED_POSITIVE_SHARE = "predicted_positive_share"
PREDICTION_FIGURES = (PREDICTED_POSITIVE_SHARE, MEAN_CONFIDENCE, LOW_CONFIDENCE_SHARE)


def of_training_data(
    lengths: np.ndarray, unknown_tokens: int, labels: np.ndarray, max_seq_length: int | None = None
) -> dict:
    """The baseline of a train split: its pairs' token lengths, the unknown tokens among them, its labels, and
    the max length they were cut at (recorded when given)."""
    edges = statistics.length_edges(lengths)
    tokens = int(np.sum(lengths))
    return {
        "pairs": len(lengths),
        **({} if max_seq_length is None else {MAX_SEQ_LENGTH: int(max_seq_length)}),
        "token_length": {"edges": edges, "shares": statistics.bin_shares(lengths, edges)},
        "positive_share": float(np.mean(np.asarray(labels) == 1)),
        "unknown_token_rate": unknown_tokens / tokens if tokens else 0.0,
    }


def of_predictions(probabilities: np.ndarray, predictions: np.ndarray, low_confidence: float) -> dict:
    """PREDICTION_FIGURES of a model's predictions: each pair's predicted label and that label's probability."""
    return {
        PREDICTED_POSITIVE_SHARE: float(np.mean(np.asarray(predictions) == 1)),
        MEAN_CONFIDENCE: float(np.mean(probabilities)),
        LOW_CONFIDENCE_SHARE: float(np.mean(np.asarray(probabilities) < low_confidence)),
    }


def with_validation(baseline: dict, figures: dict, pairs: int, low_confidence: float) -> dict:
    """``baseline`` with the validation predictions' ``figures`` (PREDICTION_FIGURES; a record without them,
    such as an epoch scored by older code, adds nothing)."""
    if any(figures.get(name) is None for name in PREDICTION_FIGURES):
        return baseline
    validation = {name: figures[name] for name in PREDICTION_FIGURES}
    return baseline | {VALIDATION: {"pairs": pairs, "low_confidence": low_confidence} | validation}


def reference_values(baseline: dict, low_confidence: float) -> dict[str, float | None]:
    """Each statistic's baseline value; None where the baseline has none. The low-confidence share is
    comparable only at the threshold the baseline measured it at."""
    validation = baseline.get(VALIDATION) or {}
    same_threshold = validation.get("low_confidence") == low_confidence
    return {
        statistics.TOKEN_LENGTH_PSI: 0.0,  # the baseline's index against itself
        POSITIVE_SHARE: validation.get(PREDICTED_POSITIVE_SHARE, baseline["positive_share"]),
        MEAN_CONFIDENCE: validation.get(MEAN_CONFIDENCE),
        LOW_CONFIDENCE_SHARE: validation.get(LOW_CONFIDENCE_SHARE) if same_threshold else None,
        UNKNOWN_TOKEN_RATE: baseline["unknown_token_rate"],
    }


def length_notes(traffic, baseline: dict) -> list[str]:
    """What a reader of the token-length statistic must know: a server that cut pairs shorter than the model was
    trained at (``traffic``: tasks.monitoring.traffic.Traffic, its lengths as the server cut them)."""
    trained, served = baseline.get(MAX_SEQ_LENGTH), traffic.server_cut()
    if trained is None or served is None or served >= trained:
        return []
    return [
        f"the server cut pairs at {served} tokens, the model was trained at {trained}: the baseline's length bins"
        f" above {served} cannot be reached, so token_length_psi is high for traffic like the training data;"
        f" serve with --max-seq-length {trained}"
    ]


def unknown_token_id(tokenizer: Path) -> int | None:
    """The unknown token's id of the tokenizer saved in ``tokenizer`` (None if it has none)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer).unk_token_id


def of_staged_data(folder: Path) -> dict:
    """The baseline of a staged data folder's train split (no validation predictions)."""
    import pyarrow.compute as pc

    from tasks.data.splits import load_split_dataset, read_manifest, tokenizer_folder

    table = load_split_dataset(folder, "train").data
    input_ids = table.column("input_ids")
    unknown = unknown_token_id(tokenizer_folder(folder))
    matches = 0 if unknown is None else pc.sum(pc.equal(pc.list_flatten(input_ids), unknown)).as_py() or 0
    lengths = pc.list_value_length(input_ids).to_numpy(zero_copy_only=False)
    max_seq_length = read_manifest(folder).get("max_seq_length")
    return of_training_data(lengths, matches, table.column("label").to_numpy(), max_seq_length)
