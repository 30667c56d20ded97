"""Resolving a model or tokenizer to a local folder, and loading a BERT classifier from it in TensorFlow.

A source is a local folder, a remote fsspec URI (``s3://bucket/prefix/`` or a SageMaker
``s3://.../model.tar.gz``), or a Hugging Face hub id (``bert-base-uncased``, ``org/name``). Everything is
first made local, then loaded by one code path.

Most checkpoints on the hub today hold only PyTorch weights in ``model.safetensors``. transformers
4.55-4.57 cannot load those into a TensorFlow model: it hands a ``safe_open`` handle to a function that
iterates it, and ``safe_open`` is not iterable (huggingface/transformers#40028). ``load_classifier``
reads such files itself through a mapping over the same handle and passes that mapping to transformers'
own PyTorch-to-TensorFlow weight converter, so names, transposes and the missing-head report are
transformers' and only the broken hand-over is replaced.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tasks.errors import ModelError
from tasks.runtime import layout
from tasks.serving.contract import LABELS

log = logging.getLogger(__name__)

CACHE_ENV = "TASKS_CACHE_DIR"
# The marker of a complete cache entry; its time stamp is when the entry was last resolved.
COMPLETE = ".complete"
# How long a process waits for another's download of the same model before giving up; a download is minutes.
LOCK_WAIT_S = 3600.0
_HEARTBEAT_S = 30.0
_POLL_S = 0.2
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")
_HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "tf_model.h5", "tf_model-*.h5"]
# The classifier head is new when fine-tuning starts from a base checkpoint; nothing else may be missing.
_HEAD_WEIGHTS = re.compile(r"(^|/)classifier(/|\.|$)")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "nlp-workflow"))


def resolve(source: str) -> Path:
    """A local folder with the files of ``source`` (downloaded once into the cache when remote)."""
    path = Path(source).expanduser()
    if path.is_dir():
        archive = path / "model.tar.gz"
        if archive.is_file() and not any((path / name).exists() for name in ("saved_model", "config.json")):
            # A SageMaker job's model artefact, mounted as it sits in S3: unpacked once into the cache.
            stat = archive.stat()
            return _download(archive.absolute().as_uri(), version=f"{stat.st_size}-{stat.st_mtime_ns}")
        return path
    if "://" in source:
        return _download(source)
    if path.exists():
        raise ModelError(f"{source}: expected a folder with config.json and weights, got a file")
    if source.startswith((".", "/", "~")) or not _HUB_ID.match(source):
        raise ModelError(f"{source}: no such folder")
    return _from_hub(source)


def cache_entry(uri: str, version: str = "") -> Path:
    """The cache folder that holds (or will hold) the contents of ``uri``."""
    return _locate(uri, version)[2]


def _locate(uri: str, version: str) -> tuple[object, str, Path]:
    import fsspec

    try:
        fs, remote = fsspec.core.url_to_fs(uri)
        version = version or _contents_version(fs, remote)
    except Exception as error:  # botocore and aiohttp errors alike
        raise ModelError(f"{uri}: cannot list: {error}") from error
    return fs, remote, cache_dir() / "models" / hashlib.sha256(f"{uri}{version}".encode()).hexdigest()[:16]


def lock_file(entry: Path) -> Path:
    return entry.parent / f".{entry.name}.lock"


def last_used(entry: Path) -> float | None:
    """When ``entry`` was last resolved (the time stamp of its ``.complete`` marker), or None when incomplete."""
    try:
        return (entry / COMPLETE).stat().st_mtime
    except FileNotFoundError:
        return None


@contextmanager
def cache_lock(entry: Path, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold the exclusive lock of cache ``entry``: one process at a time downloads, checks or removes it.

    The lock is ``flock`` on a file beside the entry. The kernel releases it when its holder's file is closed,
    and so when the holder dies however it died: a lock is never stale. Housekeeping may delete the lock file
    of an entry it removes, while holding it; a process that was waiting on that file then locks a file
    nobody else can open, so it checks that the file it locked is still the one on disk, and else starts over.

    :param wait: seconds to wait for another holder; then ``TimeoutError`` (0: try once).
    """
    path = lock_file(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    heartbeat = started + _HEARTBEAT_S
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - started
                    if waited >= wait:
                        raise TimeoutError(f"{path} is held by another process (waited {waited:.0f} s)") from None
                    if time.monotonic() >= heartbeat:
                        log.info("waiting for %s, held by another process, for %.0f s", path, waited)
                        heartbeat += _HEARTBEAT_S
                    time.sleep(min(_POLL_S, max(wait - waited, 0)))
            if _is_on_disk(handle, path):
                break
        except BaseException:
            os.close(handle)
            raise
        os.close(handle)
    try:
        yield
    finally:
        os.close(handle)


def _is_on_disk(handle: int, path: Path) -> bool:
    try:
        on_disk = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(handle)
    return (opened.st_dev, opened.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _download(uri: str, version: str = "") -> Path:
    """A local copy of ``uri`` in the cache; ``version`` tells apart changing contents at one address (by
    default, the size and ETag or time of every object there: a replaced artefact is downloaded again).

    Processes resolving one ``uri`` at once (concurrent DAG runs, backfills) take turns under the entry's lock:
    the first downloads into a temporary sibling and renames it into place complete, the others find it
    there. A complete entry is never replaced, so a process reading it keeps reading the same bytes."""
    fs, remote, target = _locate(uri, version)
    try:
        with cache_lock(target):
            if last_used(target) is None:
                _fetch(fs, remote, uri, target)
            # The time stamp housekeeping reads: entries nobody resolved for a while are removed.
            (target / COMPLETE).touch()
    except TimeoutError as error:
        raise ModelError(
            f"{uri}: another process has been downloading it into {target} for too long: {error}"
        ) from error
    return target


def _fetch(fs, remote: str, uri: str, target: Path) -> None:
    work = layout.work_sibling(target)
    try:
        if remote.endswith((".tar.gz", ".tgz")):
            work.mkdir(parents=True)
            with fs.open(remote, "rb") as handle, tarfile.open(fileobj=handle, mode="r:gz") as archive:
                archive.extractall(work, filter="data")
        else:
            if not fs.isdir(remote):
                raise ModelError(f"{uri}: no such folder or model.tar.gz")
            fs.get(remote.rstrip("/") + "/", str(work), recursive=True)
    except ModelError:
        raise
    except Exception as error:  # botocore, aiohttp and tarfile errors alike
        shutil.rmtree(work, ignore_errors=True)
        raise ModelError(f"{uri}: cannot download: {error}") from error
    (work / COMPLETE).touch()
    if target.exists():
        # Incomplete, so nobody reads it (a reader needs the marker): left by code that predates the lock.
        stale = layout.old_sibling(target)
        os.rename(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.rename(work, target)
    log.info("downloaded %s to %s", uri, target)


def _contents_version(fs, remote: str) -> str:
    if not fs.exists(remote):
        return ""
    objects = fs.find(remote, detail=True) if fs.isdir(remote) else {remote: fs.info(remote)}
    stamps = sorted(
        (name, info.get("size"), str(info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""))
        for name, info in objects.items()
    )
    return hashlib.sha256(json.dumps(stamps, default=str).encode()).hexdigest()[:16]


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except Exception as error:  # offline, 404, gated repo, network: all end the same way for the user
        raise ModelError(
            f"{repo_id!r} is not a local folder, and the Hugging Face hub could not provide it: {error}. "
            "Offline, pass a local folder or an s3:// copy of the model."
        ) from error


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    folder = resolve(source)
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise ModelError(f"{source}: cannot load a tokenizer from {folder}: {error}") from error


class SafetensorsWeights(Mapping):
    """The tensors of one or more ``.safetensors`` files as a read-only, lazily loaded name -> array mapping."""

    def __init__(self, handles):
        self._owner = {name: handle for handle in handles for name in handle.keys()}

    def __getitem__(self, name: str):
        return self._owner[name].get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._owner)

    def __len__(self) -> int:
        return len(self._owner)


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / shard for shard in shards]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def _is_pytorch_format(files: list[Path]) -> bool:
    from safetensors import safe_open

    with safe_open(files[0], framework="np") as handle:
        return (handle.metadata() or {}).get("format", "pt") == "pt"


def load_pytorch_safetensors(model, files: list[Path]) -> None:
    """Load PyTorch-layout safetensors into a TF transformers model, allowing only a missing classifier head."""
    from safetensors import safe_open
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    with ExitStack() as stack:
        weights = SafetensorsWeights([stack.enter_context(safe_open(file, framework="np")) for file in files])
        _, info = load_pytorch_state_dict_in_tf2_model(
            model, weights, allow_missing_keys=True, output_loading_info=True, skip_logger_warnings=True
        )
    missing = [name for name in info["missing_keys"] if not _HEAD_WEIGHTS.search(name)]
    if missing:
        raise ModelError(
            f"{files[0].parent}: the checkpoint lacks {len(missing)} weight(s) the model needs, e.g. "
            f"{', '.join(missing[:5])}; is it a BERT checkpoint of the same size as its config.json?"
        )
    if info["missing_keys"]:
        log.info("new classifier head (not in the checkpoint): %s", ", ".join(info["missing_keys"]))
    if info["unexpected_keys"]:
        log.info("checkpoint weights not used by the classifier: %s", ", ".join(sorted(info["unexpected_keys"])))


def load_classifier(source: str, num_labels: int = len(LABELS)):
    """A ``TFAutoModelForSequenceClassification`` from ``source``, with MRPC's label names."""
    from transformers import AutoConfig, TFAutoModelForSequenceClassification

    folder = resolve(source)
    if not (folder / "config.json").is_file():
        raise ModelError(f"{source}: cannot read the model's config.json: {folder} has none")
    try:
        config = AutoConfig.from_pretrained(
            folder,
            num_labels=num_labels,
            id2label=dict(enumerate(LABELS)),
            label2id={name: index for index, name in enumerate(LABELS)},
        )
    except (OSError, ValueError) as error:
        raise ModelError(f"{source}: cannot read the model's config.json in {folder}: {error}") from error

    safetensors_files = _safetensors_files(folder)
    if (folder / "tf_model.h5").is_file() or (safetensors_files and not _is_pytorch_format(safetensors_files)):
        return TFAutoModelForSequenceClassification.from_pretrained(folder, config=config)
    if safetensors_files:
        model = TFAutoModelForSequenceClassification.from_config(config)
        load_pytorch_safetensors(model, safetensors_files)
        log.info("loaded PyTorch safetensors weights of %s into %s", source, type(model).__name__)
        return model
    raise ModelError(
        f"{source}: {folder} has no TensorFlow (tf_model.h5) or safetensors weights; a pytorch_model.bin "
        "needs PyTorch to read: convert it to model.safetensors first."
    )
