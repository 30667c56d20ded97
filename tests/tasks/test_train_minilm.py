"""Fine-tuning the real pretrained all-MiniLM-L6-v2 on generated data learns the task (about a minute)."""

import json

import pytest


@pytest.mark.slow
def test_minilm_fine_tune_beats_the_majority_class_clearly(minilm_run):
    staged, model = minilm_run
    validation = json.loads((staged / "manifest.json").read_text())["splits"]["validation"]
    majority = max(validation["labels"]["equivalent"], validation["labels"]["not_equivalent"]) / validation["rows"]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["accuracy"] >= majority + 0.10, (metrics["accuracy"], majority)
    assert metrics["accuracy"] < 1.0  # the generated task is not trivially separable
    assert metrics["f1"] > 0.75
    assert metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
