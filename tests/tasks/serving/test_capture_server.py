"""Capture in the server, over real HTTP on 127.0.0.1 with a stand-in model (no TensorFlow): what a request leaves
behind, what /metrics counts, a full buffer that drops records and never requests, and SIGTERM writing what is
buffered."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tasks.config import CAPTURE_ENV
from tasks.monitoring import records
from tasks.serving import capture
from tasks.serving.served_model import Encoded
from tests.conftest import REPO, free_port
from tests.tasks.serving.test_adversity import PAIR, StandIn, metric, serving

UNK = 100
CONFIDENCE = float(np.exp(1) / (1 + np.exp(1)))  # the stand-in's logits (0, 1): label 1


class CapturedStandIn(StandIn):
    """The adversity stand-in, with a word tokenizer ("zzz" is unknown) and an unknown-token id."""

    unk_token_id = UNK

    def encode(self, pairs):
        encoded = []
        for first, second in pairs:
            one = [UNK if word == "zzz" else 7 for word in first.split()]
            two = [UNK if word == "zzz" else 8 for word in second.split()]
            ids = [101, *one, 102, *two, 102]
            encoded.append(Encoded(ids, [0] * (len(one) + 2) + [1] * (len(two) + 1), [1] * len(ids)))
        return encoded

    def predict(self, pairs):
        return np.tile(np.array([0.0, 1.0], dtype=np.float32), (len(pairs), 1))


def captured(root: Path) -> list[dict]:
    paths = sorted(path for path in root.rglob("*" + records.SUFFIX) if not path.name.startswith(records.HIDDEN))
    return [json.loads(line) for path in paths for line in path.read_text().splitlines()]


def invoke(url: str, payload: dict, request_id: str = "") -> httpx.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    return httpx.post(f"{url}/invocations", json=payload, headers=headers, timeout=30)


def test_a_text_request_leaves_a_record_per_pair_without_its_text(tmp_path):
    pairs = [PAIR, {"sentence1": "zzz rose", "sentence2": "prices zzz fell"}]
    with serving(CapturedStandIn(), capture_dir=str(tmp_path)) as url:
        answer = invoke(url, {"instances": pairs}, "req-1")
        assert answer.status_code == 200
    first, second = captured(tmp_path)
    assert [first["request_id"], second["request_id"]] == ["req-1", "req-1"]
    assert first["model_version"] == answer.json()["model_version"] == CapturedStandIn.version
    assert first["tokens"] == [2 + len(PAIR["sentence1"].split()), 1 + len(PAIR["sentence2"].split())]
    assert second["tokens"] == [4, 4] and second["unknown_tokens"] == 2
    assert first["unknown_tokens"] == 0 and first["truncated"] is False
    assert first["label"] == 1 and first["probability"] == round(answer.json()["probabilities"][0][1], 6)
    assert first["probability"] == round(CONFIDENCE, 6)
    assert all(records.TEXT not in record for record in (first, second))


def test_with_capture_text_a_text_request_keeps_its_sentences_and_a_tokenised_one_has_none(tmp_path):
    tokenised = {"input_ids": [101, 5, UNK, 102, 6, 102, 0], "token_type_ids": [0, 0, 0, 0, 1, 1, 0]}
    tokenised["attention_mask"] = [1, 1, 1, 1, 1, 1, 0]
    with serving(CapturedStandIn(), capture_dir=str(tmp_path), capture_text=True) as url:
        assert invoke(url, {"instances": [PAIR]}, "text").status_code == 200
        assert invoke(url, {"instances": [tokenised]}, "tokens").status_code == 200
    by_request = {record["request_id"]: record for record in captured(tmp_path)}
    assert by_request["text"][records.TEXT] == PAIR
    assert records.TEXT not in by_request["tokens"]
    assert by_request["tokens"]["tokens"] == [4, 2] and by_request["tokens"]["unknown_tokens"] == 1


def test_metrics_count_written_records_and_capture_off_writes_nothing(tmp_path):
    with serving(CapturedStandIn(), capture_dir=str(tmp_path / "on"), capture_file_seconds=1) as url:
        for _ in range(3):
            assert invoke(url, {"instances": [PAIR, PAIR]}).status_code == 200
        deadline = time.monotonic() + 20
        while metric(url, "capture_records_total") < 6:  # once their file is published, a second on
            assert time.monotonic() < deadline, "the records were not written"
            time.sleep(0.05)
        assert metric(url, "capture_dropped_records_total") == metric(url, "capture_write_errors_total") == 0
    with serving(CapturedStandIn()) as url:
        assert invoke(url, {"instances": [PAIR]}).status_code == 200
        assert metric(url, "capture_records_total") == metric(url, "capture_buffered_records") == 0
    assert not (tmp_path / "off").exists()


def test_a_full_capture_buffer_drops_records_never_requests(tmp_path, monkeypatch):
    """The capture disk stalls: the writer holds one record, the buffer three; every request still gets 200 at
    once and the rest of the records are dropped and counted."""
    unblocked = threading.Event()
    write = capture._CaptureFile.write
    monkeypatch.setattr(capture._CaptureFile, "write", lambda self, line: unblocked.wait() and write(self, line))
    try:
        with serving(CapturedStandIn(), capture_dir=str(tmp_path), capture_buffer_records=3) as url:
            statuses = [invoke(url, {"instances": [PAIR]}).status_code for _ in range(20)]
            assert statuses == [200] * 20
            assert metric(url, "capture_buffered_records") == 3
            assert metric(url, "capture_dropped_records_total") == 16
            assert metric(url, "capture_records_total") == 0
            unblocked.set()
    finally:
        unblocked.set()
    assert len(captured(tmp_path)) == 4, "what was buffered is written at the stop"


def test_a_server_started_without_flags_captures_where_its_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv(CAPTURE_ENV["capture_dir"], str(tmp_path))
    monkeypatch.setenv(CAPTURE_ENV["capture_text"], "true")
    with serving(CapturedStandIn()) as url:
        assert invoke(url, {"instances": [PAIR]}).status_code == 200
    (record,) = captured(tmp_path)
    assert record[records.TEXT] == PAIR


_SERVE_SLOW_WRITES = """
import asyncio, sys, time
from tasks.config import ServeArguments
from tasks.serving import capture
from tasks.serving.server import create_app, uvicorn_config, uvicorn_server
from tests.tasks.serving.test_capture_server import CapturedStandIn

