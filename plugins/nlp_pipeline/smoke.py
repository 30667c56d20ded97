"""The smoke test every platform runs against its endpoint: three pairs, and an answer in the contract's shape.

The labels are not checked against the truth (a candidate may be wrong about a pair); the answer's shape is:
one prediction per pair, known labels, probabilities that sum to 1.
"""

from __future__ import annotations

import json
import math

PAIRS = [
    ("The company said profits rose sharply.", "Profits at the company rose sharply, it said."),
    ("He plays the piano every morning.", "The weather in the mountains was cold."),
    ("Shares fell 3 percent in early trading.", "In early trading the shares were down 3 percent."),
]
LABELS = ("not_equivalent", "equivalent")  # GLUE MRPC's class names, as the server answers (tasks.models)
REQUEST = {"instances": [{"sentence1": first, "sentence2": second} for first, second in PAIRS]}


def problems(raw: bytes) -> tuple[dict | None, list[str]]:
    """The parsed answer to ``REQUEST`` and what is wrong with it (nothing when it passes)."""
    try:
        body = json.loads(raw)
        found = [] if len(body["predictions"]) == len(PAIRS) else [f"{len(PAIRS)} pairs, answer {body}"]
        found += [f"label {label!r} not in {LABELS}" for label in body["labels"] if label not in LABELS]
        found += [f"probabilities {row} do not sum to 1" for row in body["probabilities"]
                  if not math.isclose(sum(row), 1.0, abs_tol=1e-3)]  # fmt: skip
        return body, found
    except (ValueError, KeyError, TypeError) as error:
        return None, [f"not the inference contract's answer ({error!r}): {raw[:300]!r}"]
