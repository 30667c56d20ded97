"""Steps that read and write the artefact store directly: ``--data``, ``--evaluation``, ``--output`` and
``--registry`` may be ``s3://`` URIs (any fsspec URL; the registry only ``s3://``).

A Kubernetes pod without a shared volume works this way, with its service account's credentials (EKS IRSA or
Pod Identity; no keys in the pod spec). Input folders are downloaded into the local cache first
(``tasks.runtime.models.resolve``, keyed by their contents); the step writes its output into a local folder, uploaded to the
URI once the step succeeded. The caller names a new output URI for each try, so a reader never sees half an
upload. Of a multi-worker training only the chief uploads: the other workers write nothing to keep.

The registry is one object that many runs update (backfills run several at a time), so it is edited with
optimistic concurrency (``edit_remote_file``): downloaded with its ETag, edited locally, and uploaded only if
the object is still that version (S3 conditional writes: ``If-Match``, or ``If-None-Match: *`` when it did
not exist). A writer that lost the race downloads the newer object and redoes its edit, so no update is lost.
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from tasks.errors import ConcurrentUpdateError, ConfigError

log = logging.getLogger(__name__)

INPUT_FOLDERS = ("data", "evaluation")
# Eight writers racing for the registry (tests/tasks/endpoint/test_registry_s3.py) needed at most 4 attempts;
# a writer that loses all 10 fails retryably after at most 11 s of pauses (full jitter, doubling, capped at 2 s).
UPDATE_ATTEMPTS = 10
FIRST_PAUSE = 0.05
MAX_PAUSE = 2.0
# The stores whose writes can be conditional on the version read: where a shared file (the registry) may live.
CONDITIONAL_WRITES = "s3://"
# What S3 answers a conditional PutObject whose condition no longer holds.
_CONFLICTS = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"})
T = TypeVar("T")


def is_remote(location: str) -> bool:
    return "://" in location


def _fs(uri: str):
    import fsspec

    return fsspec.core.url_to_fs(uri)


@contextmanager
def local_arguments(args) -> Iterator[object]:
    """``args`` with remote inputs downloaded and remote outputs redirected to local folders; the outputs are
    uploaded when the block succeeds, and nothing is uploaded when it fails."""
    from tasks.runtime.models import resolve
    from tasks.training.distributed import cluster_from_environment

    for name in INPUT_FOLDERS:
        value = getattr(args, name, "")
        if value and is_remote(value):
            setattr(args, name, str(resolve(value)))
    output = getattr(args, "output", "")
    if getattr(args, "OUTPUT_IN_PLACE", False):
        output = ""  # the step reads and writes its remote output folder itself
    with tempfile.TemporaryDirectory(prefix="tasks-remote-") as scratch:
        if output and is_remote(output):
            args.output = f"{scratch}/output"
        yield args
        if output and is_remote(output) and cluster_from_environment().is_chief:
            fs, path = _fs(output)
            fs.put(f"{args.output}/", f"{path.rstrip('/')}/", recursive=True)
            log.info("uploaded %s to %s", args.output, output)


def edit_remote_file(uri: str, edit: Callable[[Path], T], *, writes: bool) -> T:
    """``edit(local copy of the object at uri)``; when it ``writes`` and changed the copy, the copy replaces
    the object only if the object is still the version downloaded. Otherwise the newer object is downloaded
    and ``edit`` runs again on it, up to UPDATE_ATTEMPTS times with jittered back-off; then
    ConcurrentUpdateError (retryable). ``edit`` must be safe to redo on a fresh copy: only it is redone.

    :param uri: ``s3://bucket/key``; the object need not exist (``edit`` then gets a path with no file).
    :param edit: reads or changes the local file; its result is returned.
    :param writes: False for a lookup: nothing is uploaded, whatever ``edit`` did to the copy.
    """
    if not uri.startswith(CONDITIONAL_WRITES):
        raise ConfigError(
            f"{uri}: a shared file is updated with conditional writes, which only {CONDITIONAL_WRITES} has"
        )
    fs, path = _fs(uri)
    bucket, key, _ = fs.split_path(path)
    with tempfile.TemporaryDirectory(prefix="tasks-remote-") as scratch:
        local = Path(scratch) / Path(key).name
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            local.unlink(missing_ok=True)
            original, etag = _download(fs, bucket, key)
            if original is not None:
                local.write_bytes(original)
            result = edit(local)
            edited = local.read_bytes() if local.exists() else None
            if not writes or edited in (None, original):
                return result
            try:
                fs.call_s3("put_object", Bucket=bucket, Key=key, Body=edited, **_unchanged_since(etag))
            except Exception as error:
                if not _conflict(error):
                    raise
                log.info("%s changed since attempt %d read it: redoing the edit on the newer object", uri, attempt)
                if attempt < UPDATE_ATTEMPTS:
                    _back_off(attempt)
                continue
            finally:
                fs.invalidate_cache(path)
            log.info("updated %s", uri)
            return result
    raise ConcurrentUpdateError(
        f"{uri}: other writers changed it during each of {UPDATE_ATTEMPTS} attempts to update it; nothing of"
        " this step was written. A retry of the step can succeed."
    )


def _download(fs, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """The object's bytes and ETag from one GET, so the two belong to the same version; (None, None) when
    there is no such object."""

    async def get() -> tuple[bytes | None, str | None]:
        try:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None, None
        async with response["Body"] as body:
            return await body.read(), response["ETag"]

    from fsspec.asyn import sync

    return sync(fs.loop, get)


def _unchanged_since(etag: str | None) -> dict:
    """The PutObject condition that the object is still the version read (or still absent)."""
    return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}


def _conflict(error: BaseException) -> bool:
    """Whether S3 refused a conditional write because the object changed (412), another conditional write
    of it was under way (409), or it was deleted since it was read (404). s3fs translates botocore's
    ClientError into an OSError and keeps the original as the cause."""
    answer = getattr(error.__cause__ if error.__cause__ is not None else error, "response", None) or {}
    return answer.get("Error", {}).get("Code") in _CONFLICTS


def _back_off(attempt: int) -> None:
    """Full jitter (AWS's advice for contending clients): writers that collided do not collide again in step."""
    time.sleep(random.uniform(0, min(MAX_PAUSE, FIRST_PAUSE * 2**attempt)))
