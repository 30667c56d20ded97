"""The statistics ``monitor`` compares a window of traffic with the model's traffic baseline, and when each is drift.

Each statistic has a value over the window's pairs, the baseline's value, and a threshold (a flag of
``python -m tasks monitor``). It drifted when its departure from the baseline is above the threshold:

===================== ============================================== =========================================
statistic             value over the window's pairs                   departure (drift when above its threshold)
===================== ============================================== =========================================
token_length_psi      population stability index of the pairs'       the index itself (0: the same shape)
                      token lengths over the baseline's decile bins
positive_share        share predicted paraphrase (label 1)           the absolute change
mean_confidence       mean probability of the predicted label        the drop below the baseline
low_confidence_share  share below --low-confidence                   the rise above the baseline
unknown_token_rate    unknown tokens ([UNK]) per token               the rise above the baseline
===================== ============================================== =========================================

A statistic without a value (no pairs) or without a baseline value (a staged data set has no predictions) is
``no_reference``: it is reported, never drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TOKEN_LENGTH_PSI = "token_length_psi"
POSITIVE_SHARE = "positive_share"
MEAN_CONFIDENCE = "mean_confidence"
LOW_CONFIDENCE_SHARE = "low_confidence_share"
UNKNOWN_TOKEN_RATE = "unknown_token_rate"
NAMES = (TOKEN_LENGTH_PSI, POSITIVE_SHARE, MEAN_CONFIDENCE, LOW_CONFIDENCE_SHARE, UNKNOWN_TOKEN_RATE)
# A statistic's status.
PASS, DRIFT, NO_REFERENCE = "pass", "drift", "no_reference"
# The share an empty bin counts as in the PSI: log(0) is undefined, and one empty bin must not make it infinite.
EMPTY_BIN_SHARE = 1e-4
DECILES = tuple(step / 10 for step in range(1, 10))
_DIGITS = 6


def length_edges(lengths: np.ndarray) -> list[float]:
    """The upper edges of the decile bins of ``lengths`` (bin i holds edges[i-1] < length <= edges[i]; the last
    bin everything above the last edge); repeated edges (lengths are integers) merge their bins."""
    return [float(edge) for edge in np.unique(np.quantile(lengths, DECILES))]


def bin_shares(lengths: np.ndarray, edges: list[float]) -> list[float]:
    """The share of ``lengths`` in each of the ``len(edges) + 1`` bins the edges bound."""
    counts = np.bincount(np.searchsorted(np.asarray(edges), lengths, side="left"), minlength=len(edges) + 1)
    return [float(share) for share in counts / max(len(lengths), 1)]


def psi(actual: list[float], expected: list[float]) -> float:
    """Population stability index: sum over bins of (actual - expected) * ln(actual / expected), each share at
    least EMPTY_BIN_SHARE. 0 for equal shares; about 0.1 is a small shift, 0.25 and more a large one."""
    observed = np.maximum(np.asarray(actual, dtype=float), EMPTY_BIN_SHARE)
    reference = np.maximum(np.asarray(expected, dtype=float), EMPTY_BIN_SHARE)
    return float(np.sum((observed - reference) * np.log(observed / reference)))


@dataclass(frozen=True)
class Rule:
    """How a statistic is judged: the MonitorArguments field holding its threshold, and its departure from the
    baseline's value (drift when above the threshold)."""

    threshold_flag: str
    departure: Callable[[float, float], float]


RULES: dict[str, Rule] = {
    TOKEN_LENGTH_PSI: Rule("psi_threshold", lambda value, baseline: value),
    POSITIVE_SHARE: Rule("label_shift_threshold", lambda value, baseline: abs(value - baseline)),
    MEAN_CONFIDENCE: Rule("confidence_drop_threshold", lambda value, baseline: baseline - value),
    LOW_CONFIDENCE_SHARE: Rule("low_confidence_shift_threshold", lambda value, baseline: value - baseline),
    UNKNOWN_TOKEN_RATE: Rule("unknown_rate_threshold", lambda value, baseline: value - baseline),
}


def traffic_values(traffic, baseline: dict, low_confidence: float) -> dict[str, float | None]:
    """Each statistic's value over ``traffic`` (tasks.monitoring.traffic.Traffic); None without pairs."""
    if not len(traffic):
        return dict.fromkeys(NAMES)
    edges = baseline["token_length"]["edges"]
    tokens = int(traffic.lengths.sum())
    return {
        TOKEN_LENGTH_PSI: psi(bin_shares(traffic.lengths, edges), baseline["token_length"]["shares"]),
        POSITIVE_SHARE: float(np.mean(traffic.labels == 1)),
        MEAN_CONFIDENCE: float(np.mean(traffic.probabilities)),
        LOW_CONFIDENCE_SHARE: float(np.mean(traffic.probabilities < low_confidence)),
        UNKNOWN_TOKEN_RATE: float(traffic.unknown_tokens.sum() / tokens) if tokens else 0.0,
    }


def judge(name: str, value: float | None, baseline: float | None, threshold: float) -> dict:
    """A statistic's report entry: name, value, baseline, threshold and status."""
    if value is None or baseline is None:
        status = NO_REFERENCE
    else:
        status = DRIFT if RULES[name].departure(value, baseline) > threshold else PASS
    return {
        "name": name,
        "value": None if value is None else round(value, _DIGITS),
        "baseline": None if baseline is None else round(baseline, _DIGITS),
        "threshold": threshold,
        "status": status,
    }


def compare(values: dict[str, float | None], references: dict[str, float | None], args) -> list[dict]:
    """Every statistic's report entry, in NAMES order: its ``values`` against the baseline's ``references``
    under ``args``' thresholds (MonitorArguments)."""
    return [judge(name, values[name], references[name], getattr(args, RULES[name].threshold_flag)) for name in NAMES]
