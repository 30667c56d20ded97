"""Finding a data set's split files and reading them into records, whatever the source and format.

Sources: ``hf://OWNER/NAME/CONFIG`` (a Hugging Face hub data set, loaded with ``datasets``), or any path
fsspec opens: a local folder or file, ``s3://bucket/prefix``. In a folder, a file's name says its split:
``train``, ``dev``/``validation``, ``test`` (also the MSR corpus' ``msr_paraphrase_train``), optionally
followed by a shard suffix (``train-00000-of-00002.parquet``). A single file is the train split.

Formats, by extension (``.gz``/``.bz2``/... compression is undone on the fly):
GLUE TSV and the MSR paraphrase ``.txt`` (``Quality  #1 ID  #2 ID  #1 String  #2 String``, tab-separated,
quotes are plain characters, optional BOM), CSV, JSON lines, and Parquet with the columns
``sentence1, sentence2, label``.

An error never quotes a file that is not a data set (a source may name any file the step can read): a file
whose first line (or schema) names none of the columns the format expects is named with what was expected,
not shown. Values quoted from a data file's rows and header are cut to ``QUOTED_CHARACTERS``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tasks.data.sources import check_source
from tasks.errors import SchemaError, SourceError

log = logging.getLogger(__name__)

HF_SCHEME = "hf://"
SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "dev": "validation",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "test": "test",
}
_SPLIT_NAME = re.compile(r"^(?:msr_paraphrase_)?(train|dev|validation|valid|val|test)(?:[-_.].*)?$", re.IGNORECASE)
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")
QUOTED_CHARACTERS = 80
FORMATS = {
    ".tsv": "glue_tsv",
    ".txt": "glue_tsv",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}


@dataclass(frozen=True)
class Columns:
    """What a format calls the three fields, so messages use the names the user sees in the file."""

    sentence1: str
    sentence2: str
    label: str


GLUE_COLUMNS = Columns("#1 String", "#2 String", "Quality")
GLUE_HEADER = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
_GLUE_NAMES = (*GLUE_HEADER, "index")  # any of them in a first line: a GLUE/MSR file, however broken
PLAIN_COLUMNS = Columns("sentence1", "sentence2", "label")
UNLABELLED = object()
"""The label of a row from a split published without labels (GLUE's test.tsv, the hub's label -1)."""


@dataclass(frozen=True)
class Record:
    """One row as read, before validation; values are whatever the file held."""

    file: str
    line: int | None
    row: int | None
    sentence1: object
    sentence2: object
    label: object
    columns: Columns
    problem: tuple[str, str] | None = None  # (field, reason) when the row could not even be split


@dataclass(frozen=True)
class DataFile:
    uri: str
    split: str
    format: str


def quoted(value: object) -> str:
    """``repr(value)``, of a long text only the first QUOTED_CHARACTERS and its length: a message names a
    value, it does not carry a data set."""
    if isinstance(value, str) and len(value) > QUOTED_CHARACTERS:
        return f"{value[:QUOTED_CHARACTERS]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= QUOTED_CHARACTERS else f"{text[:QUOTED_CHARACTERS]}... ({len(text)} characters)"


def _stem_and_extension(path: str) -> tuple[str, str]:
    """A file name without its compression suffix, lower-cased, as (stem, extension); extension '' if none."""
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in _COMPRESSIONS:
        name = name.removesuffix(suffix)
    stem, dot, extension = name.rpartition(".")
    return (stem, f".{extension}") if dot else (name, "")


def split_of(name: str) -> str | None:
    match = _SPLIT_NAME.match(_stem_and_extension(name)[0])
    return _SPLIT_ALIASES[match.group(1).lower()] if match else None


def format_of(uri: str) -> str:
    extension = _stem_and_extension(uri)[1]
    if extension not in FORMATS:
        raise SchemaError(
            f"{uri}: unsupported format {extension or '(no extension)'!r}; supported: {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[extension]


def discover(source: str) -> list[DataFile]:
    """The split files of a local or fsspec source (not ``hf://``), sorted by split then name."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(source)
        is_dir = fs.isdir(path)
        exists = is_dir or fs.isfile(path)
    except Exception as error:  # fsspec backends raise their own error types (botocore, aiohttp, OSError)
        raise SourceError(f"{source}: cannot open the data source: {error}") from error
    if not exists:
        raise SourceError(f"{source}: no such file or folder")
    if not is_dir:
        return [DataFile(source, split_of(path) or "train", format_of(source))]

    prefix = source.rstrip("/")
    files = []
    for entry in sorted(fs.ls(path, detail=False)):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        split = split_of(name)
        if split is None or fs.isdir(entry):
            log.info("ignoring %s/%s (its name names no split)", prefix, name)
            continue
        files.append(DataFile(f"{prefix}/{name}", split, format_of(name)))
    if not any(file.split == "train" for file in files):
        raise SourceError(
            f"{source}: no train split found; expected files named train.*, dev.* or validation.*, test.* "
            f"(or msr_paraphrase_train.txt), found: {', '.join(sorted(fs.ls(path, detail=False))) or 'nothing'}"
        )
    return sorted(files, key=lambda file: (SPLITS.index(file.split), file.uri))


def read(file: DataFile) -> Iterator[Record]:
    import fsspec

    reader = _READERS[file.format]
    try:
        if file.format == "parquet":
            with fsspec.open(file.uri, "rb", compression="infer") as handle:
                yield from reader(file.uri, handle)
        else:
            with fsspec.open(file.uri, "rt", encoding="utf-8-sig", newline="", compression="infer") as handle:
                yield from reader(file.uri, handle)
    except UnicodeDecodeError as error:
        raise SourceError(f"{file.uri}: not UTF-8 text ({error.reason} at byte {error.start})") from error


def _glue_tsv(uri: str, handle: io.TextIOBase) -> Iterator[Record]:
    header = handle.readline().rstrip("\r\n").split("\t")
    # GLUE's test.tsv has "index" where the labelled files have "Quality": a split published without labels.
    labelled = "Quality" in header or "index" not in header
    required = ["#1 String", "#2 String"] + (["Quality"] if labelled else ["index"])
    missing = [name for name in required if name not in header]
    if missing:
        expected = "\\t".join(GLUE_HEADER)
        found = (
            f"found {quoted(header)}"
            if any(name in header for name in _GLUE_NAMES)
            else "its first line names none of them (not shown: it may not be a data file)"
        )
        raise SchemaError(
            f"{uri}:1: header lacks column(s) {', '.join(map(repr, missing))}; expected a GLUE/MSR paraphrase header, "
            f"'{expected}'; {found}"
        )
    position = {name: header.index(name) for name in required}
    for number, line in enumerate(handle, start=2):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            problem = ("(line)", f"has {len(fields)} tab-separated fields, the header has {len(header)}")
            yield Record(uri, number, None, None, None, None, GLUE_COLUMNS, problem)
            continue
        label = fields[position["Quality"]] if labelled else UNLABELLED
        yield Record(
            uri, number, None, fields[position["#1 String"]], fields[position["#2 String"]], label, GLUE_COLUMNS
        )


def _require_columns(uri: str, found: list[str], where: str) -> None:
    """The columns a CSV, JSON lines or Parquet file must have; what it has is listed only when it has one of
    them (a file naming none may be anything, and is not quoted)."""
    required = ("sentence1", "sentence2", "label")
    missing = [name for name in required if name not in found]
    if missing:
        listed = (
            ", ".join(map(quoted, found))
            if len(missing) < len(required)
            else "none of them (what it has is not shown: it may not be a data file)"
        )
        raise SchemaError(
            f"{uri}{where}: missing column(s) {', '.join(map(repr, missing))}; required: 'sentence1', 'sentence2', "
            f"'label', found: {listed}"
        )


def _csv(uri: str, handle: io.TextIOBase) -> Iterator[Record]:
    reader = csv.DictReader(handle)
    try:
        _require_columns(uri, list(reader.fieldnames or []), ":1")
        for row in reader:
            if None in row or None in row.values():
                problem = ("(line)", f"has a different number of fields than the header ({len(reader.fieldnames)})")
                yield Record(uri, reader.line_num, None, None, None, None, PLAIN_COLUMNS, problem)
                continue
            yield Record(uri, reader.line_num, None, row["sentence1"], row["sentence2"], row["label"], PLAIN_COLUMNS)
    except csv.Error as error:  # its messages name the rule broken, never the text
        raise SchemaError(f"{uri}: not a readable CSV file after line {reader.line_num} ({error})") from None


def _jsonl(uri: str, handle: io.TextIOBase) -> Iterator[Record]:
    checked = False
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            yield Record(uri, number, None, None, None, None, PLAIN_COLUMNS, ("(json)", f"invalid JSON: {error}"))
            continue
        if not isinstance(row, dict):
            problem = ("(json)", f"expected a JSON object, got {type(row).__name__}")
            yield Record(uri, number, None, None, None, None, PLAIN_COLUMNS, problem)
            continue
        if not checked:
            _require_columns(uri, list(row), f":{number}")
            checked = True
        missing = object()
        values = [row.get(name, missing) for name in ("sentence1", "sentence2", "label")]
        absent = [
            name for name, value in zip(("sentence1", "sentence2", "label"), values, strict=True) if value is missing
        ]
        if absent:
            yield Record(uri, number, None, None, None, None, PLAIN_COLUMNS, (absent[0], "missing"))
            continue
        yield Record(uri, number, None, *values, PLAIN_COLUMNS)


def _parquet(uri: str, handle) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(handle)
    except Exception as error:  # pyarrow raises ArrowInvalid and friends; its messages describe the footer
        raise SchemaError(f"{uri}: cannot read Parquet, expected a Parquet file: {quoted(str(error))}") from error
    _require_columns(uri, table.column_names, "")
    columns = table.select(["sentence1", "sentence2", "label"]).to_pydict()
    for index, (s1, s2, label) in enumerate(
        zip(columns["sentence1"], columns["sentence2"], columns["label"], strict=True)
    ):
        yield Record(uri, None, index + 1, s1, s2, label, PLAIN_COLUMNS)


_READERS = {"glue_tsv": _glue_tsv, "csv": _csv, "jsonl": _jsonl, "parquet": _parquet}


def read_hub(source: str) -> dict[str, list[Record]]:
    """Load ``hf://OWNER/NAME/CONFIG`` with ``datasets`` (the hub's label -1 marks an unlabelled split)."""
    parts = source.removeprefix(HF_SCHEME).strip("/").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise SourceError(f"{source}: expected hf://OWNER/NAME or hf://OWNER/NAME/CONFIG, e.g. hf://nyu-mll/glue/mrpc")
    repo, config = "/".join(parts[:2]), (parts[2] if len(parts) == 3 else None)
    import datasets

    try:
        # hf://datasets/ makes datasets look on the hub only: given OWNER/NAME alone it would first read a folder of
        # that name in the working directory, a way around the allow-list of sources.
        loaded = datasets.load_dataset(f"hf://datasets/{repo}", config)
    except Exception as error:  # the hub client raises many types: offline, 404, gated, network
        raise SourceError(
            f"{source}: cannot load {repo!r} (config {config!r}) from the Hugging Face hub: {error}. "
            "Offline, stage from a local folder or s3:// copy of the data instead."
        ) from error
    records: dict[str, list[Record]] = {}
    for name, split in loaded.items():
        canonical = _SPLIT_ALIASES.get(name, name)
        if canonical not in SPLITS:
            log.info("ignoring split %r of %s", name, source)
            continue
        _require_columns(f"{source}[{name}]", split.column_names, "")
        uri = f"{source}[{name}]"
        records[canonical] = [
            Record(
                uri,
                None,
                index + 1,
                row["sentence1"],
                row["sentence2"],
                UNLABELLED if row["label"] == -1 else row["label"],
                PLAIN_COLUMNS,
            )
            for index, row in enumerate(split.select_columns(["sentence1", "sentence2", "label"]))
        ]
    if "train" not in records:
        raise SourceError(f"{source}: the data set has no train split (splits: {', '.join(loaded)})")
    return records


def read_source(source: str, allowed: Sequence[str] = ()) -> tuple[dict[str, list[Record]], dict[str, list[str]]]:
    """Every record of a source by split, and the files each split came from; nothing is read unless the source
    and each file found in it lie under one of the ``allowed`` prefixes (none: any)."""
    check_source(source, allowed)
    if source.startswith(HF_SCHEME):
        records = read_hub(source)
        return records, {split: [f"{source}[{split}]"] for split in records}
    records: dict[str, list[Record]] = {}
    files: dict[str, list[str]] = {}
    found = discover(source)
    for file in found:
        check_source(file.uri, allowed, what="the file")
    for file in found:
        records.setdefault(file.split, []).extend(read(file))
        files.setdefault(file.split, []).append(file.uri)
    return records, files
