"""The capture record: what the inference server keeps of each sampled pair, and where its files lie.

One JSON object per line (JSON Lines), one line per pair of a sampled request::

    {"time": "2026-12-03T17:04:05.123Z", "model_version": "...", "request_id": "...",
     "tokens": [14, 11], "truncated": false, "unknown_tokens": 0, "label": 1, "probability": 0.93}

``tokens`` are the pair's two segments as the model saw them (sentence 1 with [CLS] and its [SEP], sentence 2 with
its [SEP]), after truncation to the server's max length; their sum is what the training data's attention masks
count. ``probability`` is the predicted label's, the model's confidence. ``text`` (``{"sentence1": ...,
"sentence2": ...}``) is there only when the server was started with ``--capture-text`` and the client sent text.

A file holds the records of one UTC hour, in time order, under that hour's folder (SageMaker's capture layout)::

    <capture root>/YYYY/MM/DD/HH/<first record's time, YYYYmmddTHHMMSSZ>-<host>-<pid>-<sequence>-<random>.jsonl

The random part (8 hex digits) keeps apart the files of two writers with the same host, pid and second
(containers share pids, and two servers may share a host name): one would otherwise replace the other's.

A file being written is hidden (its name starts with ``.``) until it is complete; readers skip hidden files.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

SUFFIX = ".jsonl"
HIDDEN = "."  # a file still being written: readers skip names starting with it
FIELDS = ("time", "model_version", "request_id", "tokens", "truncated", "unknown_tokens", "label", "probability")
TEXT = "text"  # only with --capture-text
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def stamp(moment: datetime) -> str:
    """A record's ``time``: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)[:-4] + "Z"


def parse_time(text: str) -> datetime:
    return datetime.strptime(text.removesuffix("Z") + "000Z", TIME_FORMAT).replace(tzinfo=UTC)


def hour_folder(moment: datetime) -> str:
    """The folder, relative to the capture root, of the files holding the records of ``moment``'s hour."""
    return moment.astimezone(UTC).strftime("%Y/%m/%d/%H")


def file_name(first: datetime, host: str, pid: int, sequence: int) -> str:
    """A new file's name: its first record's time (names sort in time order), writer, sequence, a random part."""
    stamped = first.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamped}-{host}-{pid}-{sequence:06d}-{secrets.token_hex(4)}{SUFFIX}"
