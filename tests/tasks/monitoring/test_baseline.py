"""The traffic baseline: written by train into the model card, kept by quantize, read from a model folder, a
SageMaker model.tar.gz, S3, or computed from a staged data folder."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from tasks.cli import main, parse
from tasks.compression.quantize import compressed_card
from tasks.config import LOW_CONFIDENCE
from tasks.errors import DataError
from tasks.monitoring import baseline, records, reference, statistics, traffic
from tasks.runtime import model_card
from tests.tasks.monitoring.conftest import draw, monitor_flags, write_capture

TRAIN_PART = ("pairs", "max_seq_length", "token_length", "positive_share", "unknown_token_rate")


def tar_model(path, card: dict, *, nested: bool = False) -> None:
    """A SageMaker training job's model.tar.gz: the model's files at the top (the card last, after the weights)."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in (("saved_model/saved_model.pb", b"\0" * 4096), (model_card.JSON_CARD, json.dumps(card))):
            data = content if isinstance(content, bytes) else content.encode()
            member = tarfile.TarInfo(f"model/{name}" if nested else f"./{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))


def test_decile_bins_hold_a_tenth_each_and_the_psi_of_equal_shares_is_zero():
    lengths = np.arange(1, 101)
    edges = statistics.length_edges(lengths)
    assert len(edges) == 9 and statistics.bin_shares(lengths, edges) == pytest.approx([0.1] * 10)
    assert statistics.bin_shares(np.array([edges[0], edges[0] + 0.5, 1000]), edges)[:2] == [pytest.approx(1 / 3)] * 2
    assert statistics.psi([0.1] * 10, [0.1] * 10) == 0


def test_an_empty_bin_keeps_the_psi_finite():
    value = statistics.psi([0.0, 1.0], [0.5, 0.5])
    expected = (1e-4 - 0.5) * np.log(1e-4 / 0.5) + 0.5 * np.log(2)
    assert value == pytest.approx(expected)


def test_integer_lengths_merge_repeated_decile_edges():
    lengths = np.array([30] * 50 + [40] * 50)
    edges = statistics.length_edges(lengths)
    assert edges == [30.0, 35.0, 40.0]
    assert statistics.bin_shares(lengths, edges) == [0.5, 0.0, 0.5, 0.0]


def test_each_statistic_drifts_only_in_its_direction():
    assert statistics.judge("mean_confidence", 0.95, 0.8, 0.1)["status"] == "pass", "more confident is no drift"
    assert statistics.judge("mean_confidence", 0.65, 0.8, 0.1)["status"] == "drift"
    assert statistics.judge("positive_share", 0.3, 0.5, 0.15)["status"] == "drift"
    assert statistics.judge("positive_share", 0.7, 0.5, 0.15)["status"] == "drift"
    assert statistics.judge("unknown_token_rate", 0.0, 0.05, 0.02)["status"] == "pass"
    assert statistics.judge("low_confidence_share", 0.5, None, 0.15)["status"] == "no_reference"


def test_the_low_confidence_share_has_no_reference_at_another_threshold(card_baseline):
    assert baseline.reference_values(card_baseline, LOW_CONFIDENCE)["low_confidence_share"] is not None
    assert baseline.reference_values(card_baseline, 0.8)["low_confidence_share"] is None


def test_quantize_keeps_the_trained_cards_traffic_baseline(card_baseline):
    trained = {"precision": {"training": "fp32", "exported": "fp32"}, model_card.TRAFFIC_BASELINE: card_baseline}
    record = {
        "chosen_precision": "int8",
        "int8": {"accuracy": 0.8},
        "evaluation_split": "validation",
        "reason": "faster",
        "relative_accuracy_loss": 0.001,
        "tolerance": 0.01,
        "inc": {"recipe": None},
        "hardware": {},
    }
    assert compressed_card(trained, record)[model_card.TRAFFIC_BASELINE] == card_baseline


@pytest.mark.parametrize("layout", ["archive", "folder holding the archive", "nested archive"])
def test_a_sagemaker_model_tar_gz_gives_the_card_inside_it(tmp_path, card_baseline, layout):
    archive = tmp_path / "output" / "model.tar.gz"
    archive.parent.mkdir()
    tar_model(archive, {model_card.TRAFFIC_BASELINE: card_baseline}, nested=layout == "nested archive")
    uri = str(archive.parent if layout == "folder holding the archive" else archive)
    if layout == "nested archive":
        with pytest.raises(DataError, match=f"--baseline {uri}: the archive holds no model_card.json"):
            reference.load(uri)
        return
    found = reference.load(uri)
    assert found.baseline == card_baseline and found.kind == "model card"


def test_a_file_that_is_no_archive_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a gzipped tar archive"):
        reference.load(str(archive))


def test_a_missing_archive_is_bad_input_not_a_retryable_read_failure(tmp_path):
    with pytest.raises(DataError, match=f"--baseline {tmp_path}/gone/model.tar.gz: no such file"):
        reference.load(str(tmp_path / "gone" / "model.tar.gz"))


def test_a_card_whose_baseline_lacks_a_figure_is_refused_naming_it(tmp_path, card_baseline):
    (tmp_path / model_card.JSON_CARD).write_text(
        json.dumps({model_card.TRAFFIC_BASELINE: card_baseline | {"token_length": {"edges": [1.0], "shares": [1.0]}}})
    )
    with pytest.raises(DataError, match="traffic_baseline has no valid token_length.edges and .shares"):
        reference.load(str(tmp_path))


def test_capture_and_baseline_on_s3(tmp_path, s3, card_baseline):
    bucket, client = s3["bucket"], s3["client"]
    capture = tmp_path / "capture"
    for path in write_capture(capture, draw(200, seed=11)):
        client.upload_file(str(path), bucket, f"capture/{path.relative_to(capture).as_posix()}")
    client.put_object(Bucket=bucket, Key="capture/2026/12/03/16/.open-file.jsonl", Body=b"half")
    tar_model(tmp_path / "model.tar.gz", {model_card.TRAFFIC_BASELINE: card_baseline})
    client.upload_file(str(tmp_path / "model.tar.gz"), bucket, "models/v1/output/model.tar.gz")
    flags = monitor_flags(
        f"s3://{bucket}/capture", f"s3://{bucket}/models/v1/output/model.tar.gz", f"s3://{bucket}/monitoring/run1"
    )
    assert main(["monitor", *flags]) == 0
    report = json.loads(client.get_object(Bucket=bucket, Key="monitoring/run1/monitoring.json")["Body"].read())
    assert report["status"] == "ok" and report["records"] == 200 and report["capture"] == f"s3://{bucket}/capture"
    assert client.head_object(Bucket=bucket, Key="monitoring/run1/monitoring.png")["ContentLength"] > 0


def test_a_malformed_line_on_s3_is_named_by_its_uri(tmp_path, s3, card_baseline, capsys):
    bucket, client = s3["bucket"], s3["client"]
    (tmp_path / model_card.JSON_CARD).write_text(json.dumps({model_card.TRAFFIC_BASELINE: card_baseline}))
    key = "capture/2026/12/03/16/20261203T160000Z-host-1-000000.jsonl"
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps(draw(1)[0]).encode() + b"\n{oops\n")
    flags = monitor_flags(f"s3://{bucket}/capture", tmp_path, tmp_path / "out")
    assert main(["monitor", *flags]) == 3
    assert f"error: s3://{bucket}/{key}:2: not JSON" in capsys.readouterr().err


