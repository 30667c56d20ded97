"""The quantize step: INC INT8 and BF16 candidates that run on plain TensorFlow, the FP32 fallback, each output's own
model card, the SageMaker contract. Tests that need INT8 ask for it alone (``--precision fp32,int8``), so a BF16
host's faster BF16 candidate does not change what they check."""

import json
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import REPO, flags, run_tasks

# Loads both models with plain TensorFlow in a fresh interpreter, set up as the server sets it up (oneDNN on: TensorFlow
# leaves it off by default on some CPUs, e.g. AMD EPYC without AVX-512, and INT8 kernels need it), and compares them
# on the validation split.
_AGREEMENT_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from tasks.runtime.cpu import configure_environment
configure_environment()
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


INT8_ONLY = ("--precision", "fp32,int8")


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
    assert record["candidates"]["int8"]["rule"] is None and record["speedup_b32"] > 0
    assert record["hardware"]["cpu_model"] and set(record["hardware"]["isa"]) >= {"avx2", "avx512_vnni", "amx_int8"}


def assert_own_model_card(output, record: dict) -> None:
    """The card states the shipped precision and the shipped model's figures, never the FP32 ones."""
    from huggingface_hub import ModelCard

    precision = record["chosen_precision"]
    card = json.loads((output / "model_card.json").read_text())
    assert card["precision"]["exported"] == precision
    assert card["metrics"]["accuracy"] == record[precision]["accuracy"]
    assert card["metrics"]["throughput_b32"] == record[precision]["throughput_b32"]
    assert card["compression"]["reason"] == record["reason"]
    readme = ModelCard.load(output / "README.md")
    assert precision in readme.data.tags
    results = {result.metric_type: result.metric_value for result in readme.data.eval_results}
    assert results == {"accuracy": record[precision]["accuracy"], "f1": record[precision]["f1"]}
    assert record["hardware"]["cpu_model"] in readme.text


def test_tiny_model_becomes_an_int8_model_that_plain_tensorflow_serves(tmp_path, staged_data, trained_tiny):
    output = tmp_path / "int8"
    # A hidden size of 32 is too small for INT8 kernels to pay off, so the speed rule is waived here.
    result = quantize(trained_tiny, staged_data, output, "--calibration-size", "64", "--min-speedup", "0", *INT8_ONLY)
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
    assert_own_model_card(output, record)


