"""``python -m tasks monitor`` end to end on capture files: its verdicts, its window, its refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from tasks.cli import main
from tasks.config import MONITOR_DRIFT, MONITOR_NOT_ENOUGH_DATA, MONITOR_OK, MONITOR_STATUSES
from tasks.monitoring import baseline, records, traffic
from tasks.runtime import model_card
from tests.tasks.monitoring.conftest import WINDOW_END, WINDOW_START, draw, monitor_flags, write_capture


def run_monitor(tmp_path, model_folder, *extra: str) -> dict:
    output = tmp_path / "monitoring"
    assert main(["monitor", *monitor_flags(tmp_path / "capture", model_folder, output, *extra)]) == 0
    assert (output / "monitoring.png").stat().st_size > 0
    return json.loads((output / "monitoring.json").read_text())


def statuses(report: dict) -> dict[str, str]:
    return {entry["name"]: entry["status"] for entry in report["statistics"]}


def test_traffic_drawn_like_the_baseline_is_ok(tmp_path, model_folder):
    write_capture(tmp_path / "capture", draw(400, seed=1))
    report = run_monitor(tmp_path, model_folder)
    assert report["status"] == "ok" and report["drifted"] == []
    assert report["records"] == 400 and report["model_versions"] == {"v1": 400}
    assert set(statuses(report).values()) == {"pass"}
    assert report["window"] == {"start": "2026-12-03T16:00:00.000Z", "end": "2026-12-03T17:00:00.000Z"}
    assert report["baseline_kind"] == "model card"


def test_much_longer_pairs_drift_on_token_length_psi(tmp_path, model_folder):
    write_capture(tmp_path / "capture", draw(400, seed=2, extra_tokens=40))
    report = run_monitor(tmp_path, model_folder)
    assert report["status"] == "drift" and report["drifted"] == ["token_length_psi"]
    psi = next(entry for entry in report["statistics"] if entry["name"] == "token_length_psi")
    assert psi["value"] > 1 and psi["threshold"] == 0.2
    assert report["token_length"]["traffic_shares"][-1] == 1.0, "every pair is longer than the baseline's longest tenth"


def test_flipped_labels_drift_on_the_paraphrase_share(tmp_path, model_folder):
    write_capture(tmp_path / "capture", draw(400, seed=3, flip_labels=True))
    report = run_monitor(tmp_path, model_folder)
    assert report["status"] == "drift" and report["drifted"] == ["positive_share"]
    share = next(entry for entry in report["statistics"] if entry["name"] == "positive_share")
    assert share["value"] == pytest.approx(1 - share["baseline"], abs=0.08)


def test_fewer_records_than_min_records_is_not_enough_data_never_drift(tmp_path, model_folder):
    write_capture(tmp_path / "capture", draw(199, seed=4, extra_tokens=40))
    report = run_monitor(tmp_path, model_folder)
    assert report["status"] == "not_enough_data" and report["drifted"] == []
    assert report["records"] == 199 and report["min_records"] == 200
    assert statuses(report)["token_length_psi"] == "drift", "the statistics are still listed for a person"
    assert run_monitor(tmp_path, model_folder, "--min-records", "199")["status"] == "drift"


def test_an_empty_window_is_not_enough_data(tmp_path, model_folder):
    (tmp_path / "capture").mkdir()
    report = run_monitor(tmp_path, model_folder)
    assert report["status"] == "not_enough_data" and report["records"] == 0
    assert set(statuses(report).values()) == {"no_reference"}


def test_the_window_keeps_start_and_leaves_out_end(tmp_path, model_folder):
    template = draw(1)[0]
    moments = {
        "before": WINDOW_START - timedelta(milliseconds=1),
        "start": WINDOW_START,
        "last": WINDOW_END - timedelta(milliseconds=1),
        "end": WINDOW_END,
    }
    drawn = [template | {"time": records.stamp(moment), "model_version": name} for name, moment in moments.items()]
    write_capture(tmp_path / "capture", drawn)
    report = run_monitor(tmp_path, model_folder, "--min-records", "1")
    assert report["model_versions"] == {"last": 1, "start": 1}


def test_only_the_windows_hours_are_read_and_hidden_files_are_skipped(tmp_path, model_folder):
    capture = tmp_path / "capture"
    write_capture(capture, draw(250, seed=5))
    for hour in (WINDOW_START - timedelta(hours=1), WINDOW_END):  # the hours either side: never opened
        folder = capture / records.hour_folder(hour)
        folder.mkdir(parents=True)
        (folder / "junk.jsonl").write_text("not json\n")
    inside = capture / records.hour_folder(WINDOW_START)
    (inside / ".being-written.jsonl").write_text("half a li")
    (inside / "notes.txt").write_text("not a capture file")
    report = run_monitor(tmp_path, model_folder)
    assert report["records"] == 250 and report["status"] == "ok"


def test_a_window_across_hours_reads_each_hour(tmp_path, model_folder):
    drawn = draw(300, seed=6)
    for index, record in enumerate(drawn):  # half of them in the hour before
        if index % 2:
            record["time"] = records.stamp(records.parse_time(record["time"]) - timedelta(hours=1))
    write_capture(tmp_path / "capture", drawn)
    assert run_monitor(tmp_path, model_folder)["records"] == 150
    assert run_monitor(tmp_path, model_folder, "--window-minutes", "120")["records"] == 300


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "a JSON list, not an object"),
        ('{"time": "2026-12-03T16:30:00.000Z"}', "no field model_version, request_id, tokens"),
        ("TOKENS", "field 'tokens' is [3], not two token counts"),
        ("LABEL", "field 'label' is 2, not a label index (0 to 1)"),
        ("PROBABILITY", "field 'probability' is 1.5, not a probability"),
        ("TIME", "field 'time' is 'yesterday', not a time"),
    ],
)
def test_a_malformed_line_is_an_error_naming_file_and_line_and_nothing_is_written(
    tmp_path, model_folder, capsys, line, reason
):
    good = draw(3, seed=7)
    broken = {
        "TOKENS": good[0] | {"tokens": [3]},
        "LABEL": good[0] | {"label": 2},
        "PROBABILITY": good[0] | {"probability": 1.5},
        "TIME": good[0] | {"time": "yesterday"},
    }
    (path,) = write_capture(tmp_path / "capture", good)
    lines = path.read_text().splitlines()
    lines.insert(1, json.dumps(broken[line]) if line in broken else line)
    path.write_text("\n".join(lines) + "\n")
    output = tmp_path / "monitoring"
    assert main(["monitor", *monitor_flags(tmp_path / "capture", model_folder, output)]) == 3
    assert f"error: {path}:2: {reason}" in capsys.readouterr().err
    assert not output.exists() and not list(tmp_path.glob(".monitoring*"))


def test_a_previous_report_survives_a_failed_run(tmp_path, model_folder):
    (path,) = write_capture(tmp_path / "capture", draw(120, seed=8))
    first = run_monitor(tmp_path, model_folder)
    path.write_text(path.read_text() + "{broken\n")
    output = tmp_path / "monitoring"
    assert main(["monitor", *monitor_flags(tmp_path / "capture", model_folder, output)]) == 3
    assert json.loads((output / "monitoring.json").read_text()) == first


def test_a_model_without_a_traffic_baseline_is_refused_naming_what_to_pass(tmp_path, capsys):
    model = tmp_path / "old-model"
    model.mkdir()
    (model / "model_card.json").write_text('{"architecture": "TFBertForSequenceClassification"}')
    (tmp_path / "capture").mkdir()
    assert main(["monitor", *monitor_flags(tmp_path / "capture", model, tmp_path / "out")]) == 3
    error = capsys.readouterr().err
    assert f"--baseline {model}: its model card has no traffic_baseline" in error
    assert "pass the staged data folder it was trained on as --baseline" in error


def test_a_baseline_that_is_neither_model_nor_data_is_refused(tmp_path, capsys):
    (tmp_path / "capture").mkdir()
    (tmp_path / "empty").mkdir()
    assert main(["monitor", *monitor_flags(tmp_path / "capture", tmp_path / "empty", tmp_path / "out")]) == 3
    assert "neither a model" in capsys.readouterr().err


def test_the_hour_folders_of_a_window_cover_each_hour_it_touches_and_no_other():
    start = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert traffic.hour_folders(start, start + timedelta(minutes=31)) == ["2026/12/31/23", "2027/01/01/00"]
    assert traffic.hour_folders(start, start + timedelta(minutes=30)) == ["2026/12/31/23"], "the end is excluded"
    on_the_hour = datetime(2026, 12, 3, 16, tzinfo=UTC)
    assert traffic.hour_folders(on_the_hour, on_the_hour + timedelta(hours=2)) == ["2026/12/03/16", "2026/12/03/17"]


def test_the_verdicts_are_the_ones_the_dags_branch_on(tmp_path, model_folder):
    write_capture(tmp_path / "capture", draw(120, seed=9))
    assert run_monitor(tmp_path, model_folder)["status"] in MONITOR_STATUSES
    assert (MONITOR_OK, MONITOR_DRIFT, MONITOR_NOT_ENOUGH_DATA) == ("ok", "drift", "not_enough_data")


def test_a_monitor_processing_job_names_its_own_paths_and_reports_why_it_failed(tmp_path, model_folder, monkeypatch):
    """In a SageMaker processing job the step adds no default paths (its flags name its URIs), and a failure goes
    to the job's message with its exit code, so the platform knows a retry cannot help."""
    from tasks.runtime.sagemaker_job import detect_job

    job_root = tmp_path / "opt-ml"
    (job_root / "config").mkdir(parents=True)
    (job_root / "config" / "processingjobconfig.json").write_text("{}")
    monkeypatch.setenv("TASKS_SAGEMAKER_ROOT", str(job_root))
    assert detect_job("monitor").arguments("monitor") == []
    (path,) = write_capture(tmp_path / "capture", draw(2, seed=10))
    path.write_text(path.read_text() + "{broken\n")
    assert main(["monitor", *monitor_flags(tmp_path / "capture", model_folder, tmp_path / "out")]) == 3
    assert (job_root / "output" / "message").read_text().startswith(f"DataError (exit 3): {path}:3: not JSON")


