"""The quantize step: INC INT8 that runs on plain TensorFlow, the FP32 fallback, the SageMaker contract."""

import json
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import REPO, flags, run_tasks

# Loads both models with plain TensorFlow in a fresh interpreter and compares them on the validation split.
_AGREEMENT_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from tasks.data.splits import load_split
from tasks.evaluation.measure import batches, serving_function
fp32, int8, data = (Path(arg) for arg in sys.argv[1:4])
split = load_split(data, "validation")
labels = {}
for name, folder in (("fp32", fp32), ("int8", int8)):
    function = serving_function(folder)
    labels[name] = np.concatenate([np.argmax(function(**x)["logits"].numpy(), -1) for x, _ in batches(split, 32, 128)])
print(json.dumps({
    "agreement": float(np.mean(labels["fp32"] == labels["int8"])),
    "inc_imported": any(name.startswith("neural_compressor") for name in sys.modules),
}))
"""


def compare_in_fresh_process(fp32, int8, data) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _AGREEMENT_SCRIPT, str(fp32), str(int8), str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def quantize(model, data, output, *extra, env=None, check=True):
    return run_tasks("quantize", *flags(model=model, data=data, output=output), *extra, env=env, check=check)


def assert_int8_record(record: dict) -> None:
    assert record["chosen_precision"] == "int8", record["reason"]
    for precision in ("fp32", "int8"):
        figures = record[precision]
        assert set(figures) >= {"accuracy", "f1", "size_mb", "latency_ms_b1_p50", "latency_ms_b1_p99", "throughput_b32"}
        assert figures["latency_ms_b1_p50"] <= figures["latency_ms_b1_p99"]
        assert figures["throughput_b32"] > 0
    assert record["int8"]["size_mb"] < record["fp32"]["size_mb"]
    assert record["relative_accuracy_loss"] <= record["tolerance"]
    assert record["calibration"]["split"] == "train" and record["evaluation_split"] == "validation"
    chosen = record["inc"]["trials"][-1]
    assert chosen["accepted"] and chosen["int8_ops"] > 0
    assert record["inc"]["recipe"]["name"] == chosen["recipe"] and record["trials_run"] == len(record["inc"]["trials"])
    assert record["wall_time_s"] > 0


def test_tiny_model_becomes_an_int8_model_that_plain_tensorflow_serves(tmp_path, staged_data, trained_tiny):
    output = tmp_path / "int8"
    # A hidden size of 32 is too small for INT8 kernels to pay off, so the speed rule is waived here.
    result = quantize(trained_tiny, staged_data, output, "--calibration-size", "64", "--min-speedup", "0")
    assert "calibrating on 64 train pairs" in result.stdout and "FP32 baseline: validation accuracy" in result.stdout
    assert "trial 1/4 (int8-dense, quantised and scored in" in result.stdout

    record = json.loads((output / "quantization.json").read_text())
    assert_int8_record(record)
    assert record["calibration"]["pairs"] == 64
    assert record["data_fingerprint"] == json.loads((staged_data / "manifest.json").read_text())["fingerprint"]
    assert (output / "tokenizer" / "tokenizer.json").is_file() and (output / "config.json").is_file()
    fresh = compare_in_fresh_process(trained_tiny, output, staged_data)
    assert not fresh["inc_imported"]
    assert fresh["agreement"] >= 0.98
    assert fresh["agreement"] == pytest.approx(record["agreement"])
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())


def test_an_impossible_tolerance_keeps_fp32_after_every_recipe(tmp_path, staged_data, trained_tiny):
    output = tmp_path / "out"
    quantize(
        trained_tiny, staged_data, output, *flags(tolerance=-0.9, calibration_size=32, max_trials=2, timing="quick")
    )
    record = json.loads((output / "quantization.json").read_text())
    assert record["chosen_precision"] == "fp32"
    assert record["reason"].startswith("no INT8 recipe kept accuracy within -90.00% of FP32")
    assert record["trials_run"] == 2 and not any(trial["accepted"] for trial in record["inc"]["trials"])
    assert record["int8"] is None and record["inc"]["recipe"] is None and record["fp32"]["accuracy"] > 0
    original = (trained_tiny / "saved_model" / "saved_model.pb").read_bytes()
    assert (output / "saved_model" / "saved_model.pb").read_bytes() == original


def test_int8_that_cannot_run_keeps_fp32(tmp_path, staged_data, trained_tiny):
    # INC's INT8 kernels exist only in TensorFlow's oneDNN build path: with oneDNN off they cannot run.
    output = tmp_path / "out"
    settings = flags(calibration_size=32, min_speedup=0, timing="quick")
    quantize(trained_tiny, staged_data, output, *settings, env={"TF_ENABLE_ONEDNN_OPTS": "0"})
    record = json.loads((output / "quantization.json").read_text())
    assert record["chosen_precision"] == "fp32"
    assert record["reason"].startswith("INT8 quantisation failed: InternalError: Graph execution error: ... ")
    assert "_eightbit_" in record["reason"] and "File " not in record["reason"]
    assert record["fp32"]["accuracy"] > 0 and record["int8"] is None
    assert (output / "saved_model" / "saved_model.pb").is_file()


def test_int8_that_is_not_fast_enough_keeps_fp32(tmp_path, staged_data, trained_tiny):
    output = tmp_path / "out"
    quantize(trained_tiny, staged_data, output, "--calibration-size", "32", "--min-speedup", "50")
    record = json.loads((output / "quantization.json").read_text())
    assert record["chosen_precision"] == "fp32"
    assert f"runs {record['speedup_b32']:.2f}x as fast as FP32 at batch 32, below --min-speedup 50" in record["reason"]
    assert record["int8"]["throughput_b32"] > 0  # measured, then turned down


def measured(fp32_throughput: float, int8_throughput: float, int8_accuracy: float = 0.9) -> dict:
    """What ``measure_models`` returns for an FP32 model "fp32" and an INT8 candidate "int8"."""
    figures = {"accuracy": 0.9, "f1": 0.9, "latency_ms_b1_p50": 10.0, "latency_ms_b1_p99": 12.0}
    return {
        "models": {
            "fp32": figures | {"throughput_b32": fp32_throughput},
            "int8": figures | {"accuracy": int8_accuracy, "throughput_b32": int8_throughput},
        },
        "predictions": {"fp32": [0, 1, 1, 0], "int8": [0, 1, 1, 0]},
        "threads": {},
    }


@pytest.mark.parametrize(
    ("int8_throughput", "min_speedup", "refused"),
    [
        (48.0, 1.0, "the INT8 model runs 0.96x as fast as FP32 at batch 32, below --min-speedup 1"),
        (75.0, 1.0, ""),
        (48.0, 0.0, ""),
    ],
    ids=["slower-int8-refused", "faster-int8-kept", "speed-rule-waived"],
)
def test_the_speed_rule_decides_on_measured_figures_not_on_the_cpu(monkeypatch, int8_throughput, min_speedup, refused):
    """As on an AVX2-only host (INT8 0.96x FP32) and a VNNI host (1.5x): the rule reads the figures it is given."""
    from pathlib import Path

    from tasks.compression import quantize

    monkeypatch.setattr(quantize, "measure_models", lambda models, *rest, **options: measured(50.0, int8_throughput))
    summary, rejection = quantize.compare(Path("fp32"), Path("int8"), Path("data"), Path("work"), 0.01, min_speedup)
    assert rejection == refused
    assert summary["speedup_b32"] == round(int8_throughput / 50.0, 2) and summary["agreement"] == 1.0


def test_an_int8_model_that_loses_accuracy_is_refused_before_its_speed_counts(monkeypatch):
    from pathlib import Path

    from tasks.compression import quantize

    monkeypatch.setattr(
        quantize, "measure_models", lambda models, *rest, **options: measured(50.0, 100.0, int8_accuracy=0.8)
    )
    _, rejection = quantize.compare(Path("fp32"), Path("int8"), Path("data"), Path("work"), 0.01, 1.0)
    assert rejection == "the INT8 model loses 11.11% accuracy in a fresh process, above the 1.00% tolerance"


def test_a_candidate_that_fails_in_a_fresh_process_is_rejected(tmp_path, staged_data, trained_tiny):
    from tasks.compression.quantize import compare

    broken = tmp_path / "candidate"
    (broken / "saved_model").mkdir(parents=True)
    (broken / "saved_model" / "saved_model.pb").write_bytes(b"not a graph")
    summary, rejection = compare(trained_tiny, broken, staged_data, tmp_path, tolerance=0.01)
    assert rejection.startswith("the INT8 model fails in a fresh TensorFlow process")
    assert "cannot load the serving signature" in rejection and str(broken) in rejection
    assert summary["fp32"]["accuracy"] > 0 and summary["int8"] is None


def test_sagemaker_processing_contract_with_model_tarball(tmp_path, staged_data, trained_tiny):
    root = tmp_path / "opt-ml"
    (root / "config").mkdir(parents=True)
    (root / "config" / "processingjobconfig.json").write_text(json.dumps({"ProcessingJobName": "quantize-1"}))
    model_input = root / "processing" / "input" / "model"
    model_input.mkdir(parents=True)
    with tarfile.open(model_input / "model.tar.gz", "w:gz") as archive:  # a training job's output, as S3 holds it
        for entry in trained_tiny.iterdir():
            archive.add(entry, arcname=entry.name)
    (root / "processing" / "input" / "data").symlink_to(staged_data)
    (root / "processing" / "output").mkdir(parents=True)

    run_tasks(
        "quantize", *flags(calibration_size=32, min_speedup=0, timing="quick"), env={"TASKS_SAGEMAKER_ROOT": str(root)}
    )
    record = json.loads((root / "processing" / "output" / "quantization.json").read_text())
    assert record["chosen_precision"] == "int8" and record["fp32"]["accuracy"] > 0
    assert record["source_model"] == str(model_input)


def test_sagemaker_processing_failure_is_written_for_the_job(tmp_path):
    root = tmp_path / "opt-ml"
    (root / "config").mkdir(parents=True)
    (root / "config" / "processingjobconfig.json").write_text("{}")
    result = run_tasks("quantize", env={"TASKS_SAGEMAKER_ROOT": str(root)}, check=False)
    assert result.returncode == 1
    message = (root / "output" / "message").read_text()
    assert message.startswith("ModelError (exit 1): ") and "processing/input/model" in message


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--tolerance", "1.5"], "--tolerance must be in (-1, 1), got 1.5"),
        (["--calibration-size", "0"], "--calibration-size must be a positive integer, got 0"),
        (["--max-trials", "0"], "--max-trials must be a positive integer, got 0"),
        (["--min-speedup", "-1"], "--min-speedup must be 0 or more, got -1.0"),
        (
            ["--recipes", "int8-dense, int4"],
            "--recipes names no recipe int4; the recipes: int8-dense, int8-fp32-head-and-first-ffn-output, ",
        ),
        (["--timing", "fast"], "argument --timing: invalid choice: 'fast' (choose from 'full', 'quick')"),
    ],
)
def test_bad_flags_are_refused(tmp_path, flags, expected):
    result = run_tasks("quantize", "--model", "m", "--data", "d", "--output", str(tmp_path), *flags, check=False)
    assert result.returncode == 2 and expected in result.stderr


def test_a_folder_without_a_saved_model_is_a_clear_error(tmp_path, staged_data):
    (tmp_path / "empty").mkdir()
    result = quantize(tmp_path / "empty", staged_data, tmp_path / "out", check=False)
    assert result.returncode == 1
    assert "no saved_model/saved_model.pb; expected the output of `train` or `quantize`" in result.stderr
    assert not (tmp_path / "out").exists()


def test_calibration_reads_only_the_train_split(monkeypatch, staged_data):
    from tasks.compression.quantize import calibration_data
    from tasks.config import QuantizeArguments
    from tasks.data import splits

    requested, load_split = [], splits.load_split
    monkeypatch.setattr(
        splits, "load_split", lambda folder, name, *rest: requested.append(name) or load_split(folder, name, *rest)
    )
    args = QuantizeArguments(model="m", data=str(staged_data), output="o", calibration_size=40, batch_size=8)
    manifest = json.loads((staged_data / "manifest.json").read_text())
    calibration = calibration_data(args, manifest)
    assert requested == ["train"]
    assert sum(len(labels) for _, labels in calibration) == 40 and calibration.batch_size == 8
    again = calibration_data(args, manifest)  # the seeded sample is the same every time
    assert [labels.tolist() for _, labels in calibration] == [labels.tolist() for _, labels in again]
