"""Data capture: a record of each pair of a sampled request, written as JSON Lines off the request path.

The request path only decides whether a request is sampled (``sampled``, at ``--capture-sample-rate``) and hands
its pairs over (``offer``): one non-blocking put per pair into a bounded buffer (``--capture-buffer-records``).
When the buffer is full the pair is dropped and counted, never waited for: capture never blocks or slows a
request. A writer thread turns each pair into its record (``tasks.monitoring.records``: the fields, the layout)
and appends it to the open file of the record's UTC hour::

    <capture dir>/YYYY/MM/DD/HH/.<name>.jsonl   while written (readers skip hidden files)
    <capture dir>/YYYY/MM/DD/HH/<name>.jsonl    once closed

A file is closed when it holds ``--capture-file-bytes``, ``--capture-file-seconds`` after its first record, at
its hour's end, and when the server stops. On ``s3://`` the file is written in a local temporary folder, uploaded
(fsspec) when closed, and the temporary removed. A record counts as written (``on_written``) once its file is
published. A failed write or upload is counted (``on_error``; its records as dropped, with those of the file it
was writing, which may hold half a line and is discarded), logged once per run of failures (of either kind: the
run ends when a file is published), and never reaches a request. A pair whose probabilities are not finite is dropped (counted), never
written: every line is JSON the monitor reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import random
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.config import CAPTURE_REMOTE, ServeArguments
from tasks.monitoring import records
from tasks.serving.served_model import Encoded

log = logging.getLogger(__name__)

# The longest the writer sleeps with nothing to write: how late a file may close after its age or hour is up.
_IDLE_SECONDS = 1.0
_HOUR = timedelta(hours=1)
# The least time stop gives the writer, even with no --graceful-timeout left: what is buffered is written and the
# open file published at least once (SageMaker kills 30 s after SIGTERM; the default graceful timeout is 25 s).
STOP_LEAST_SECONDS = 3.0
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")  # a host name goes into file names


@dataclass(frozen=True)
class Pending:
    """A sampled pair as the request path hands it over; the writer thread makes its record (``record``)."""

    time: datetime
    model_version: str
    request_id: str
    pair: Encoded
    probabilities: Sequence[float]
    unk_token_id: int | None
    text: tuple[str, str] | None = None


def record(pending: Pending) -> dict | None:
    """The capture record of a pair (``tasks.monitoring.records.FIELDS``, and ``text`` when it was kept); None
    when its probabilities are not all finite (JSON has no NaN, and the monitor would refuse the line)."""
    if not all(math.isfinite(share) for share in pending.probabilities):
        return None
    first = second = unknown = 0
    for token, segment, real in zip(
        pending.pair.input_ids, pending.pair.token_type_ids, pending.pair.attention_mask, strict=True
    ):
        if real:
            first, second = (first + 1, second) if segment == 0 else (first, second + 1)
            unknown += token == pending.unk_token_id
    label = max(range(len(pending.probabilities)), key=pending.probabilities.__getitem__)
    values = (
        records.stamp(pending.time),
        pending.model_version,
        pending.request_id,
        [first, second],
        pending.pair.truncated,
        unknown,
        label,
        round(float(pending.probabilities[label]), 6),
    )
    kept = dict(zip(records.FIELDS, values, strict=True))
    if pending.text is not None:
        kept[records.TEXT] = {"sentence1": pending.text[0], "sentence2": pending.text[1]}
    return kept


class _CaptureFile:
    """One open capture file of one hour: local and hidden while written; published (renamed, or uploaded and
    removed) by ``close``."""

    def __init__(self, root: str, hour: datetime, name: str, staging: Path | None, opened: float):
        self.hour, self.opened, self.size, self.records = hour, opened, 0, 0
        folder = records.hour_folder(hour)
        self.target = f"{root.rstrip('/')}/{folder}/{name}"
        local = Path(root, folder) if staging is None else staging
        local.mkdir(parents=True, exist_ok=True)
        self.path = local / f"{records.HIDDEN}{name}"
        self.remote = staging is not None
        self.handle = self.path.open("a", encoding="utf-8")

    def write(self, line: str) -> None:
        self.handle.write(line)
        self.size += len(line)  # records are ASCII (json.dumps escapes the rest)
        self.records += 1

    def close(self, fs) -> None:
        try:
            self.handle.close()
            if self.remote:
                fs.put_file(str(self.path), self.target)
            else:
                os.replace(self.path, self.target)
        finally:
            if self.remote:
                self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


class CaptureWriter:
    """A bounded buffer of sampled pairs and the thread that writes their records (see the module docstring).

    :param root: the capture folder, local or ``s3://``.
    :param sample_rate: share of requests captured (0 < rate <= 1).
    :param text: keep the sentences of text requests.
    :param file_bytes: close a file once it holds this many bytes.
    :param file_seconds: close a file this long after it was opened (and always at its hour's end).
    :param buffer_records: pairs held for the writer at most; more are dropped.
    :param on_written, on_dropped, on_error: called with a count (records written: in a published file; records
        dropped; failures).
    :param rng: decides which requests are sampled (seed it for a reproducible sample).
    :param now: the current time, UTC (when the open file's hour is over).
    """

    def __init__(
        self,
        root: str,
        *,
        sample_rate: float = 1.0,
        text: bool = False,
        file_bytes: int = 16 * 1024 * 1024,
        file_seconds: float = 300,
        buffer_records: int = 10_000,
        on_written: Callable[[int], None] = lambda count: None,
        on_dropped: Callable[[int], None] = lambda count: None,
        on_error: Callable[[int], None] = lambda count: None,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.root, self.sample_rate, self.text = root, sample_rate, text
        self.file_bytes, self.file_seconds = file_bytes, file_seconds
        self._written, self._dropped, self._error = on_written, on_dropped, on_error
        self._rng, self._now = rng or random.Random(), now
        self._buffer: queue.Queue[Pending] = queue.Queue(maxsize=buffer_records)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._file: _CaptureFile | None = None
        self._fs = self._staging = None
        self._sequence = 0
        self._failures = 0  # in the current run of failures; logged at its first and when it ends
        self._host = _UNSAFE.sub("-", socket.gethostname()) or "host"

    @classmethod
    def from_arguments(cls, args: ServeArguments, **callbacks) -> CaptureWriter:
        return cls(
            args.capture_dir,
            sample_rate=args.capture_sample_rate,
            text=args.capture_text,
            file_bytes=args.capture_file_bytes,
            file_seconds=args.capture_file_seconds,
            buffer_records=args.capture_buffer_records,
            **callbacks,
        )

    # The request path: cheap and never blocking.

    def sampled(self) -> bool:
        """Whether to capture the next request (all its pairs, or none)."""
        return self.sample_rate >= 1 or self._rng.random() < self.sample_rate

    def offer(
        self,
        request_id: str,
        model_version: str,
        unk_token_id: int | None,
        pairs: Sequence[Encoded],
        probabilities: Sequence[Sequence[float]],
        texts: Sequence[tuple[str, str]] | None = None,
    ) -> None:
        """Hand a sampled request's pairs to the writer; each one the buffer has no room for is dropped."""
        if self._stopping.is_set():  # nothing offered now would be written
            self._dropped(len(pairs))
            return
        moment, dropped = self._now(), 0
        texts = texts if self.text else None
        for index, pair in enumerate(pairs):
            text = texts[index] if texts is not None else None
            pending = Pending(moment, model_version, request_id, pair, probabilities[index], unk_token_id, text)
            try:
                self._buffer.put_nowait(pending)
            except queue.Full:
                dropped += 1
        if dropped:
            self._dropped(dropped)

    def buffered(self) -> int:
        return self._buffer.qsize()

    # Starting and stopping.

    def start(self) -> None:
        log.info(
            "capturing a share of %g of requests%s to %s (files of up to %d bytes or %g s, %d records buffered at"
            " most)",
            self.sample_rate,
            " with their text" if self.text else "",
            self.root,
            self.file_bytes,
            self.file_seconds,
            self._buffer.maxsize,
        )
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Write what is buffered, close the open file and end the thread, within ``timeout`` seconds but never
        less than STOP_LEAST_SECONDS (the writer is a daemon thread: it dies with the process, its file hidden);
        False (and a warning naming what was left) when that was not enough."""
        self._stopping.set()
        waited = max(timeout, STOP_LEAST_SECONDS)
        self._thread.join(waited)
        if self._thread.is_alive():
            log.warning("capture: %d buffered records not written within %g s of stopping", self.buffered(), waited)
            return False
        return True

    # The writer thread.

    def _run(self) -> None:
        while not (self._stopping.is_set() and self._buffer.empty()):
            try:
                pending = self._buffer.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                self._close_if_due()
                continue
            self._write(pending)
            while True:  # drain what is there, then flush once
                try:
                    self._write(self._buffer.get_nowait())
                except queue.Empty:
                    break
            self._flush()
            self._close_if_due()
        self._close()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    def _write(self, pending: Pending) -> None:
        hour = pending.time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        if self._file is not None and self._file.hour != hour:
            self._close()
        kept = record(pending)
        if kept is None:
            self._dropped(1)
            return
        try:
            if self._file is None:
                self._file = self._open(hour, pending.time)
            self._file.write(json.dumps(kept, separators=(",", ":"), allow_nan=False) + "\n")
        except Exception as failure:  # noqa: BLE001 - a capture failure must never end the writer
            self._failed(failure, "writing a record", 1)
            return
        if self._file.size >= self.file_bytes:
            self._close()

    def _open(self, hour: datetime, first: datetime) -> _CaptureFile:
        remote = self.root.startswith(CAPTURE_REMOTE)
        if remote and self._fs is None:
            import fsspec

            self._fs = fsspec.core.url_to_fs(self.root)[0]
            self._staging = Path(tempfile.mkdtemp(prefix="capture-"))
        self._sequence += 1
        name = records.file_name(first, self._host, os.getpid(), self._sequence)
        return _CaptureFile(self.root, hour, name, self._staging if remote else None, time.monotonic())

    def _flush(self) -> None:
        if self._file is None:
            return
        try:
            self._file.handle.flush()
        except Exception as failure:  # noqa: BLE001
            self._failed(failure, "writing records", 0)

    def _close_if_due(self) -> None:
        if self._file is None:
            return
        aged = time.monotonic() - self._file.opened >= self.file_seconds
        if aged or self._now() >= self._file.hour + _HOUR:
            self._close()

    def _close(self) -> None:
        current, self._file = self._file, None
        if current is None:
            return
        try:
            current.close(self._fs)
        except Exception as failure:  # noqa: BLE001
            current.discard()
            self._failed(failure, f"publishing {current.target}", current.records)
            return
        self._written(current.records)  # written once readers can see them
        self._recovered()

    def _failed(self, failure: Exception, action: str, lost: int) -> None:
        """Count a failure and the records it lost; a file being written when it happened may hold half a line,
        so it is discarded, its records lost too. Only the first failure of a run is logged."""
        if self._file is not None:
            lost += self._file.records
            self._file.discard()
            self._file = None
        self._failures += 1
        self._error(1)
        if lost:
            self._dropped(lost)
        if self._failures == 1:
            log.warning(
                "capture: %s failed (%d records lost; further failures are counted in /metrics, not logged): %s",
                action,
                lost,
                failure,
            )

    def _recovered(self) -> None:
        """A file was published: a run of failures (of writing or publishing) is over."""
        if self._failures:
            log.info("capture: writing again after %d failures", self._failures)
            self._failures = 0
