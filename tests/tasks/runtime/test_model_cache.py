"""The shared model cache under concurrency: processes resolving one remote folder at once all get the complete
folder, it is downloaded once, and a lock left by a killed process does not block the next one."""

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.runtime.models import COMPLETE, cache_dir, resolve
from tests.conftest import upload_folder

PROCESSES = 4
# Long enough that every process asks before the first download ends, as concurrent DAG tasks do.
DOWNLOAD_SECONDS = 1.0


def _model_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "saved_model" / "variables").mkdir(parents=True)
    for index in range(20):
        (folder / "saved_model" / "variables" / f"part-{index}").write_bytes(os.urandom(4096))
    (folder / "config.json").write_text('{"model_type": "bert"}')
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    """The model's files and their bytes (the cache's completion marker aside)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != COMPLETE)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def _count_downloads(monkeypatch, filesystem: type, counter: Path) -> None:
    """Every ``get`` on ``filesystem`` appends a line to ``counter`` and is slowed down by DOWNLOAD_SECONDS."""

    def note() -> None:
        with counter.open("a") as handle:
            handle.write(f"{os.getpid()}\n")

    if asyncio.iscoroutinefunction(getattr(filesystem, "_get", None)):
        original = filesystem._get

        async def slow_get(self, *args, **kwargs):
            note()
            await asyncio.sleep(DOWNLOAD_SECONDS)
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(filesystem, "_get", slow_get)
    else:
        original_sync = filesystem.get

        def slow_sync_get(self, *args, **kwargs):
            note()
            time.sleep(DOWNLOAD_SECONDS)
            return original_sync(self, *args, **kwargs)

        monkeypatch.setattr(filesystem, "get", slow_sync_get)


def _resolve_then_read(uri: str, barrier, answers) -> None:
    barrier.wait()
    try:
        folder = resolve(uri)
        answers.put(("ok", str(folder), _files(folder)))
    except Exception as error:  # the test reports what each process saw
        answers.put(("error", repr(error), {}))


def _resolve_concurrently(uri: str) -> list[tuple]:
    context = multiprocessing.get_context("fork")
    barrier, answers = context.Barrier(PROCESSES), context.Queue()
    workers = [context.Process(target=_resolve_then_read, args=(uri, barrier, answers)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    results = [answers.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return results


def _assert_one_complete_download(results: list[tuple], expected: dict[str, bytes], counter: Path) -> None:
    errors = [detail for outcome, detail, _ in results if outcome != "ok"]
    assert not errors
    assert len({folder for _, folder, _ in results}) == 1
    assert all(files == expected for _, _, files in results), "a process saw a half or deleted folder"
    assert _files(Path(results[0][1])) == expected
    assert len(counter.read_text().split()) == 1, "the folder was downloaded more than once"


def test_concurrent_resolves_of_one_local_uri_download_it_once(tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileSystem

    source, counter = _model_folder(tmp_path), tmp_path / "downloads"
    _count_downloads(monkeypatch, LocalFileSystem, counter)
    results = _resolve_concurrently(source.as_uri())
    _assert_one_complete_download(results, _files(source), counter)


def test_concurrent_resolves_of_one_s3_folder_download_it_once(tmp_path, monkeypatch, s3):
    from s3fs import S3FileSystem

    source, counter = _model_folder(tmp_path), tmp_path / "downloads"
    uri = upload_folder(s3["client"], source, s3["bucket"], "models/shared")
    _count_downloads(monkeypatch, S3FileSystem, counter)
    results = _resolve_concurrently(uri)
    _assert_one_complete_download(results, _files(source), counter)


_HOLD_LOCK = """
import sys, time
from tasks.runtime.models import cache_entry, cache_lock
with cache_lock(cache_entry(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_a_lock_held_by_a_killed_process_is_recovered(tmp_path):
    """flock belongs to the holder's open file: the kernel releases it when the holder dies, however it died."""
    source = _model_folder(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, source.as_uri()], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        folder = resolve(source.as_uri())
        assert time.monotonic() - started < 10
        assert _files(folder) == _files(source)
    finally:
        holder.kill()
        holder.wait()


def test_an_interrupted_download_leaves_only_a_temp_sibling(tmp_path, monkeypatch):
    """A download that fails leaves no target and no partial folder where a reader would look."""
    from fsspec.implementations.local import LocalFileSystem

    from tasks.errors import ModelError

    source = _model_folder(tmp_path)

    def broken_get(self, *args, **kwargs):
        raise OSError("connection reset")

    with monkeypatch.context() as patch:
        patch.setattr(LocalFileSystem, "get", broken_get)
        with pytest.raises(ModelError, match="cannot download: connection reset"):
            resolve(source.as_uri())
    assert [p.name for p in (cache_dir() / "models").glob("*") if not p.name.endswith(".lock")] == []
    assert _files(resolve(source.as_uri())) == _files(source)