def long_pairs(count: int, seed: int, cut: int) -> list[dict]:
    """``draw``'s records with lengths around 60 (a long tail), cut at ``cut`` tokens as a server of that max
    length cuts them."""
    rng = np.random.default_rng(seed)
    drawn = draw(count, seed=seed)
    for record, length in zip(drawn, rng.normal(60, 20, count).round().clip(8, 200).astype(int), strict=True):
        kept = min(int(length), cut)
        record["tokens"], record["truncated"] = [kept // 2, kept - kept // 2], bool(length > cut)
    return drawn


def test_traffic_cut_longer_than_the_baseline_is_compared_at_the_baselines_max_length(tmp_path):
    trained = long_pairs(20_000, seed=98, cut=64)
    lengths = np.array([sum(record["tokens"]) for record in trained])
    labels = np.array([record["label"] for record in trained])
    figures = baseline.of_training_data(lengths, 0, labels, max_seq_length=64)
    assert figures["max_seq_length"] == 64
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / model_card.JSON_CARD).write_text(json.dumps({model_card.TRAFFIC_BASELINE: figures}))
    write_capture(tmp_path / "capture", long_pairs(400, seed=5, cut=128))
    report = run_monitor(tmp_path, folder)
    assert report["status"] == "ok", report["statistics"]
    assert report["notes"] == []