def test_a_staged_data_folder_is_a_baseline_without_the_confidence_statistics(tmp_path, staged_data):
    found = reference.load(str(staged_data))
    manifest = json.loads((staged_data / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    assert found.kind == "staged data" and found.baseline["pairs"] == train["rows"]
    assert found.baseline["positive_share"] == pytest.approx(train["positive_fraction"], abs=1e-4)
    assert sum(found.baseline["token_length"]["shares"]) == pytest.approx(1)
    assert found.baseline["unknown_token_rate"] == 0.0 and baseline.VALIDATION not in found.baseline
    write_capture(tmp_path / "capture", draw(150, seed=12))
    assert main(["monitor", *monitor_flags(tmp_path / "capture", staged_data, tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "monitoring.json").read_text())
    states = {entry["name"]: entry["status"] for entry in report["statistics"]}
    assert states["mean_confidence"] == states["low_confidence_share"] == "no_reference"
    assert report["baseline_kind"] == "staged data"


def test_train_writes_the_traffic_baseline_into_the_card(trained_tiny, staged_data):
    card = json.loads((trained_tiny / model_card.JSON_CARD).read_text())
    written = card[model_card.TRAFFIC_BASELINE]
    from_data = reference.load(str(staged_data)).baseline
    assert {key: written[key] for key in TRAIN_PART} == from_data
    validation = written[baseline.VALIDATION]
    manifest = json.loads((staged_data / "manifest.json").read_text())
    assert validation["pairs"] == manifest["splits"]["validation"]["rows"] and validation["low_confidence"] == 0.6
    assert 0.5 <= validation["mean_confidence"] <= 1 and 0 <= validation["low_confidence_share"] <= 1
    metrics = json.loads((trained_tiny / "metrics.json").read_text())
    assert validation["mean_confidence"] == metrics["epochs"][-1]["mean_confidence"], "the final model's scoring"
    assert reference.load(str(trained_tiny)).baseline == written


def quiet_window(drawn: list[dict]) -> traffic.Traffic:
    """A window's pairs as the monitor reads them."""
    return traffic.Traffic(
        lengths=np.array([sum(record["tokens"]) for record in drawn]),
        unknown_tokens=np.array([record["unknown_tokens"] for record in drawn]),
        labels=np.array([record["label"] for record in drawn]),
        probabilities=np.array([record["probability"] for record in drawn]),
        truncated=np.array([record["truncated"] for record in drawn]),
        versions=np.array([record["model_version"] for record in drawn]),
        times=np.array([records.parse_time(record["time"]).timestamp() for record in drawn]),
    )


def test_quiet_windows_of_the_fewest_pairs_rarely_drift_at_the_defaults(card_baseline):
    """Windows drawn from the baseline's own distribution, each as small as --min-records allows: at the default
    thresholds fewer than 1 % drift (a false signal; hourly, a quarter of one a day)."""
    args = parse("monitor", ["--capture", "c", "--baseline", "b", "--output", "o"])
    references = baseline.reference_values(card_baseline, args.low_confidence)
    windows = 1000
    drifted = 0
    for seed in range(windows):
        values = statistics.traffic_values(
            quiet_window(draw(args.min_records, seed=1000 + seed)), card_baseline, args.low_confidence
        )
        drifted += any(entry["status"] == statistics.DRIFT for entry in statistics.compare(values, references, args))
    assert drifted / windows < 0.01, f"{drifted} of {windows} quiet windows drifted"
