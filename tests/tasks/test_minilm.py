"""The real pretrained all-MiniLM-L6-v2, fine-tuned once on generated data (``minilm_run``): it learns the task,
and its INT8 model labels pairs as it does."""

import json

import pytest

from tests.conftest import flags
from tests.tasks.compression.test_quantize import assert_int8_record, quantize


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


@pytest.mark.slow
def test_minilm_int8_agrees_with_fp32(tmp_path, minilm_run):
    """INT8 MiniLM labels the validation split as FP32 does, scored by plain TensorFlow in a fresh process.

    Agreement, not speed, is the subject: the speed rule is waived (``--min-speedup 0``; whether INT8 pays depends
    on the CPU, see the speed-rule tests), and one recipe (the one that keeps BERT's widest activations in FP32)
    on a small calibration sample keeps the budget small.
    """
    staged, model = minilm_run
    output = tmp_path / "int8"
    recipe = "int8-fp32-head-and-first-ffn-output"
    settings = flags(min_speedup=0, recipes=recipe, calibration_size=96, timing="quick", precision="fp32,int8")
    quantize(model, staged, output, *settings)
    record = json.loads((output / "quantization.json").read_text())
    assert_int8_record(record)
    assert [trial["recipe"] for trial in record["inc"]["trials"]] == ["int8-fp32-head-and-first-ffn-output"]
    assert record["timing"] == "quick"
    assert record["agreement"] >= 0.98, "agreement from the fresh plain-TensorFlow scoring process"
