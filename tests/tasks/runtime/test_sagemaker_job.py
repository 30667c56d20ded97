"""The SageMaker job files translated into flags and TF_CONFIG (the end-to-end run:
tests/tasks/training/test_train.py)."""

import json
import os

import pytest

from tasks.errors import ConfigError
from tasks.runtime.sagemaker_job import (
    PROCESSING,
    PROCESSING_INPUT,
    PROCESSING_OUTPUT,
    ProcessingJob,
    TrainingJob,
    detect_job,
)
from tests.conftest import flags, run_tasks


@pytest.fixture
def job(tmp_path, monkeypatch):
    (tmp_path / "input" / "config").mkdir(parents=True)
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epochs": "2"}))
    monkeypatch.setenv("TASKS_SAGEMAKER_ROOT", str(tmp_path))
    return TrainingJob.detect()


def test_detects_a_job_only_where_hyperparameters_exist(tmp_path, monkeypatch, job):
    assert job.root == tmp_path
    monkeypatch.setenv("TASKS_SAGEMAKER_ROOT", str(tmp_path / "elsewhere"))
    assert TrainingJob.detect() is None


def test_flags_point_at_the_job_folders_and_hyperparameters_win(job, tmp_path):
    flags = job.arguments()
    assert flags[:8] == [
        "--data",
        f"{tmp_path}/input/data",
        "--output",
        f"{tmp_path}/model",
        "--checkpoint-dir",
        f"{tmp_path}/checkpoints",
        "--tensorboard-dir",
        f"{tmp_path}/output/tensorboard",
    ]
    assert flags[-2:] == ["--epochs", "2"]


def test_a_tuning_jobs_trial_takes_switches_and_ignores_the_keys_sagemaker_reserves(job, tmp_path):
    """A tuning job's training job gets the static hyper-parameters as strings (``score_only`` "True") and
    SageMaker's own ``_tuning_objective_metric``; train's bool flags are switches (tasks/cli.py)."""
    hyperparameters = {
        "_tuning_objective_metric": "validation:accuracy",
        "score_only": "True",
        "epochs": "2",
        "json_like": "false",
    }
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    assert job.arguments()[8:] == ["--score-only", "--epochs", "2", "--json-like", "false"]
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"score_only": "false"}))
    assert job.arguments()[8:] == []
    from tasks.cli import parse

    trial = {"score_only": "true", "learning_rate": "0.0001", "early_stopping_dir": "/opt/ml/scores"}
    (tmp_path / "input" / "config" / "hyperparameters.json").write_text(json.dumps(trial))
    parsed = parse("train", job.arguments())
    assert (parsed.score_only, parsed.learning_rate) == (True, 1e-4)


def test_multi_host_job_becomes_tf_config(job, tmp_path):
    config = {"current_host": "algo-2", "hosts": ["algo-2", "algo-1", "algo-3"], "network_interface_name": "eth0"}
    (tmp_path / "input" / "config" / "resourceconfig.json").write_text(json.dumps(config))
    job.export_tf_config()
    assert json.loads(os.environ["TF_CONFIG"]) == {
        "cluster": {"worker": ["algo-1:8890", "algo-2:8890", "algo-3:8890"]},
        "task": {"type": "worker", "index": 1},
    }


def test_single_host_job_sets_no_tf_config(job, tmp_path):
    (tmp_path / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    job.export_tf_config()
    assert "TF_CONFIG" not in os.environ


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{broken", "cannot read SageMaker job file"),
        ("[1]", "expected a JSON object, got list"),
        ('{"hosts": ["a"]}', "needs 'hosts'"),
    ],
)
def test_bad_resource_config_is_named(job, tmp_path, text, message):
    (tmp_path / "input" / "config" / "resourceconfig.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        job.export_tf_config()


def test_failure_reason_is_truncated_to_what_sagemaker_keeps(job, tmp_path):
    job.report_failure(ValueError("x" * 5000))
    assert len((tmp_path / "output" / "failure").read_text()) == 1024


def test_processing_job_flags_follow_the_input_layout(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "processingjobconfig.json").write_text("{}")
    monkeypatch.setenv("TASKS_SAGEMAKER_ROOT", str(tmp_path))
    job = detect_job("evaluate")
    assert isinstance(job, ProcessingJob) and detect_job("train") is None and detect_job("sample") is None
    inputs = tmp_path / "processing" / "input"
    expected = ["--model", f"{inputs}/model", "--data", f"{inputs}/data", "--output", f"{tmp_path}/processing/output"]
    assert job.arguments("evaluate") == expected
    (inputs / "champion").mkdir(parents=True)
    assert job.arguments("evaluate") == expected + ["--champion", f"{inputs}/champion"]
    assert job.arguments("quantize") == expected
    assert detect_job("stage").arguments("stage") == [], "stage names its source and output itself"
    job.report_failure(ValueError("x" * 2000))
    assert len((tmp_path / "output" / "message").read_text()) == 1024


def test_the_processing_layout_the_airflow_side_imports_is_the_one_a_job_reads():
    """The request builder mounts inputs at PROCESSING_INPUT/NAME and collects PROCESSING_OUTPUT."""
    from pathlib import Path

    job = ProcessingJob(Path("/opt/ml"))
    assert (PROCESSING, PROCESSING_INPUT, PROCESSING_OUTPUT) == (
        "/opt/ml/processing",
        "/opt/ml/processing/input",
        "/opt/ml/processing/output",
    )
    assert job.arguments("quantize")[1::2] == [
        f"{PROCESSING_INPUT}/model",
        f"{PROCESSING_INPUT}/data",
        PROCESSING_OUTPUT,
    ]


def test_a_failure_reason_names_the_class_and_the_exit_code(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "processingjobconfig.json").write_text("{}")
    monkeypatch.setenv("TASKS_SAGEMAKER_ROOT", str(tmp_path))
    detect_job("evaluate").report_failure(ConfigError("--split must be validation or test"))
    assert (tmp_path / "output" / "message").read_text() == "ConfigError (exit 2): --split must be validation or test"


def test_a_stage_processing_job_that_fails_on_bad_data_says_why(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "processingjobconfig.json").write_text("{}")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "train.tsv").write_text("no header, no rows\n")
    stage = flags(source=tmp_path / "raw", output=tmp_path / "processing" / "output")
    result = run_tasks("stage", *stage, env={"TASKS_SAGEMAKER_ROOT": str(tmp_path)}, check=False)
    assert result.returncode == 3, result.stderr
    assert (tmp_path / "output" / "message").read_text().startswith("SchemaError (exit 3): ")
