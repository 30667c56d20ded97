"""Fine-tuning the real pretrained all-MiniLM-L6-v2 on generated data learns the task (about a minute)."""

import json

import pytest

from tests.conftest import run_tasks


@pytest.mark.slow
def test_minilm_fine_tune_beats_the_majority_class_clearly(tmp_path, minilm_path):
    raw, staged, model = tmp_path / "raw", tmp_path / "staged", tmp_path / "model"
    run_tasks(
        "sample", "--output", str(raw), "--seed", "11", "--train-size", "1200", "--dev-size", "300", "--test-size", "10"
    )
    run_tasks("stage", "--source", str(raw), "--output", str(staged), "--tokenizer", str(minilm_path))
    run_tasks("train", "--data", str(staged), "--model", str(minilm_path), "--output", str(model),
              "--epochs", "3", "--learning-rate", "1e-4", "--log-every", "20")  # fmt: skip

    validation = json.loads((staged / "manifest.json").read_text())["splits"]["validation"]
    majority = max(validation["labels"]["equivalent"], validation["labels"]["not_equivalent"]) / validation["rows"]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["accuracy"] >= majority + 0.10, (metrics["accuracy"], majority)
    assert metrics["accuracy"] < 1.0  # the generated task is not trivially separable
    assert metrics["f1"] > 0.75
    assert metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
