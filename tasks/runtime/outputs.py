"""Writing a step's output folder so that a reader never sees half of it.

A step writes into a temporary sibling of its output folder and, once everything is written, seals it with
its content digest (``tasks.runtime.digest``) and renames it into place. A crashed or failed step leaves the previous output untouched. The train step keeps its
partial folder (named, not random) so that re-running the same command resumes from its checkpoints.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.runtime import digest, layout

log = logging.getLogger(__name__)


@contextmanager
def atomic_output(final: str | os.PathLike, *, resumable: bool = False) -> Iterator[Path]:
    """Yield a work folder that replaces ``final`` when the block succeeds.

    :param final: the output folder the caller asked for.
    :param resumable: keep the work folder after a failure, at a fixed name, so the next attempt can
        continue from what it holds (the train step's checkpoints). Otherwise it is removed.
    """
    final = Path(final).absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = layout.partial_sibling(final) if resumable else layout.work_sibling(final)
    work.mkdir(exist_ok=True)
    try:
        yield work
    except BaseException:
        if not resumable:
            shutil.rmtree(work, ignore_errors=True)
        raise
    digest.seal(work)
    publish(work, final)


def publish(work: Path, final: Path) -> None:
    """Move ``work`` into place as ``final``, replacing what was there."""
    if not final.exists():
        os.rename(work, final)
        return
    old = layout.old_sibling(final)
    try:
        os.rename(final, old)
    except OSError as error:
        # A folder the platform owns (SageMaker's /opt/ml/model, a mounted volume) cannot be renamed:
        # empty it and move the new content in instead.
        if error.errno not in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES):
            raise
        _replace_contents(work, final)
        return
    os.rename(work, final)
    shutil.rmtree(old, ignore_errors=True)


def _replace_contents(work: Path, final: Path) -> None:
    for entry in final.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in work.iterdir():
        shutil.move(str(entry), final / entry.name)
    work.rmdir()


def write_json(path: Path, payload: dict) -> None:
    """Write JSON with sorted keys and a trailing newline, so equal content gives equal bytes."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
