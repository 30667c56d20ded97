"""The capture writer on its own: records and their files (layout, hiding, rotation), sampling, text, a blocked
or failing file system, S3 upload, stopping."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.monitoring import records
from tasks.serving import capture
from tasks.serving.capture import CaptureWriter
from tasks.serving.served_model import Encoded

UNK = 100
# [CLS] a [UNK] [SEP] | b c [SEP] [PAD]: segments of 4 and 3 real tokens, one unknown
PAIR = Encoded([101, 7, UNK, 102, 8, 9, 102, 0], [0, 0, 0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 0], True)
TEXT = ("The company posted a profit.", "The firm reported earnings.")
NOON = datetime(2026, 12, 3, 12, 15, 30, 123456, tzinfo=UTC)


class Counts:
    """The writer's counters, as the server's /metrics keeps them."""

    def __init__(self):
        self.written = self.dropped = self.errors = 0

    def callbacks(self) -> dict:
        return {
            "on_written": lambda count: self._add("written", count),
            "on_dropped": lambda count: self._add("dropped", count),
            "on_error": lambda count: self._add("errors", count),
        }

    def _add(self, name: str, count: int) -> None:
        setattr(self, name, getattr(self, name) + count)


class Clock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def writer(root, counts: Counts | None = None, clock: Clock | None = None, **settings) -> CaptureWriter:
    callbacks = (counts or Counts()).callbacks()
    return CaptureWriter(str(root), now=clock or Clock(NOON), **callbacks, **settings)


def offer(capture: CaptureWriter, request_id: str = "r1", pairs: int = 1, texts=None) -> None:
    capture.offer(request_id, "fp32-abc", UNK, [PAIR] * pairs, [[0.2, 0.8]] * pairs, texts)


def files(root: Path, hidden: bool = False) -> list[Path]:
    return sorted(path for path in root.rglob("*" + records.SUFFIX) if path.name.startswith(".") == hidden)


def lines(root: Path) -> list[dict]:
    return [json.loads(line) for path in files(root) for line in path.read_text().splitlines()]


def written_hidden(root: Path) -> bool:
    """Whether a record is in a file still being written."""
    return any(path.read_text() for path in files(root, hidden=True))


def wait_for(condition, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


def test_records_have_the_contract_s_fields_in_the_hour_s_folder(tmp_path):
    counts = Counts()
    capture_writer = writer(tmp_path, counts)
    capture_writer.start()
    offer(capture_writer, "request-7", pairs=2)
    assert capture_writer.stop(10)
    (path,) = files(tmp_path)
    assert path.parent == tmp_path / "2026" / "12" / "03" / "12"
    assert path.name.startswith("20261203T121530Z-") and path.name.endswith(".jsonl")
    assert files(tmp_path, hidden=True) == [], "a closed file is visible"
    written = lines(tmp_path)
    assert (
        written
        == [
            {
                "time": "2026-12-03T12:15:30.123Z",
                "model_version": "fp32-abc",
                "request_id": "request-7",
                "tokens": [4, 3],
                "truncated": True,
                "unknown_tokens": 1,
                "label": 1,
                "probability": 0.8,
            }
        ]
        * 2
    )
    assert list(written[0]) == list(records.FIELDS)
    assert records.parse_time(written[0]["time"]) == NOON.replace(microsecond=123000)
    assert counts.written == 2 and counts.dropped == counts.errors == 0


def test_a_file_is_hidden_while_it_is_written(tmp_path):
    counts = Counts()
    capture_writer = writer(tmp_path, counts)
    capture_writer.start()
    offer(capture_writer)
    wait_for(lambda: written_hidden(tmp_path), "the record's write")
    assert files(tmp_path) == [] and len(files(tmp_path, hidden=True)) == 1
    assert counts.written == 0, "a record counts as written once its file is published"
    capture_writer.stop(10)
    assert len(files(tmp_path)) == 1 and files(tmp_path, hidden=True) == []
    assert counts.written == 1


def test_the_sample_rate_decides_per_request_with_the_given_generator(tmp_path):
    requests, rate = 4000, 0.25
    capture_writer = writer(tmp_path, sample_rate=rate, rng=random.Random(11))
    taken = sum(capture_writer.sampled() for _ in range(requests))
    spread = 4 * math.sqrt(requests * rate * (1 - rate))  # four standard deviations of the binomial
    assert abs(taken - requests * rate) < spread, taken
    again = writer(tmp_path, sample_rate=rate, rng=random.Random(11))
    assert sum(again.sampled() for _ in range(requests)) == taken, "the same seed samples the same requests"
    assert all(writer(tmp_path, sample_rate=1.0, rng=random.Random(1)).sampled() for _ in range(100))


def test_a_sampled_request_is_captured_with_all_its_pairs(tmp_path):
    capture_writer = writer(tmp_path)
    capture_writer.start()
    for request in range(5):
        offer(capture_writer, f"r{request}", pairs=request + 1)
    capture_writer.stop(10)
    by_request = [record["request_id"] for record in lines(tmp_path)]
    assert {request: by_request.count(request) for request in set(by_request)} == {f"r{n}": n + 1 for n in range(5)}


@pytest.mark.parametrize(
    ("keep_text", "texts", "kept"), [(False, [TEXT], False), (True, [TEXT], True), (True, None, False)]
)
def test_text_is_kept_only_when_asked_and_sent(tmp_path, keep_text, texts, kept):
    capture_writer = writer(tmp_path, text=keep_text)
    capture_writer.start()
    offer(capture_writer, texts=texts)
    capture_writer.stop(10)
    (written,) = lines(tmp_path)
    if kept:
        assert written[records.TEXT] == {"sentence1": TEXT[0], "sentence2": TEXT[1]}
    else:
        assert records.TEXT not in written and TEXT[0] not in json.dumps(written)


def test_files_rotate_at_their_size(tmp_path):
    capture_writer = writer(tmp_path, file_bytes=1024)
    capture_writer.start()
    for request in range(30):
        offer(capture_writer, f"r{request}")
    capture_writer.stop(10)
    written = files(tmp_path)
    line_bytes = len(files(tmp_path)[0].read_text().splitlines()[0]) + 1
    assert len(written) == math.ceil(30 / math.ceil(1024 / line_bytes)), [path.stat().st_size for path in written]
    assert all(path.stat().st_size < 1024 + line_bytes for path in written)
    assert len(lines(tmp_path)) == 30 and len({path.name for path in written}) == len(written)


def test_a_file_closes_at_its_hour_s_end_and_records_go_to_their_hour(tmp_path):
    clock = Clock(NOON.replace(minute=59, second=59))
    counts = Counts()
    capture_writer = writer(tmp_path, counts, clock)
    capture_writer.start()
    offer(capture_writer, "before")
    wait_for(lambda: written_hidden(tmp_path), "the first record's write")
    clock.moment += timedelta(seconds=2)  # 13:00:01: the 12 o'clock file is closed without a new record
    wait_for(lambda: len(files(tmp_path)) == 1, "the hour's file to close")
    assert files(tmp_path)[0].parent.name == "12"
    offer(capture_writer, "after")
    capture_writer.stop(10)
    hours = {}
    for path in files(tmp_path):
        hours[path.parent.name] = [json.loads(line)["request_id"] for line in path.read_text().splitlines()]
    assert hours == {"12": ["before"], "13": ["after"]}


def test_a_file_closes_when_it_reaches_its_age(tmp_path):
    counts = Counts()
    capture_writer = writer(tmp_path, counts, file_seconds=0.3)
    capture_writer.start()
    offer(capture_writer)
    wait_for(lambda: len(files(tmp_path)) == 1, "the file to close at its age")
    offer(capture_writer, "later")
    capture_writer.stop(10)
    assert len(files(tmp_path)) == 2


def test_a_full_buffer_drops_records_and_never_blocks_the_offer(tmp_path, monkeypatch):
    """The file system stalls (a slow disk): the writer holds one record, the buffer fills, the rest are dropped
    at once; once the disk answers, what was buffered is written."""
    unblocked = threading.Event()
    write = capture._CaptureFile.write
    monkeypatch.setattr(capture._CaptureFile, "write", lambda self, line: unblocked.wait() and write(self, line))
    counts = Counts()
    capture_writer = writer(tmp_path, counts, buffer_records=5)
    capture_writer.start()
    offer(capture_writer, "first")
    wait_for(lambda: capture_writer.buffered() == 0, "the writer to take the first record")
    offers = threading.Thread(
        target=lambda: [offer(capture_writer, f"r{request}") for request in range(20)], daemon=True
    )
    offers.start()
    offers.join(timeout=10)
    assert not offers.is_alive(), "an offer waited for the stalled writer"
    assert capture_writer.buffered() == 5 and counts.dropped == 15
    unblocked.set()
    assert capture_writer.stop(10)
    assert counts.written == 6 and len(lines(tmp_path)) == 6


def test_a_failing_file_system_is_counted_and_logged_once_per_run_of_failures(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the capture folder should be")
    counts = Counts()
    capture_writer = writer(blocker, counts)
    capture_writer.start()
    with caplog.at_level(logging.WARNING, logger=capture.__name__):
        for request in range(10):
            offer(capture_writer, f"r{request}")
        assert capture_writer.stop(10)
    assert counts.errors == 10 and counts.dropped == 10 and counts.written == 0
    warnings = [entry for entry in caplog.records if entry.levelno == logging.WARNING]
    assert len(warnings) == 1 and "capture: writing a record failed" in warnings[0].getMessage()


def test_stop_writes_what_is_buffered_and_closes_the_file(tmp_path):
    capture_writer = writer(tmp_path, file_seconds=3600)
    capture_writer.start()
    for request in range(200):
        offer(capture_writer, f"r{request}", pairs=3)
    assert capture_writer.stop(10)
    assert len(lines(tmp_path)) == 600 and files(tmp_path, hidden=True) == []
    counts = Counts()
    stopped = writer(tmp_path / "after", counts)
    stopped.start()
    stopped.stop(10)
    offer(stopped)
    assert counts.dropped == 1, "a record offered after the stop is dropped, not kept waiting"


def test_on_s3_a_closed_file_is_uploaded_and_its_local_copy_removed(s3, tmp_path, monkeypatch):
    monkeypatch.setattr(capture.tempfile, "tempdir", str(tmp_path))
    counts = Counts()
    capture_writer = writer(f"s3://{s3['bucket']}/capture/nlp_sagemaker", counts, file_bytes=1024)
    capture_writer.start()
    for request in range(12):
        offer(capture_writer, f"r{request}")
    assert capture_writer.stop(30)
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"])["Contents"]
    keys = sorted(entry["Key"] for entry in listed)
    assert len(keys) >= 2 and all(key.startswith("capture/nlp_sagemaker/2026/12/03/12/2026") for key in keys)
    body = b"".join(s3["client"].get_object(Bucket=s3["bucket"], Key=key)["Body"].read() for key in keys)
    assert sorted(json.loads(line)["request_id"] for line in body.splitlines()) == sorted(f"r{n}" for n in range(12))
    assert counts.written == 12 and counts.errors == 0
    assert list(tmp_path.iterdir()) == [], "no local copy is left"


def test_a_failed_upload_is_counted_and_its_records_dropped(s3, tmp_path, monkeypatch):
    monkeypatch.setattr(capture.tempfile, "tempdir", str(tmp_path))
    counts = Counts()
    capture_writer = writer("s3://no-such-bucket-for-capture/capture", counts)
    capture_writer.start()
    offer(capture_writer, pairs=3)
    assert capture_writer.stop(30)
    assert (counts.written, counts.errors, counts.dropped) == (0, 1, 3), "written counts only published records"
    assert list(tmp_path.iterdir()) == []


def test_failed_uploads_of_several_files_count_nothing_written_and_log_once(s3, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(capture.tempfile, "tempdir", str(tmp_path))
    counts = Counts()
    capture_writer = writer("s3://no-such-bucket-for-capture/capture", counts, file_bytes=1024)
    capture_writer.start()
    with caplog.at_level(logging.INFO, logger=capture.__name__):
        for request in range(12):
            offer(capture_writer, f"r{request}")
        assert capture_writer.stop(30)
    assert counts.written == 0 and counts.dropped == 12 and counts.errors >= 2, "several files, each failed"
    warnings = [entry for entry in caplog.records if entry.levelno == logging.WARNING]
    assert len(warnings) == 1 and "publishing" in warnings[0].getMessage()
    assert not [entry for entry in caplog.records if "writing again" in entry.getMessage()]


def test_a_pair_without_a_finite_probability_is_dropped_and_every_line_is_json(tmp_path):
    counts = Counts()
    capture_writer = writer(tmp_path, counts)
    capture_writer.start()
    capture_writer.offer("nan", "fp32-abc", UNK, [PAIR, PAIR], [[math.nan, math.nan], [0.2, math.inf]])
    offer(capture_writer, "fine")
    assert capture_writer.stop(10)
    assert [line["request_id"] for line in lines(tmp_path)] == ["fine"]
    assert (counts.written, counts.dropped, counts.errors) == (1, 2, 0)


def test_two_writers_of_one_process_clock_and_root_keep_each_others_files(tmp_path):
    """Containers share pids and may share host names: the file name has a random part too."""
    first, second = writer(tmp_path), writer(tmp_path)
    first.start()
    second.start()
    offer(first, "first")
    offer(second, "second")
    assert first.stop(10) and second.stop(10)
    assert sorted(line["request_id"] for line in lines(tmp_path)) == ["first", "second"]
    assert len(files(tmp_path)) == 2