def test_a_server_cutting_shorter_than_the_model_was_trained_is_noted_naming_both_lengths(tmp_path):
    trained = long_pairs(20_000, seed=98, cut=128)
    lengths = np.array([sum(record["tokens"]) for record in trained])
    labels = np.array([record["label"] for record in trained])
    figures = baseline.of_training_data(lengths, 0, labels, max_seq_length=128)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / model_card.JSON_CARD).write_text(json.dumps({model_card.TRAFFIC_BASELINE: figures}))
    write_capture(tmp_path / "capture", long_pairs(400, seed=6, cut=64))
    report = run_monitor(tmp_path, folder)
    assert any("64" in note and "128" in note for note in report["notes"]), report["notes"]


def test_a_window_spanning_a_rollout_is_judged_on_the_version_serving_at_its_end(tmp_path, model_folder):
    """Records the previous model answered (before a rollout inside the window) are not the production model's:
    judged against its baseline they would blame it for another model's labels and confidence."""
    previous = [
        record | {"model_version": "v0", "time": records.stamp(WINDOW_START + timedelta(seconds=index))}
        for index, record in enumerate(draw(300, seed=5, flip_labels=True))
    ]
    current = [record for record in draw(400, seed=6) if record["time"] > previous[-1]["time"]]
    write_capture(tmp_path / "capture", sorted(previous + current, key=lambda record: record["time"]))
    report = run_monitor(tmp_path, model_folder)
    assert report["status"] == "ok", report["drifted"]
    assert report["model_version"] == "v1" and report["records"] == len(current)
    assert report["model_versions"] == {"v0": 300, "v1": len(current)}
    assert any("v0" in note and "300" in note for note in report["notes"])