write = capture._CaptureFile.write
capture._CaptureFile.write = lambda self, line: time.sleep(0.02) or write(self, line)  # a slow disk
args = ServeArguments(
    host="127.0.0.1",
    port=int(sys.argv[1]),
    capture_dir=sys.argv[2],
    capture_file_seconds=3600,
    graceful_timeout=float(sys.argv[3]),
)
model = CapturedStandIn()
asyncio.run(uvicorn_server(uvicorn_config(args, create_app(args, load_model=lambda source, digest: model))).serve())
"""


def serve_slow_writes(tmp_path: Path, graceful_timeout: float) -> tuple[subprocess.Popen, str]:
    """A capturing server in its own process whose disk writes slowly, ready to answer."""
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE_SLOW_WRITES, str(port), str(tmp_path / "capture"), str(graceful_timeout)],
            cwd=REPO,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(log.read_text())
        try:
            if httpx.get(f"{url}/ping", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)


@pytest.mark.parametrize("graceful_timeout, requests", [(25, 10), (0, 5)], ids=["graceful", "no-graceful-time"])
def test_sigterm_writes_every_answered_record_and_closes_the_file(tmp_path, graceful_timeout, requests):
    """With --graceful-timeout 0 too: the flush always gets a few seconds of its own."""
    process, url = serve_slow_writes(tmp_path, graceful_timeout)
    try:
        for request in range(requests):
            assert invoke(url, {"instances": [PAIR] * 8}, f"r{request}").status_code == 200
        assert metric(url, "capture_buffered_records") > 0, "records are still waiting for the slow disk"
        process.send_signal(signal.SIGTERM)
        # uvicorn drains, shuts the app down (the capture writer with it), then re-raises the SIGTERM it caught
        assert process.wait(timeout=30) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    assert len(captured(tmp_path / "capture")) == requests * 8
    assert not list((tmp_path / "capture").rglob(records.HIDDEN + "*")), "no file is left hidden"


class NaNStandIn(CapturedStandIn):
    """A model whose logits are not numbers: the server cannot answer it (JSON has no NaN)."""

    def predict(self, pairs):
        return np.full((len(pairs), 2), np.nan, dtype=np.float32)


def test_a_request_the_server_cannot_answer_leaves_no_record(tmp_path):
    with serving(NaNStandIn(), capture_dir=str(tmp_path)) as url:
        assert invoke(url, {"instances": [PAIR, PAIR]}).status_code == 500
        assert metric(url, "capture_dropped_records_total") == 0, "nothing was offered"
    assert captured(tmp_path) == []
