"""The train step as users and containers run it: ``python -m tasks train`` in a fresh process."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from tasks.runtime import cpu
from tests.conftest import REPO, flags, run_entrypoint, run_tasks, upload_folder
from tests.tasks.isas import AUTO_PRECISION, ISAS


def train_flags(data, model, output, *extra):
    schedule = flags(epochs=1, batch_size=16, learning_rate="1e-3", log_every=4)
    return ["train", *flags(data=data, model=model, output=output), *schedule, *extra]


def detected_auto_precision() -> str:
    """What ``--precision auto`` must choose on the CPU running the tests."""
    return cpu.resolve_precision("auto", cpu.cpu_flags())


# ``python -m tasks ARGS`` on a CPU whose /proc/cpuinfo flags are argv[1]: the step's own detection is replaced.
_ON_FORCED_CPU = """
import sys
from tasks import cli
from tasks.runtime import cpu
cpu.cpu_flags = lambda cpuinfo=None: frozenset(sys.argv[1].split())
sys.exit(cli.main(sys.argv[2:]))
"""


def curves(output, run):
    """The scalars of one TensorBoard run (train or validation) in ``output/tensorboard``, read back with the
    reader TensorBoard itself serves them with: tag -> [(step, value), ...] in the order TensorBoard shows them."""
    from tensorboard.backend.event_processing import plugin_event_accumulator as reader
    from tensorboard.util.tensor_util import make_ndarray

    accumulator = reader.EventAccumulator(str(output / "tensorboard" / run), size_guidance={reader.TENSORS: 0})
    accumulator.Reload()
    tags = accumulator.Tags()[reader.TENSORS]
    assert {accumulator.SummaryMetadata(tag).plugin_data.plugin_name for tag in tags} == {"scalars"}
    return {
        tag: [(event.step, make_ndarray(event.tensor_proto).item()) for event in accumulator.Tensors(tag)]
        for tag in tags
    }


def check_curves(output, epochs, steps_per_epoch, learning_rate):
    """Every listed scalar, once per step or once per epoch (at its last step), with plausible values; the epoch
    figures equal metrics.json's."""
    train, validation = curves(output, "train"), curves(output, "validation")
    assert set(train) == {"batch_loss", "learning_rate", "samples_per_second", "epoch_loss"}
    assert set(validation) == {"epoch_loss", "epoch_accuracy", "epoch_f1"}
    every_step = list(range(1, epochs * steps_per_epoch + 1))
    epoch_ends = [steps_per_epoch * epoch for epoch in range(1, epochs + 1)]
    for tag in ("batch_loss", "learning_rate", "samples_per_second"):
        assert [step for step, _ in train[tag]] == every_step, tag
    for scalars in (train["epoch_loss"], *validation.values()):
        assert [step for step, _ in scalars] == epoch_ends
    assert all(0 < value < 10 for _, value in train["batch_loss"] + train["epoch_loss"] + validation["epoch_loss"])
    assert all(value > 0 for _, value in train["samples_per_second"])
    rates = [value for _, value in train["learning_rate"]]
    assert max(rates) == pytest.approx(learning_rate) and 0 <= rates[-1] < max(rates)  # warm-up, then linear decay
    # metrics.json and the curves hold every epoch, those of a killed run included.
    history = json.loads((output / "metrics.json").read_text())["epochs"]
    assert [epoch["epoch"] for epoch in history] == list(range(1, epochs + 1))
    for scalars, key in (
        (train["epoch_loss"], "loss"),
        (validation["epoch_loss"], "val_loss"),
        (validation["epoch_accuracy"], "accuracy"),
        (validation["epoch_f1"], "f1"),
    ):
        assert [value for _, value in scalars] == pytest.approx([epoch[key] for epoch in history]), key


def load_signature(folder):
    import tensorflow as tf

    return tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]


