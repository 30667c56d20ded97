"""How the local platform runs a step: output into the task log, bad input not retried, the rest retried."""

import logging
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline.operators.local import run_step, run_step_json  # noqa: E402


def test_a_step_streams_its_output_and_returns_its_last_line(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="nlp_pipeline.steps")
    assert run_step_json("registry", "--registry", tmp_path / "registry.sqlite", "--action", "production") is None
    assert any("python -m tasks registry --registry" in record.message for record in caplog.records)


def test_a_bad_flag_fails_at_once_without_retries(tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=r"registry failed on a bad flag, not retried: .*--action"):
        run_step("registry", "--registry", tmp_path / "r.sqlite", "--action", "explode")


def test_bad_data_fails_at_once_without_retries(tmp_path, minilm_path):
    from airflow.sdk.exceptions import AirflowFailException

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n7\t1\t2\ta\tb\n")
    with pytest.raises(AirflowFailException, match="failed on bad data"):
        run_step("stage", "--source", tmp_path / "raw", "--output", tmp_path / "staged", "--tokenizer", minilm_path)


def test_other_failures_are_retried(tmp_path):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    with pytest.raises(AirflowException, match="rollback exited with 1: .*no endpoint runs from") as raised:
        run_step("rollback", "--state", tmp_path / "nothing")
    assert not isinstance(raised.value, AirflowFailException)