def test_an_impossible_tolerance_keeps_fp32_after_every_recipe(tmp_path, staged_data, trained_tiny):
    output = tmp_path / "out"
    quantize(
        trained_tiny,
        staged_data,
        output,
        *flags(tolerance=-0.9, calibration_size=32, max_trials=2, timing="quick"),
        *INT8_ONLY,
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
    quantize(trained_tiny, staged_data, output, *settings, *INT8_ONLY, env={"TF_ENABLE_ONEDNN_OPTS": "0"})
    record = json.loads((output / "quantization.json").read_text())
    assert record["chosen_precision"] == "fp32"
    assert record["reason"].startswith("INT8 quantisation failed: InternalError: Graph execution error: ... ")
    assert "_eightbit_" in record["reason"] and "File " not in record["reason"]
    assert record["fp32"]["accuracy"] > 0 and record["int8"] is None
    assert (output / "saved_model" / "saved_model.pb").is_file()


def test_int8_that_is_not_fast_enough_keeps_fp32(tmp_path, staged_data, trained_tiny):
    output = tmp_path / "out"
    quantize(trained_tiny, staged_data, output, "--calibration-size", "32", "--min-speedup", "50", *INT8_ONLY)
    record = json.loads((output / "quantization.json").read_text())
    assert record["chosen_precision"] == "fp32" and record["reason"].endswith("; shipping FP32")
    int8 = record["candidates"]["int8"]
    assert int8["rule"] == "batch_32" and int8["rejection"].endswith("pairs/s), below --min-speedup 50")
    assert record["int8"]["throughput_b32"] > 0  # measured, then turned down
    assert record["speedup_b32"] == 1.0 and record["relative_accuracy_loss"] == 0.0  # FP32 shipped
    assert_own_model_card(output, record)


def test_a_candidate_that_fails_in_a_fresh_process_is_rejected(tmp_path, staged_data, trained_tiny):
    from tasks.compression.quantize import measure_candidates

    broken = tmp_path / "candidate"
    (broken / "saved_model").mkdir(parents=True)
    (broken / "saved_model" / "saved_model.pb").write_bytes(b"not a graph")
    measured, failures = measure_candidates({"fp32": trained_tiny, "int8": broken}, staged_data, tmp_path, "quick")
    assert failures["int8"].startswith("the INT8 model fails in a fresh TensorFlow process")
    assert "cannot load the serving signature" in failures["int8"] and str(broken) in failures["int8"]
    assert measured["models"]["fp32"]["accuracy"] > 0 and set(measured["models"]) == {"fp32"}


def test_a_bf16_export_runs_bf16_and_labels_as_fp32_does(tmp_path, staged_data, trained_tiny):
    """Built on any CPU (TensorFlow emulates bf16 where the CPU lacks it); offered only where it has it."""
    import numpy as np
    import tensorflow as tf

    from tasks.compression.bf16 import export_bf16
    from tasks.compression.quantize import measure_candidates
    from tasks.evaluation.measure import agreement, serving_function

    candidate = tmp_path / "bf16"
    export_bf16(trained_tiny, candidate / "saved_model")
    graph = serving_function(candidate).graph.as_graph_def()
    nodes = [node for function in graph.library.function for node in function.node_def]
    bf16_matmuls = [
        node for node in nodes if "MatMul" in node.op and node.attr["T"].type == tf.bfloat16.as_datatype_enum
    ]
    assert len(bf16_matmuls) >= 8  # Q, K, V, attention output, two feed-forward layers per encoder layer

    measured, failures = measure_candidates({"fp32": trained_tiny, "bf16": candidate}, staged_data, tmp_path, "quick")
    assert failures == {}
    predictions = measured["predictions"]
    assert agreement(np.asarray(predictions["fp32"]), np.asarray(predictions["bf16"])) >= 0.95


def test_a_bf16_export_of_a_folder_without_its_config_is_a_clear_error(tmp_path, trained_tiny):
    import shutil

    from tasks.compression.bf16 import export_bf16
    from tasks.errors import ModelError

    copy = tmp_path / "model"
    shutil.copytree(trained_tiny / "saved_model", copy / "saved_model")
    with pytest.raises(ModelError, match="no config.json, so the architecture cannot be rebuilt in bf16"):
        export_bf16(copy, tmp_path / "bf16" / "saved_model")
    assert not (tmp_path / "bf16").exists()


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

    settings = flags(calibration_size=32, min_speedup=0, timing="quick", target_hardware="ml.c6i.xlarge")
    run_tasks("quantize", *settings, *INT8_ONLY, env={"TASKS_SAGEMAKER_ROOT": str(root)})
    record = json.loads((root / "processing" / "output" / "quantization.json").read_text())
    assert record["chosen_precision"] == "int8" and record["fp32"]["accuracy"] > 0
    assert record["source_model"] == str(model_input)
    assert record["hardware"]["target"] == "ml.c6i.xlarge"


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
        (["--precision", "int8,fp16"], "--precision must be a list of fp32, bf16, int8, got 'int8,fp16'"),
        (["--precision", ","], "--precision must be a list of fp32, bf16, int8, got ','"),
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
    from tasks.compression.int8 import calibration_data
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


def test_the_compressed_card_keeps_the_search_that_chose_the_setting():
    from tasks.compression.quantize import compressed_card
    from tasks.runtime import model_card

    tuning = {"uri": "/runs/tuning.json", "best": {"name": "trial-001"}, "trials": []}
    trained = {"precision": {"training": "bf16", "exported": "fp32"}, model_card.TUNING: tuning}
    record = {
        "chosen_precision": "int8",
        "int8": {"accuracy": 0.8},
        "evaluation_split": "validation",
        "reason": "faster",
        "relative_accuracy_loss": 0.0,
        "tolerance": 0.01,
        "inc": {"recipe": None},
        "hardware": {},
    }
    card = compressed_card(trained, record)
    assert card[model_card.TUNING] == tuning and card["precision"]["exported"] == "int8"