def test_writes_a_servable_model_with_metrics_and_card(tmp_path, staged_data, tiny_model):
    output = tmp_path / "model"
    result = run_tasks(*train_flags(staged_data, tiny_model, output, "--epochs", "2"))
    assert "CPU tuning: oneDNN on" in result.stdout
    assert "epoch 2/2 step 16/16: loss" in result.stdout and "samples/s | ETA" in result.stdout
    assert "epoch 2: train loss" in result.stdout and "validation loss" in result.stdout
    check_curves(output, epochs=2, steps_per_epoch=16, learning_rate=1e-3)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(output / "tokenizer")
    batch = tokenizer(
        ["The cat sat.", "Prices rose."], ["A cat was sitting.", "Prices fell."], padding=True, return_tensors="np"
    )
    serve = load_signature(output)
    logits = serve(
        **{name: batch[name].astype(np.int32) for name in ("input_ids", "attention_mask", "token_type_ids")}
    )["logits"]
    assert logits.shape == (2, 2) and logits.dtype.name == "float32"

    metrics = json.loads((output / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["f1"] <= 1.0
    assert [epoch["epoch"] for epoch in metrics["epochs"]] == [1, 2]
    assert metrics["steps"] == 32 and metrics["samples_per_second"] > 0 and metrics["wall_time_seconds"] > 0
    assert metrics["precision"] == detected_auto_precision()  # the export is FP32 regardless

    card = json.loads((output / "model_card.json").read_text())
    manifest = json.loads((staged_data / "manifest.json").read_text())
    assert card["training_history"] == [
        {key: epoch[key] for key in ("epoch", "loss", "val_loss", "accuracy", "f1")} for epoch in metrics["epochs"]
    ]
    assert card["base_model"] == str(tiny_model)
    assert card["data"]["fingerprint"] == manifest["fingerprint"]
    assert card["hyperparameters"]["epochs"] == 2
    assert card["precision"] == {"training": detected_auto_precision(), "exported": "fp32"}
    assert card["packages"]["tensorflow"] == "2.21.0"
    assert card["cpu"]["flags"] == [flag for flag in cpu.REPORTED_FLAGS if flag in cpu.cpu_flags()]
    assert json.loads((output / "config.json").read_text())["id2label"] == {"0": "not_equivalent", "1": "equivalent"}
    assert not any(path.name.startswith(".") for path in tmp_path.iterdir())

    from huggingface_hub import ModelCard

    readme = ModelCard.load(output / "README.md")  # the same card for people and the hub
    assert readme.data.tags == ["paraphrase", "tensorflow", "fp32"] and readme.data.base_model is None  # a local path
    assert {result.metric_type: result.metric_value for result in readme.data.eval_results} == {
        "accuracy": metrics["accuracy"],
        "f1": metrics["f1"],
    }
    assert manifest["fingerprint"] in readme.text and "trained in " + detected_auto_precision() in readme.text


def test_a_run_naming_no_learning_rate_or_epochs_gets_the_defaults_of_its_model_size(tmp_path, staged_data, tiny_model):
    from tasks.training.defaults import DEFAULTS

    output = tmp_path / "model"
    run_tasks("train", *flags(data=staged_data, model=tiny_model, output=output, batch_size=16, max_steps=2))
    small = DEFAULTS["small"]  # the tiny BERT has 2 layers
    card = json.loads((output / "model_card.json").read_text())
    metrics = json.loads((output / "metrics.json").read_text())
    for recorded in (card["hyperparameters"], metrics["hyperparameters"]):
        assert (recorded["learning_rate"], recorded["epochs"]) == (small["learning_rate"], small["epochs"])
    assert metrics["hyperparameters"]["batch_size"] == 16


def test_auto_precision_on_a_cpu_without_bf16_trains_fp32(tmp_path, staged_data, tiny_model):
    """The fp32 branch of ``--precision auto`` runs for real on every host, a BF16/AMX one included.

    The bf16 branch trains for real where the CPU has bf16 (the test above; where it lacks it, the decision is
    checked in tests/tasks/runtime/test_cpu.py): forcing bf16 compute onto a CPU without it would test
    TensorFlow's emulation, not the decision.
    """
    output = tmp_path / "model"
    arguments = train_flags(staged_data, tiny_model, output, "--max-steps", "4")
    command = [sys.executable, "-c", _ON_FORCED_CPU, ISAS["avx2-only"], *arguments]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert AUTO_PRECISION["avx2-only"] == "fp32" and "precision fp32 (Keras policy float32)" in result.stdout
    card = json.loads((output / "model_card.json").read_text())
    assert card["precision"] == {"training": "fp32", "exported": "fp32"} and card["cpu"]["flags"] == ["avx2"]
    assert json.loads((output / "metrics.json").read_text())["steps"] == 4
    logits = load_signature(output)(
        input_ids=np.array([[101, 2000, 102]], np.int32),
        attention_mask=np.ones((1, 3), np.int32),
        token_type_ids=np.zeros((1, 3), np.int32),
    )["logits"]
    assert logits.dtype.name == "float32"


def test_fp32_fixed_padding_shorter_max_length_and_model_from_s3(tmp_path, staged_data, tiny_model, s3):
    uri = upload_folder(s3["client"], tiny_model, s3["bucket"], "models/tiny")
    output = tmp_path / "model"
    fixed_padding = flags(precision="fp32", padding="max_length", max_seq_length=32)
    result = run_tasks(*train_flags(staged_data, uri, output, *fixed_padding))
    assert "re-tokenising to 32 tokens (staged at 128)" in result.stdout
    assert "precision fp32 (Keras policy float32)" in result.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["precision"], metrics["padding"]) == ("fp32", "max_length")


def test_resumes_from_the_checkpoint_after_being_killed(tmp_path, staged_data, tiny_model):
    output = tmp_path / "model"
    arguments = train_flags(staged_data, tiny_model, output, *flags(epochs=6, batch_size=8, checkpoint_every=5))
    command = [sys.executable, "-m", "tasks", *arguments]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "epoch 3/6 step" in line:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    assert not output.exists() and (tmp_path / ".model.partial" / "checkpoints" / "backup").is_dir()

    result = run_tasks(*arguments)
    resumed = [line for line in result.stdout.splitlines() if "resuming from the checkpoint" in line]
    assert resumed, result.stdout
    epoch = int(resumed[0].split("epoch ")[1].split(",")[0])
    assert epoch >= 3
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["steps"] < 6 * 32  # only the remaining steps ran
    assert (output / "saved_model" / "saved_model.pb").is_file()
    # The curves continue across the kill: every step once, what the killed run wrote past its checkpoint dropped;
    # metrics.json and the model card hold every epoch, those of the killed run from the checkpoint's history.
    assert len(list((output / "tensorboard" / "train").glob("events.out.tfevents.*"))) == 2
    check_curves(output, epochs=6, steps_per_epoch=32, learning_rate=1e-3)
    card = json.loads((output / "model_card.json").read_text())
    assert [epoch["epoch"] for epoch in card["training_history"]] == list(range(1, 7))

    # Killed after the last epoch's checkpoint (while exporting): nothing is left to train; the scores come from
    # the history kept with the checkpoint, and a --tensorboard-dir that got no events is no error.
    output.rename(tmp_path / ".model.partial")
    result = run_tasks(*arguments, "--tensorboard-dir", str(tmp_path / "no-events-yet"))
    assert "resuming from the checkpoint" in result.stdout and "Logging error" not in result.stdout + result.stderr
    again = json.loads((output / "metrics.json").read_text())
    assert again["steps"] == 0 and again["epochs"] == metrics["epochs"] and again["accuracy"] == metrics["accuracy"]


def test_a_changed_setting_starts_over_instead_of_resuming(tmp_path, staged_data, tiny_model):
    partial = tmp_path / ".model.partial" / "checkpoints"
    partial.mkdir(parents=True)
    (partial / "run_config.json").write_text(json.dumps({"epochs": 99}))
    result = run_tasks(*train_flags(staged_data, tiny_model, tmp_path / "model"))
    assert "were written with other settings" in result.stdout and "resuming" not in result.stdout


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_workers_train_together_and_only_the_chief_writes(tmp_path, staged_data, tiny_model):
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    processes = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
        }
        arguments = train_flags(staged_data, tiny_model, tmp_path / f"out-{index}", "--epochs", "2")
        command = [sys.executable, "-m", "tasks", *arguments]
        processes.append(
            subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    logs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], "\n".join(logs)
    assert "worker 1 of 2 (chief)" in logs[0] and "worker 2 of 2" in logs[1]
    assert "batch 16 x 2 worker(s)" in logs[0] and "2 epoch(s) x 8 steps" in logs[0]
    assert "the chief writes the model" in logs[1]
    assert (tmp_path / "out-0" / "saved_model" / "saved_model.pb").is_file()
    assert json.loads((tmp_path / "out-0" / "metrics.json").read_text())["workers"] == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out-0"]
    check_curves(tmp_path / "out-0", epochs=2, steps_per_epoch=8, learning_rate=1e-3)  # the chief's alone: once


