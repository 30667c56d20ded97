"""The errors a step reports to its caller.

Every failure a user can cause or fix is one of these; the CLI prints its message and exits non-zero
without a traceback. Anything else is a bug and keeps its traceback (exit 1). A bad flag exits 2 and bad
data 3: retrying cannot help, so an orchestrator fails those at once and retries the rest.

    TaskError
    ├── ConfigError        a flag or hyper-parameter is invalid
    ├── DataError
    │   ├── SourceError    a data source cannot be found or read
    │   ├── SchemaError    a data file lacks a required column or has an unknown format
    │   ├── BadRowsError   rows fail validation (label, empty sentence, malformed line)
    │   ├── LeakageError   the same pair appears in two splits
    │   └── RegistryError  the registry file is not a model registry (not SQLite, or another schema)
    ├── ModelError         a model or tokenizer cannot be resolved or loaded
    ├── EndpointError      the local endpoint cannot start or be reached, or refused a model
    └── ConcurrentUpdateError  other writers changed a shared object (the registry on S3) at every attempt
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class TaskError(Exception):
    """A step failed for a reason the user can act on."""

    exit_code = 1


class ConfigError(TaskError):
    """A flag, hyper-parameter or environment setting is invalid."""

    exit_code = 2


class DataError(TaskError):
    """The input data cannot be used."""

    exit_code = 3


class SourceError(DataError):
    """A data source cannot be found, listed or read (perhaps for a while: a network or permission fault)."""

    exit_code = 1


class SchemaError(DataError):
    """A data file lacks a required column, or its format is not one the stager reads."""


@dataclass(frozen=True)
class BadRow:
    """One rejected row: where it is and what is wrong with it."""

    file: str
    line: int | None
    field: str
    reason: str
    row: int | None = None

    @property
    def location(self) -> str:
        if self.line is not None:
            return f"{self.file}:{self.line}"
        if self.row is not None:
            return f"{self.file}: row {self.row}"
        return self.file

    def __str__(self) -> str:
        return f"{self.location}: field {self.field!r}: {self.reason}"

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "row": self.row, "field": self.field, "reason": self.reason}


class BadRowsError(DataError):
    """Rows failed validation and ``--on-bad-rows fail`` is in force."""

    shown = 20

    def __init__(self, bad_rows: list[BadRow]):
        self.bad_rows = bad_rows
        files = sorted({row.file for row in bad_rows})
        lines = "\n".join(f"  {row}" for row in bad_rows[: self.shown])
        more = f"\n  ... and {len(bad_rows) - self.shown} more" if len(bad_rows) > self.shown else ""
        super().__init__(
            f"{len(bad_rows)} bad row(s) in {len(files)} file(s):\n{lines}{more}\n"
            "Fix the data, or pass --on-bad-rows skip to drop these rows and list them in manifest.json."
        )


class LeakageError(DataError):
    """A sentence pair appears in more than one split, which would inflate evaluation scores."""


class RegistryError(DataError):
    """The registry file is not a model registry: not a SQLite database, damaged, or another schema."""


class ModelError(TaskError):
    """A model or tokenizer cannot be found, downloaded or loaded."""


class EndpointError(TaskError):
    """The local endpoint cannot start or be reached, or it refused a model (and kept serving the old one)."""


class ConcurrentUpdateError(TaskError):
    """Other writers changed a shared object (the registry on S3) between every download and upload; a retry
    later can succeed."""


def describe(error: BaseException) -> str:
    """``Type: message`` on one line; of a long multi-line message (TensorFlow's, with a Python stack
    inside), the first and the last line, which name the failure and its cause."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
    return f"{type(error).__name__}: {text}" if lines else type(error).__name__


# The exit codes a retry cannot change, and what they mean: every platform fails these at once.
NOT_RETRYABLE = {ConfigError.exit_code: "a bad flag", DataError.exit_code: "bad data"}
_EXIT_CODE_IN_REASON = re.compile(r"\(exit (\d+)\): ")


def failure_reason(error: BaseException) -> str:
    """``Class (exit N): message``: a failure as text, for a platform that passes on only text (a SageMaker
    job's FailureReason), with the exit code that tells whether a retry can help."""
    return f"{type(error).__name__} (exit {getattr(error, 'exit_code', 1)}): {error}"


def exit_code_in(reason: str) -> int | None:
    """The exit code a ``failure_reason`` names, or None for any other text."""
    found = _EXIT_CODE_IN_REASON.search(reason)
    return int(found.group(1)) if found else None
