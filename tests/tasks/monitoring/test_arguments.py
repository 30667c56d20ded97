"""``python -m tasks monitor``'s flags: defaults, ranges and the window they give; bad flags are refused by name."""

import json
from datetime import UTC, datetime

import pytest

from tasks.cli import main, parse
from tasks.config import MonitorArguments, flag_schema
from tasks.errors import ConfigError
from tasks.runtime.step_result import LIMIT, result_of

REQUIRED = ["--capture", "s3://bucket/capture", "--baseline", "/models/v1", "--output", "/out"]


def test_the_defaults_are_the_contracts():
    args = parse("monitor", REQUIRED)
    assert (args.capture, args.baseline, args.output) == ("s3://bucket/capture", "/models/v1", "/out")
    assert (args.window_minutes, args.min_records, args.low_confidence) == (60, 200, 0.6)
    thresholds = (
        args.psi_threshold,
        args.label_shift_threshold,
        args.confidence_drop_threshold,
        args.low_confidence_shift_threshold,
        args.unknown_rate_threshold,
    )
    assert thresholds == (0.2, 0.15, 0.1, 0.15, 0.02)


def test_the_window_ends_at_the_given_time_in_utc_and_reaches_back_its_minutes():
    args = parse("monitor", [*REQUIRED, "--window-end", "2026-12-03T18:30:00+01:00", "--window-minutes", "90"])
    assert args.window() == (datetime(2026, 12, 3, 16, 0, tzinfo=UTC), datetime(2026, 12, 3, 17, 30, tzinfo=UTC))
    zoneless = parse("monitor", [*REQUIRED, "--window-end", "2026-12-03T17:00:00"])
    assert zoneless.window()[1] == datetime(2026, 12, 3, 17, 0, tzinfo=UTC)
    assert parse("monitor", [*REQUIRED, "--window-end", "2026-12-03T17:00:00Z"]).window()[1].hour == 17


def test_no_window_end_means_now():
    now = datetime(2026, 12, 3, 17, 5, tzinfo=UTC)
    assert parse("monitor", REQUIRED).window(now=now) == (datetime(2026, 12, 3, 16, 5, tzinfo=UTC), now)


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--window-minutes", "0", "--window-minutes must be between 1 and 10080, got 0"),
        ("--window-minutes", "10081", "--window-minutes must be between 1 and 10080"),
        ("--min-records", "0", "--min-records must be a positive integer, got 0"),
        ("--psi-threshold", "0", "--psi-threshold must be positive, got 0.0"),
        ("--label-shift-threshold", "1.5", "--label-shift-threshold must be in (0, 1], got 1.5"),
        ("--confidence-drop-threshold", "-0.1", "--confidence-drop-threshold must be in (0, 1]"),
        ("--low-confidence", "0.5", "--low-confidence must be in (0.5, 1], got 0.5"),
        ("--low-confidence-shift-threshold", "0", "--low-confidence-shift-threshold must be in (0, 1]"),
        ("--unknown-rate-threshold", "2", "--unknown-rate-threshold must be in (0, 1], got 2.0"),
        ("--window-end", "yesterday", "--window-end must be an ISO 8601 time such as 2026-12-03T17:00:00Z"),
        ("--capture", "", "--capture must be a local folder or URI, got ''"),
        ("--window-minute", "5", "unrecognized arguments: --window-minute 5; did you mean --window-minutes?"),
    ],
)
def test_a_bad_flag_is_refused_naming_it(flag, value, named):
    with pytest.raises(ConfigError) as error:
        parse("monitor", [*REQUIRED, flag, value])
    assert named in str(error.value)


def test_a_bad_flag_exits_with_the_configuration_error_code(tmp_path, capsys):
    assert main(["monitor", *REQUIRED[:4], "--output", str(tmp_path / "out"), "--min-records", "-1"]) == 2
    assert "--min-records must be a positive integer, got -1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_required_flags_are_named():
    with pytest.raises(ConfigError, match="--baseline"):
        parse("monitor", ["--capture", "/c", "--output", "/o"])


def test_a_form_offers_exactly_the_ranges_the_cli_accepts():
    assert flag_schema(MonitorArguments, "window_minutes") | {"description": ""} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10080,
        "default": 60,
        "description": "",
    }
    low = flag_schema(MonitorArguments, "low_confidence")
    assert (low["exclusiveMinimum"], low["maximum"], low["default"]) == (0.5, 1, 0.6)


def test_the_step_result_keeps_what_the_dag_decides_on_within_a_termination_message(tmp_path):
    names = ("token_length_psi", "positive_share", "mean_confidence", "low_confidence_share", "unknown_token_rate")
    statistic = {"value": 0.123456789012, "baseline": 0.1, "threshold": 0.2, "status": "drift"}
    report = {
        "status": "drift",
        "window": {"start": "2026-12-03T16:00:00Z", "end": "2026-12-03T17:00:00Z"},
        "records": 12345,
        "min_records": 100,
        "model_versions": {f"v{index}": 1 for index in range(200)},
        "capture": "s3://bucket/" + "c" * 500,
        "baseline": "s3://bucket/" + "b" * 500,
        "statistics": [{"name": name} | statistic for name in names],
        "drifted": list(names),
    }
    (tmp_path / "monitoring.json").write_text(json.dumps(report))
    result = result_of("monitor", tmp_path)
    assert result == {
        "status": "drift",
        "records": 12345,
        "drifted": list(names),
        "window": report["window"],
        "statistics": [{"name": name, "value": 0.123456789012, "status": "drift"} for name in names],
    }
    assert len(json.dumps(result | {"output": "s3://bucket/" + "o" * 1000})) < LIMIT