@pytest.fixture
def sagemaker_root(tmp_path, staged_data, tiny_model):
    """A simulated /opt/ml tree as SageMaker lays it out for a training job with four channels."""
    import shutil

    root = tmp_path / "opt-ml"
    data = root / "input" / "data"
    for split in ("train", "validation"):
        shutil.copytree(staged_data / split, data / split)
    (data / "manifest").mkdir(parents=True)
    shutil.copy(staged_data / "manifest.json", data / "manifest")
    shutil.copytree(staged_data / "tokenizer", data / "manifest" / "tokenizer")
    shutil.copytree(tiny_model, data / "model")
    (root / "input" / "config").mkdir(parents=True)
    (root / "model").mkdir()
    return root


def write_hyperparameters(root, values):
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(values))


def test_sagemaker_training_contract(sagemaker_root, tmp_path):
    """SageMaker runs the training image as ``docker run IMAGE train``: here through the image's entrypoint."""
    # The SageMaker Python SDK JSON-encodes every value; plain strings come from CreateTrainingJob callers.
    write_hyperparameters(
        sagemaker_root, {"epochs": "1", "batch_size": "16", "learning_rate": '"0.001"', "sagemaker_program": '"x.py"'}
    )
    result = run_entrypoint("train", bin_folder=tmp_path / "bin", env={"TASKS_SAGEMAKER_ROOT": str(sagemaker_root)})
    assert result.stderr.startswith("nlp-task-entrypoint: python -m tasks train, ")
    assert "ignoring SageMaker's hyper-parameter sagemaker_program" in result.stdout
    assert f"--model {sagemaker_root}/input/data/model" in result.stdout
    model = sagemaker_root / "model"
    assert (model / "saved_model" / "saved_model.pb").is_file() and (model / "tokenizer").is_dir()
    assert json.loads((model / "model_card.json").read_text())["hyperparameters"]["learning_rate"] == 0.001
    assert (sagemaker_root / "checkpoints" / "backup").is_dir()
    assert not (sagemaker_root / "output" / "failure").exists()
    # Written live where TensorBoardOutputConfig's LocalPath uploads from, and kept with the model.
    assert curves(sagemaker_root / "output", "train") == curves(model, "train")
    check_curves(model, epochs=1, steps_per_epoch=16, learning_rate=1e-3)


