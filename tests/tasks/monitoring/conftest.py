"""Capture files and baselines drawn from one generator, so traffic "like the baseline" is a fact of the test.

``draw`` yields pairs as the server captures them: token lengths around 38 (the generated data's), a paraphrase
share of about two thirds, a confident model, no unknown tokens. The baseline is the same generator's figures
over many pairs, written into a model folder's card as ``train`` writes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tasks.config import LOW_CONFIDENCE
from tasks.monitoring import baseline, records
from tasks.runtime import model_card

WINDOW_END = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
WINDOW_START = WINDOW_END - timedelta(hours=1)


def draw(count: int, seed: int = 0, *, extra_tokens: int = 0, flip_labels: bool = False) -> list[dict]:
    """``count`` capture records spread over the hour before WINDOW_END."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.normal(38, 6, count).round(), 8, 120).astype(int) + extra_tokens
    labels = (rng.random(count) < 0.67).astype(int)
    probabilities = 0.5 + 0.5 * rng.beta(5, 1, count)
    offsets = np.sort(rng.uniform(0, 3600, count))
    return [
        {
            "time": records.stamp(WINDOW_START + timedelta(seconds=float(offset))),
            "model_version": "v1",
            "request_id": f"r{index}",
            "tokens": [int(length) // 2, int(length) - int(length) // 2],
            "truncated": False,
            "unknown_tokens": 0,
            "label": int(1 - label if flip_labels else label),
            "probability": round(float(probability), 4),
        }
        for index, (length, label, probability, offset) in enumerate(
            zip(lengths, labels, probabilities, offsets, strict=True)
        )
    ]


def traffic_baseline(pairs: int = 20_000) -> dict:
    """The generator's baseline, as train writes it into a model card."""
    drawn = draw(pairs, seed=99)
    lengths = np.array([sum(record["tokens"]) for record in drawn])
    labels = np.array([record["label"] for record in drawn])
    probabilities = np.array([record["probability"] for record in drawn])
    figures = baseline.of_predictions(probabilities, labels, LOW_CONFIDENCE)
    return baseline.with_validation(baseline.of_training_data(lengths, 0, labels), figures, pairs, LOW_CONFIDENCE)


def write_capture(root: Path, drawn: Iterable[dict], name: str = "") -> list[Path]:
    """``drawn`` as the server writes it: one file per UTC hour, in that hour's folder."""
    by_hour: dict[str, list[dict]] = {}
    for record in drawn:
        by_hour.setdefault(records.hour_folder(records.parse_time(record["time"])), []).append(record)
    written = []
    for folder, hour_records in by_hour.items():
        first = records.parse_time(hour_records[0]["time"])
        path = root / folder / (name or records.file_name(first, "host", os.getpid(), len(written)))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(record) + "\n" for record in hour_records))
        written.append(path)
    return written


@pytest.fixture(scope="session")
def card_baseline() -> dict:
    return traffic_baseline()


@pytest.fixture
def model_folder(tmp_path, card_baseline) -> Path:
    """A model folder whose card holds the generator's baseline (what monitor reads of a model)."""
    folder = tmp_path / "model"
    folder.mkdir()
    card = {"architecture": "TFBertForSequenceClassification", model_card.TRAFFIC_BASELINE: card_baseline}
    (folder / model_card.JSON_CARD).write_text(json.dumps(card))
    return folder


def monitor_flags(capture: Path | str, baseline_uri: Path | str, output: Path | str, *extra: str) -> list[str]:
    window_end = records.stamp(WINDOW_END)
    return [
        *("--capture", str(capture), "--baseline", str(baseline_uri), "--output", str(output)),
        *("--window-end", window_end, *extra),
    ]
