"""The evaluate step: candidate and champion scored in one run, the decision, the report."""

import json

from tasks.runtime import digest
from tests.conftest import flags, run_tasks

METRICS = {"accuracy", "f1", "confusion_matrix", "latency_ms_b1_p50", "latency_ms_b1_p99", "throughput_b32", "size_mb"}


def evaluate(model, data, output, *extra, check=True):
    return run_tasks("evaluate", *flags(model=model, data=data, output=output, latency_samples=20), *extra, check=check)


def test_candidate_and_champion_in_one_file_with_report(tmp_path, staged_data, trained_tiny, int8_tiny):
    output = tmp_path / "evaluation"
    gate = flags(champion=trained_tiny, min_accuracy=0, min_f1=0, champion_margin=1)
    result = evaluate(int8_tiny, staged_data, output, *gate)
    evaluation = json.loads((output / "evaluation.json").read_text())
    assert set(evaluation) >= METRICS | {"decision", "reasons", "champion", "precision", "split", "data_fingerprint"}
    assert set(evaluation["champion"]) >= METRICS
    assert evaluation["precision"] == "int8" and evaluation["split"] == "validation"
    assert evaluation["decision"] == "promote", evaluation["reasons"]
    assert len(evaluation["reasons"]) == 4 and all(": pass: " in reason for reason in evaluation["reasons"])
    manifest = json.loads((staged_data / "manifest.json").read_text())
    assert evaluation["data_fingerprint"] == manifest["fingerprint"]
    assert evaluation["pairs"] == evaluation["champion"]["pairs"] == manifest["splits"]["validation"]["rows"]
    assert evaluation["model_digest"] == digest.sealed(int8_tiny) == digest.folder_digest(int8_tiny)
    assert sum(map(sum, evaluation["confusion_matrix"])) == evaluation["pairs"]
    assert "gate: min_accuracy: pass" in result.stdout and "evaluate: PROMOTE" in result.stdout
    # Full timing: batch 32 on every core, batch 1 on one thread per op, each in a fresh process of its own.
    assert evaluation["timing"] == "full" and evaluation["threads"]["latency"] == {"intra_op": 1, "inter_op": 1}
    assert "in a fresh process: throughput (" in result.stdout and "in a fresh process: latency (" in result.stdout

    report = (output / "report.md").read_text()
    assert report.startswith("# Evaluation: PROMOTE")
    assert "| candidate (INT8) |" in report and "| FP32 before compression |" in report and "| champion |" in report
    # The INT8 model's card carries the history of the training it was compressed from: two epochs.
    curve = report.split("## Learning curve\n\n")[1].split("\n\n")[0].splitlines()
    assert curve[0].startswith("| epoch | training loss |") and [row.split(" | ")[0] for row in curve[2:]] == [
        "| 1",
        "| 2",
    ]
    assert (output / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_candidate_below_the_minimum_is_rejected_with_the_numbers(tmp_path, staged_data, trained_tiny):
    output = tmp_path / "evaluation"
    result = evaluate(
        trained_tiny, staged_data, output, *flags(min_accuracy=0.99, min_f1=0, split="test", timing="quick")
    )
    evaluation = json.loads((output / "evaluation.json").read_text())
    # Quick timing: one fresh process scores and times both workloads, with the throughput threads.
    assert evaluation["timing"] == "quick" and set(evaluation) >= METRICS
    assert evaluation["threads"]["latency"] == evaluation["threads"]["throughput"]
    assert "in a fresh process: throughput and latency (" in result.stdout
    assert evaluation["decision"] == "reject" and evaluation["champion"] is None
    assert evaluation["precision"] == "fp32" and evaluation["split"] == "test"
    failing = [reason for reason in evaluation["reasons"] if ": FAIL: " in reason]
    assert failing == [f"min_accuracy: FAIL: accuracy {evaluation['accuracy']:.4f} is below the minimum 0.9900"]
    assert (output / "report.md").read_text().startswith("# Evaluation: REJECT")


def test_an_unlabelled_split_cannot_be_scored(tmp_path, raw_data, minilm_path, trained_tiny):
    source = tmp_path / "glue"
    source.mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (source / name).write_text((raw_data / name).read_text())
    rows = (raw_data / "test.tsv").read_text().splitlines()[1:]
    (source / "test.tsv").write_text(
        "\n".join(
            ["index\t#1 ID\t#2 ID\t#1 String\t#2 String"]
            + [f"{i}\t" + row.split("\t", 1)[1] for i, row in enumerate(rows)]
        )
        + "\n"
    )
    staged = tmp_path / "staged"
    run_tasks("stage", "--source", str(source), "--output", str(staged), "--tokenizer", str(minilm_path))
    result = evaluate(trained_tiny, staged, tmp_path / "evaluation", "--split", "test", check=False)
    assert result.returncode == 3
    assert f"{staged / 'test'}: {len(rows)} of {len(rows)} pairs have no label, so it cannot be scored" in result.stderr
    assert not (tmp_path / "evaluation").exists()


def test_a_missing_champion_is_a_clear_error(tmp_path, staged_data, trained_tiny):
    result = evaluate(trained_tiny, staged_data, tmp_path / "out", "--champion", str(tmp_path / "gone"), check=False)
    assert result.returncode == 1 and f"{tmp_path / 'gone'}: no such folder" in result.stderr


def test_bad_thresholds_are_refused(tmp_path):
    result = run_tasks("evaluate", *flags(model="m", data="d", output=tmp_path, min_f1=2), check=False)
    assert result.returncode == 2 and "--min-f1 must be in [0, 1], got 2.0" in result.stderr