@pytest.mark.parametrize(
    ("hyperparameters", "remove", "exit_code", "reason"),
    [
        (
            {"epochs": "zero"},
            None,
            2,
            "ConfigError (exit 2): python -m tasks train: argument --epochs: invalid int value: 'zero'",
        ),
        ({"epochs": "0"}, None, 2, "ConfigError (exit 2): --epochs must be a positive integer, got 0"),
        (
            {"dropout": "0.1"},
            None,
            2,
            "ConfigError (exit 2): python -m tasks train: unrecognized arguments: --dropout 0.1",
        ),
        ({"epochs": "1"}, "train", 3, "DataError (exit 3): "),
    ],
)
def test_sagemaker_failure_is_written_for_the_job(sagemaker_root, hyperparameters, remove, exit_code, reason):
    import shutil

    write_hyperparameters(sagemaker_root, hyperparameters)
    if remove:
        shutil.rmtree(sagemaker_root / "input" / "data" / remove)
    result = run_tasks("train", env={"TASKS_SAGEMAKER_ROOT": str(sagemaker_root)}, check=False)
    assert result.returncode == exit_code, result.stderr
    failure = (sagemaker_root / "output" / "failure").read_text()
    assert failure.startswith(reason)
    if remove:
        assert "no staged train split" in failure


def test_vocabulary_mismatch_is_refused(tmp_path, staged_data, minilm_path):
    from transformers import AutoTokenizer, BertConfig, TFBertForSequenceClassification

    small = tmp_path / "small-vocab"
    model = TFBertForSequenceClassification(
        BertConfig(vocab_size=500, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16)
    )
    model(model.dummy_inputs)
    model.save_pretrained(small)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(small)
    result = run_tasks(*train_flags(staged_data, small, tmp_path / "out"), check=False)
    assert result.returncode == 1
    assert (
        "tokenised with" in result.stderr and "vocabulary has 500" in result.stderr and "--tokenizer" in result.stderr
    )


def test_missing_data_folder_is_a_clear_error(tmp_path, tiny_model):
    result = run_tasks(*train_flags(tmp_path / "nothing", tiny_model, tmp_path / "out"), check=False)
    assert result.returncode == 3
    assert "no manifest.json; --data must be a folder written by `python -m tasks stage`" in result.stderr
