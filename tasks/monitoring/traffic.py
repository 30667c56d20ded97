"""Reading a window of captured traffic: the records of ``start <= time < end`` under a capture root.

Only the folders of the window's hours are listed (``records.hour_folder``), so a week of capture costs a
week's listings, whatever the root holds. A file still being written (hidden) is skipped. The root is a local
folder or any fsspec URL (``s3://``). A record that is not what the server writes is an error naming the file
and line: the capture is the server's own output, so a bad line means a bug or a foreign file, not noise.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from tasks.errors import DataError, SourceError
from tasks.monitoring import records
from tasks.serving.contract import LABELS

log = logging.getLogger(__name__)

_HOUR = timedelta(hours=1)
# Traffic's columns and their array types.
_COLUMNS = {
    "lengths": np.int64,
    "unknown_tokens": np.int64,
    "labels": np.int64,
    "probabilities": float,
    "truncated": bool,
    "versions": str,
    "times": float,
}


@dataclass
class Traffic:
    """The window's pairs, one array entry each: token length, unknown tokens, predicted label, its probability,
    whether the server cut it, the model version that answered and when (seconds since the epoch)."""

    lengths: np.ndarray
    unknown_tokens: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray
    truncated: np.ndarray
    versions: np.ndarray
    times: np.ndarray

    @property
    def model_versions(self) -> Counter:
        return Counter(self.versions.tolist())

    def __len__(self) -> int:
        return len(self.lengths)

    def clipped(self, max_seq_length: int | None) -> Traffic:
        """These pairs with their lengths cut at ``max_seq_length`` (as the baseline's were; None: as they are)."""
        if max_seq_length is None:
            return self
        return replace(self, lengths=np.minimum(self.lengths, max_seq_length))

    def newest_version(self) -> str | None:
        """The version that answered the window's last pair: the one serving at its end (None: no pairs)."""
        return str(self.versions[int(np.argmax(self.times))]) if len(self) else None

    def of_version(self, version: str) -> Traffic:
        """The pairs ``version`` answered."""
        kept = self.versions == version
        return Traffic(**{name: getattr(self, name)[kept] for name in _COLUMNS})

    def server_cut(self) -> int | None:
        """The length the server cut pairs at, as its truncated pairs show it (None: it cut none)."""
        return int(self.lengths[self.truncated].max()) if self.truncated.any() else None


def hour_folders(start: datetime, end: datetime) -> list[str]:
    """The folders (relative to the capture root) of every hour the window ``[start, end)`` touches."""
    hour = start.replace(minute=0, second=0, microsecond=0)
    folders = []
    while hour < end:
        folders.append(records.hour_folder(hour))
        hour += _HOUR
    return folders


def read_window(root: str, start: datetime, end: datetime) -> Traffic:
    """The records under ``root`` with ``start <= time < end``."""
    import fsspec

    fs, base = fsspec.core.url_to_fs(root)
    columns: dict[str, list] = {name: [] for name in _COLUMNS}
    files = 0
    for folder in hour_folders(start, end):
        for path in _capture_files(fs, f"{base.rstrip('/')}/{folder}", root):
            files += 1
            shown = _shown(fs, path)
            try:
                with fs.open(path, "rt", encoding="utf-8") as handle:
                    for number, line in enumerate(handle, start=1):
                        if line.strip():
                            _keep(_parse(line, shown, number), start, end, columns)
            except (OSError, UnicodeDecodeError) as error:
                raise SourceError(f"{shown}: cannot read: {error}") from error
    log.info("read %d pair(s) of %s to %s from %d file(s) under %s", len(columns["lengths"]), start, end, files, root)
    return Traffic(**{name: np.asarray(values, dtype=_COLUMNS[name]) for name, values in columns.items()})


def _capture_files(fs, folder: str, root: str) -> list[str]:
    """The complete capture files in ``folder`` (none when it does not exist), in name order (time order)."""
    try:
        entries = fs.ls(folder, detail=True)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise SourceError(f"{root}: cannot list {folder}: {error}") from error
    names = [entry["name"] for entry in entries if entry.get("type") == "file"]
    return sorted(
        name
        for name in names
        if not name.rsplit("/", 1)[-1].startswith(records.HIDDEN) and name.endswith(records.SUFFIX)
    )


def _shown(fs, path: str) -> str:
    """``path`` as the user named the root: with the protocol (``s3://bucket/...``) when it has one."""
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    return path if protocol in ("file", "local") else f"{protocol}://{path}"


def _keep(record: dict, start: datetime, end: datetime, columns: dict) -> None:
    if not start <= record["moment"] < end:
        return
    columns["lengths"].append(sum(record["tokens"]))
    columns["unknown_tokens"].append(record["unknown_tokens"])
    columns["labels"].append(record["label"])
    columns["probabilities"].append(record["probability"])
    columns["truncated"].append(record["truncated"] is True)
    columns["versions"].append(record["model_version"])
    columns["times"].append(record["moment"].timestamp())


def _parse(line: str, file: str, number: int) -> dict:
    """One capture line as a record (with its time parsed as ``moment``); a DataError naming file, line and field
    when it is not one."""

    def bad(what: str) -> DataError:
        return DataError(f"{file}:{number}: {what}; not a capture record (tasks/monitoring/records.py)")

    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise bad(f"not JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise bad(f"a JSON {type(record).__name__}, not an object")
    missing = [name for name in records.FIELDS if name not in record]
    if missing:
        raise bad(f"no field {', '.join(missing)}")
    try:
        record["moment"] = records.parse_time(str(record["time"]))
    except ValueError:
        raise bad(f"field 'time' is {record['time']!r}, not a time such as 2026-12-03T17:04:05.123Z") from None
    tokens = record["tokens"]
    if not (isinstance(tokens, list) and len(tokens) == 2 and all(_count(count) for count in tokens)):
        raise bad(f"field 'tokens' is {tokens!r}, not two token counts")
    if not _count(record["unknown_tokens"]):
        raise bad(f"field 'unknown_tokens' is {record['unknown_tokens']!r}, not a count")
    if not (_count(record["label"]) and record["label"] < len(LABELS)):
        raise bad(f"field 'label' is {record['label']!r}, not a label index (0 to {len(LABELS) - 1})")
    probability = record["probability"]
    if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
        raise bad(f"field 'probability' is {probability!r}, not a probability")
    if not isinstance(record["model_version"], str):
        raise bad(f"field 'model_version' is {record['model_version']!r}, not a string")
    return record


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
