import json

import pytest

from tasks.runtime.step_result import LIMIT, RESULT_FILE_ENV, result_of
from tests.conftest import flags, run_tasks


def test_a_step_writes_its_result_where_the_environment_says(tmp_path, raw_data, minilm_path):
    result_file = tmp_path / "termination-log"
    stage = flags(source=raw_data, output=tmp_path / "staged", tokenizer=minilm_path)
    run_tasks("stage", *stage, env={RESULT_FILE_ENV: str(result_file)})
    manifest = json.loads((tmp_path / "staged" / "manifest.json").read_text())
    result = json.loads(result_file.read_text())
    rows = {name: split["rows"] for name, split in manifest["splits"].items()}
    assert result == {"fingerprint": manifest["fingerprint"], "output": str(tmp_path / "staged"), "rows": rows}
    assert len(result_file.read_bytes()) <= LIMIT


def test_a_failed_step_writes_no_result(tmp_path, raw_data):
    result_file = tmp_path / "termination-log"
    stage = flags(source=raw_data, output=tmp_path / "staged", max_seq_length="many")
    failed = run_tasks("stage", *stage, env={RESULT_FILE_ENV: str(result_file)}, check=False)
    assert failed.returncode == 2
    assert not result_file.exists()  # Kubernetes then shows the log tail (FallbackToLogsOnError)


def test_evaluate_and_train_results_keep_what_the_pipeline_decides_on(tmp_path):
    evaluation = {
        "decision": "reject",
        "reasons": ["x" * 2000],
        "accuracy": 0.7,
        "f1": 0.8,
        "latency_ms_b1_p50": 3.0,
        "throughput_b32": 900.0,
        "precision": "int8",
        "champion_model": "s3://b/m",
        "model_digest": "sha256:" + "ab" * 32,
        "champion": {"accuracy": 0.9, "f1": 0.9, "latency_ms_b1_p50": 2.0},
        "confusion_matrix": [[1, 2], [3, 4]],
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    result = result_of("evaluate", tmp_path)
    assert result["decision"] == "reject" and len(result["reasons"][0]) == 300
    assert result["model_digest"] == evaluation["model_digest"], "the registry records the bytes the gate judged"
    assert result["champion"] == {"accuracy": 0.9, "f1": 0.9} and "confusion_matrix" not in result
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.8, "epochs": [{"loss": 1.0}] * 200}))
    assert result_of("train", tmp_path) == {"metrics": {"accuracy": 0.8}}


@pytest.mark.parametrize("step", ["sample", "serve"])
def test_steps_without_a_report_have_no_result(step):
    from tasks.runtime.step_result import RESULTS

    assert step not in RESULTS


def test_only_the_chief_of_a_multi_worker_training_writes_a_result(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tasks.runtime.step_result import write_result

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "metrics.json").write_text('{"accuracy": 0.5}')
    monkeypatch.setenv(RESULT_FILE_ENV, str(tmp_path / "result"))
    for index in (1, 0):
        cluster = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": index}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
        output = str(tmp_path / ("missing" if index else "model"))
        write_result("train", SimpleNamespace(output=output), output)
        assert (tmp_path / "result").exists() == (index == 0)
    assert json.loads((tmp_path / "result").read_text()) == {"metrics": {"accuracy": 0.5}, "output": output}
