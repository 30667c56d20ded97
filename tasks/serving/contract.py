"""The inference contract's answer, as the server gives it and every smoke test checks it.

``POST /invocations`` with ``{"instances": [{"sentence1": ..., "sentence2": ...}, ...]}`` answers
``{"predictions": [...], "labels": [...], "probabilities": [[...], ...], "model_version": ...}``: one prediction
per pair, labels from ``LABELS``, each row of probabilities summing to 1. The server checks a model with
``SMOKE_PAIRS`` before it may serve; the ``smoke-test`` step and the Airflow side's smoke tests send the same
pairs (``SMOKE_REQUEST``) to an endpoint and judge the answer with ``answer_problems``. The labels are not
checked against the truth (a candidate may be wrong about a pair), only the answer's shape.

Only the standard library is imported: the Airflow side imports this module.
"""

from __future__ import annotations

import json
import math

JSON_TYPES = ("application/json",)
"""The request content types the server takes (the SageMaker endpoint's capture keeps their bodies as text)."""

LABELS = ("not_equivalent", "equivalent")
"""Class names in label order, as GLUE MRPC names them; label 1 (a paraphrase) is the positive class."""

# The first pair also warms a model up; the pairs' lengths fall in different padding buckets.
SMOKE_PAIRS = (
    ("The company posted a profit.", "The firm reported earnings."),
    ("Shares fell 3 percent in early trading.", "The weather stayed sunny all week."),
    (
        "The central bank left interest rates unchanged on Thursday, citing steady growth and low inflation.",
        "On Thursday the central bank kept rates where they were, pointing to stable growth and inflation.",
    ),
)
SMOKE_REQUEST = {"instances": [{"sentence1": first, "sentence2": second} for first, second in SMOKE_PAIRS]}
_PROBABILITY_TOLERANCE = 1e-3
_SHOWN_BYTES = 300


def _sums_to_one(row: list[float]) -> bool:
    return math.isclose(sum(row), 1.0, abs_tol=_PROBABILITY_TOLERANCE)


def answer_problems(raw: bytes) -> tuple[dict | None, list[str]]:
    """The parsed answer to ``SMOKE_REQUEST`` and what is wrong with it (an empty list when it passes).

    :param raw: the body of the endpoint's answer.
    :return: the answer and its problems; ``(None, [reason])`` for a body that is not JSON or lacks
        ``predictions``, ``labels`` or ``probabilities``.
    """
    try:
        body = json.loads(raw)
        pairs = len(SMOKE_PAIRS)
        found = [] if len(body["predictions"]) == pairs else [f"{pairs} pairs, answer {body}"]
        found += [f"label {label!r} not in {LABELS}" for label in body["labels"] if label not in LABELS]
        found += [f"probabilities {row} do not sum to 1" for row in body["probabilities"] if not _sums_to_one(row)]
        return body, found
    except (ValueError, KeyError, TypeError) as error:
        return None, [f"not the inference contract's answer ({error!r}): {raw[:_SHOWN_BYTES]!r}"]
