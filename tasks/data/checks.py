"""The rules a staged data set obeys, and the facts about it that the manifest reports.

Row rules: both sentences are non-empty text and the label is 0 or 1 (only the test split may be
unlabelled). Set rules: a pair in two splits is leakage (an error: it inflates evaluation scores);
duplicates inside a split are reported. Pairs are compared case- and whitespace-insensitively, in
either order, since "A / B" and "B / A" ask the same question.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass

from tasks.data.files import UNLABELLED, Record, quoted
from tasks.errors import BadRow

UNLABELLED_VALUE = -1


@dataclass(frozen=True)
class CheckedPair:
    """A row that passed the row rules."""

    sentence1: str
    sentence2: str
    label: int
    file: str
    line: int | None
    row: int | None

    @property
    def origin(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else f"{self.file}: row {self.row}"

    @property
    def key(self) -> tuple[str, str]:
        return pair_key(self.sentence1, self.sentence2)


@dataclass(frozen=True)
class Leak:
    pair: CheckedPair
    split: str
    first_split: str
    first_origin: str


def pair_key(sentence1: str, sentence2: str) -> tuple[str, str]:
    first, second = (" ".join(text.split()).casefold() for text in (sentence1, sentence2))
    return (first, second) if first <= second else (second, first)


def _label(value: object) -> int | None:
    """0 or 1 from an int, an integral float or a string; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        return int(value) if value in ("0", "1") else None
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    return None


def check_records(split: str, records: list[Record]) -> tuple[list[CheckedPair], list[BadRow]]:
    pairs, bad = [], []

    def reject(record: Record, field: str, reason: str) -> None:
        bad.append(BadRow(record.file, record.line, field, reason, record.row))

    for record in records:
        if record.problem is not None:
            reject(record, *record.problem)
            continue
        sentences = []
        for value, name in ((record.sentence1, record.columns.sentence1), (record.sentence2, record.columns.sentence2)):
            if not isinstance(value, str):
                reject(record, name, f"must be text, got {type(value).__name__} {quoted(value)}")
            elif not value.strip():
                reject(record, name, "is empty" if not value else "is only whitespace")
            else:
                sentences.append(value.strip())
        if record.label is UNLABELLED:
            label = UNLABELLED_VALUE
            if split != "test":
                reject(record, record.columns.label, f"is missing; only the test split may be unlabelled, not {split}")
                continue
        else:
            label = _label(record.label)
            if label is None:
                reject(record, record.columns.label, f"must be 0 or 1, got {quoted(record.label)}")
                continue
        if len(sentences) == 2:
            pairs.append(CheckedPair(sentences[0], sentences[1], label, record.file, record.line, record.row))
    return pairs, bad


def find_duplicates(pairs: list[CheckedPair]) -> list[list[str]]:
    """Groups of origins holding the same pair, in order of first appearance."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for pair in pairs:
        groups[pair.key].append(pair.origin)
    return [origins for origins in groups.values() if len(origins) > 1]


def find_leakage(splits: dict[str, list[CheckedPair]]) -> list[Leak]:
    """Pairs of a later split (validation, then test) already present in an earlier one."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    leaks = []
    for split, pairs in splits.items():
        own: dict[tuple[str, str], tuple[str, str]] = {}
        for pair in pairs:
            if pair.key in seen:
                first_split, first_origin = seen[pair.key]
                leaks.append(Leak(pair, split, first_split, first_origin))
            own.setdefault(pair.key, (split, pair.origin))
        for key, value in own.items():
            seen.setdefault(key, value)
    return leaks


def _unit_interval(key: tuple[str, str]) -> float:
    digest = hashlib.sha256("\x1f".join(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def carve_validation(train: list[CheckedPair], fraction: float) -> tuple[list[CheckedPair], list[CheckedPair]]:
    """Split train by a hash of each pair, so the carve is stable and duplicates stay on one side."""
    kept, carved = [], []
    for pair in train:
        (carved if _unit_interval(pair.key) < fraction else kept).append(pair)
    return kept, carved


def fingerprint(splits: dict[str, list[CheckedPair]]) -> str:
    """sha256 of the accepted content: each split's (label, sentence1, sentence2) rows, in any row order.

    Independent of file format and row order, so the same data re-exported gives the same fingerprint;
    any change to a sentence, a label or a split's membership changes it.
    """
    digest = hashlib.sha256()
    for split in sorted(splits):
        rows = sorted(json.dumps([p.label, p.sentence1, p.sentence2], ensure_ascii=False) for p in splits[split])
        digest.update(json.dumps([split, rows], ensure_ascii=False).encode())
    return f"sha256:{digest.hexdigest()}"
