"""The content digest of an artefact folder: what the registry records and what deploy and serve verify.

Every step seals its output when it is complete (``tasks.runtime.outputs.atomic_output``): the folder's
digest goes into ``.digest`` inside it. The digest covers every file but ``.digest`` itself and the cache's
``.complete`` marker, by relative path and SHA-256, so a copy of the folder (uploaded to S3, packed into a
SageMaker ``model.tar.gz``, downloaded into the cache) has the same digest as the original, and a changed,
added or removed file changes it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from tasks.errors import ModelError

DIGEST_FILE = ".digest"
PREFIX = "sha256:"
_NOT_CONTENT = frozenset({DIGEST_FILE, ".complete"})
_CHUNK = 1 << 20


def folder_digest(folder: str | os.PathLike) -> str:
    """``sha256:HEX`` of the folder's files (relative path and content), symlinks followed."""
    root = Path(folder)
    total = hashlib.sha256()
    files = sorted(
        path for path in root.rglob("*") if path.is_file() and path.relative_to(root).as_posix() not in _NOT_CONTENT
    )
    for path in files:
        content = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                content.update(chunk)
        total.update(f"{path.relative_to(root).as_posix()}\0{content.hexdigest()}\n".encode())
    return PREFIX + total.hexdigest()


def seal(folder: str | os.PathLike) -> str:
    """Record the folder's digest in its ``.digest`` file and return it."""
    digest = folder_digest(folder)
    (Path(folder) / DIGEST_FILE).write_text(digest + "\n")
    return digest


def sealed(folder: str | os.PathLike) -> str | None:
    """The digest recorded in the folder, or None when it was never sealed."""
    try:
        return (Path(folder) / DIGEST_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def verify(folder: str | os.PathLike, expected: str | None = None) -> str:
    """The folder's digest, once it equals ``expected`` (when given) and the one sealed in it (when sealed);
    ModelError naming the folder and both digests otherwise."""
    actual = folder_digest(folder)
    for name, wanted in (("expected", expected), (f"sealed in {DIGEST_FILE}", sealed(folder))):
        if wanted and wanted != actual:
            raise ModelError(
                f"{folder}: the content digest is {actual}, not the {name} {wanted}: the files changed after they"
                " were written; refusing to use them"
            )
    return actual
