"""``python -m tasks gc``: remove what no registry entry needs and nobody wrote or used for N days.

What it looks at, for each DAG_ID of ``--dags`` only, and what it removes once older than ``--older-than-days``
(by its newest file)::

    ROOT/DAG_ID/RUN_KEY/STEP/TRY        an artefact (a try folder, or an S3 upload), with TRY.command.json (whose
                                        time counts too: reusing a try refreshes it); removed unless a registry
                                        entry names it or another folder of its run
    ROOT/DAG_ID/RUN_KEY/STEP/TRY.command.json  the record of a try that failed before writing TRY
    ROOT/DAG_ID/RUN_KEY/STEP            the same, in the one-folder-per-run layout (STEP holds files itself)
    ROOT/.../.NAME.tmp-* .old-* .partial  abandoned temporary siblings of an output being written
    WORKSPACE/DAG_ID/RUN_KEY            a remote root's local workspace of one run
    CACHE/models/ENTRY                  a downloaded model nobody resolved for N days and nobody holds locked

A registry entry keeps its whole run folder (its model, the FP32 model it was quantised from, the staged data
and the evaluation it was registered with): the lineage the entry cites stays readable. Never touched: files
at ROOT's top (the registry), the folders of DAGs not named by ``--dags`` (the DAGs of one root keep their
models in different registries: EKS in ROOT/registry.sqlite, SageMaker in its model package group, so gc
given one registry must not judge the others' models), a DAG's folders that are not run keys (the local
endpoint's state folder, ``ROOT/DAG_ID/endpoint``), and anything newer than N days.

Every registry is read, read-only, before anything is looked at: one that is missing or cannot be read stops
gc with an error, since without it every model it names would look unreferenced.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from tasks.config import GcArguments
from tasks.errors import ConfigError
from tasks.runtime import layout, models
from tasks.runtime.layout import COMMAND_SUFFIX, LATEST, REGISTRY_FILE

log = logging.getLogger(__name__)

_DAY_S = 86400


@dataclass(frozen=True)
class Removal:
    """One thing gc removes: a folder (or file) with its size, its age and why it goes."""

    location: str
    size: int
    age_days: float
    reason: str
    companions: tuple[str, ...] = ()  # small files that go with it (its command record)


def run(args: GcArguments) -> None:
    root = _normalise(args.root)
    registries = [_normalise(name) for name in args.registries.split(",") if name.strip()]
    registries = registries or [f"{root}/{REGISTRY_FILE}"]
    kept = referenced_models(registries) | set(registries)
    log.info(
        "gc: %d location(s) kept by %s; removing what is older than %d days",
        len(kept),
        ", ".join(registries),
        args.older_than_days,
    )
    cutoff = time.time() - args.older_than_days * _DAY_S
    fs, root_path = _fs(root)
    if not fs.isdir(root_path):
        raise ConfigError(f"--root {args.root}: no such folder")
    removals = artefact_removals(fs, root_path, args.dag_ids(), _prefix(root, root_path), kept, cutoff)
    groups = [(root, list(removals))]
    if args.workspace:
        workspace = _normalise(args.workspace)
        groups.append((workspace, workspace_removals(Path(workspace), cutoff)))
    verb = "would remove" if args.dry_run else "removed"
    count = total = 0
    for top, removals in groups:
        for removal in removals:
            if not args.dry_run:
                _remove(removal, top)
            _report(verb, removal)
            count, total = count + 1, total + removal.size
    cache = Path(_normalise(args.cache)) if args.cache else models.cache_dir()
    for removal in cache_removals(cache, cutoff, dry_run=args.dry_run):
        _report(verb, removal)
        count, total = count + 1, total + removal.size
    print(f"{verb} {count} item(s), {_size(total)} in all")


def _report(verb: str, removal: Removal) -> None:
    print(f"{verb} {_size(removal.size):>9}  {removal.location}  ({removal.reason}, {removal.age_days:.0f} days old)")


def referenced_models(registries: Iterable[str]) -> set[str]:
    """Every model location the registries name, normalised (see ``_normalise``); an error when one cannot be read."""
    referenced = set()
    for location in registries:
        with _local_copy(location) as path:
            try:
                named = _registered_models(path)
            except sqlite3.Error as error:
                raise ConfigError(
                    f"--registries {location}: cannot read the registry ({error}); gc removes nothing without it"
                ) from error
        referenced.update(_normalise(model) for model in named if model)
    return referenced


def _registered_models(path: Path) -> list[str]:
    """The model column of every entry, read read-only: tasks.endpoint.registry's ``Registry`` opens a file for
    writing and migrates an old schema, which would change a registry gc only reads (the URI form is what lets
    SQLite open it read-only)."""
    with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
        return [row[0] for row in db.execute("SELECT model FROM models")]


@contextmanager
def _local_copy(location: str) -> Iterator[Path]:
    """The registry file itself when local, else a downloaded copy; gc never writes a registry."""
    missing = ConfigError(
        f"--registries {location}: no such registry file; gc removes nothing without every registry that names"
        " models under the root (pass them with --registries)"
    )
    if "://" not in location:
        if not Path(location).is_file():
            raise missing
        yield Path(location)
        return
    fs, remote = _fs(location)
    with tempfile.TemporaryDirectory(prefix="tasks-gc-") as scratch:
        try:
            fs.get_file(remote, f"{scratch}/{REGISTRY_FILE}")
        except FileNotFoundError:
            raise missing from None
        except Exception as error:  # botocore and aiohttp errors alike
            raise ConfigError(f"--registries {location}: cannot download the registry: {error}") from error
        yield Path(scratch) / REGISTRY_FILE


def _normalise(location: str) -> str:
    location = location.rstrip("/")
    if location.startswith("file://"):
        location = location.removeprefix("file://")
    return location if "://" in location else os.path.abspath(os.path.expanduser(location))


def _fs(location: str):
    import fsspec

    return fsspec.core.url_to_fs(location)


def _prefix(root: str, root_path: str) -> str:
    """What turns a path the filesystem lists back into a location as the registry writes it."""
    return root[: len(root) - len(root_path)] if "://" in root else ""


def _within(location: str, folder: str) -> bool:
    return location == folder or location.startswith(folder + "/")


def _listing(fs, path: str) -> list[dict]:
    return sorted(fs.ls(path, detail=True, refresh=True), key=lambda info: info["name"])


def _stamp(info: dict) -> float | None:
    moment = info.get("mtime", info.get("LastModified"))
    return moment.timestamp() if hasattr(moment, "timestamp") else moment


def _measure(fs, path: str) -> tuple[int, float]:
    """Bytes under ``path`` and the time of its newest file (its own time when it holds none)."""
    found = fs.find(path, detail=True, withdirs=False)
    stamps = [stamp for info in found.values() if (stamp := _stamp(info)) is not None]
    if not stamps:
        stamps = [_stamp(fs.info(path)) or 0.0]
    return sum(info.get("size") or 0 for info in found.values()), max(stamps)


def artefact_removals(
    fs, root: str, dags: Iterable[str], prefix: str, kept: set[str], cutoff: float
) -> Iterator[Removal]:
    """What to remove in the folders of ``dags`` under the artefact root ``root`` (a path of ``fs``), given the
    locations to keep."""
    for dag in dags:
        if not fs.isdir(f"{root}/{dag}"):
            log.info("gc: no folder %s%s/%s: nothing of DAG %s to collect", prefix, root, dag, dag)
            continue
        for run in _listing(fs, f"{root}/{dag}"):
            name = run["name"].rsplit("/", 1)[-1]
            if run["type"] == "directory" and layout.is_run_key(name):
                yield from _run_removals(fs, run["name"], prefix, kept, cutoff)
            elif layout.temporary_target(name):
                yield from _candidate(fs, run["name"], prefix, kept, cutoff, "abandoned temporary folder")


def _run_removals(fs, run: str, prefix: str, kept: set[str], cutoff: float) -> Iterator[Removal]:
    """A run folder with a model a registry names is kept whole (its temporary leftovers aside)."""
    lineage = any(_within(location, prefix + run) for location in kept)
    for step in _listing(fs, run):
        name = step["name"].rsplit("/", 1)[-1]
        if layout.temporary_target(name):
            yield from _candidate(fs, step["name"], prefix, kept, cutoff, "abandoned temporary folder")
        elif step["type"] == "directory":
            yield from _step_removals(fs, step["name"], prefix, kept, cutoff, lineage)


def _step_removals(fs, step: str, prefix: str, kept: set[str], cutoff: float, lineage: bool) -> Iterator[Removal]:
    children = _listing(fs, step)
    names = {info["name"].rsplit("/", 1)[-1]: info for info in children}
    tries = [name for name, info in names.items() if info["type"] == "directory"]
    records = {name for name in names if name not in tries}
    if any(not (name.endswith(COMMAND_SUFFIX) or name == LATEST) for name in records):
        # The one-folder-per-run layout: the step folder is the artefact.
        if not lineage:
            yield from _candidate(fs, step, prefix, kept, cutoff, "unreferenced artefact")
        return
    yield from _failed_try_records(fs, step, prefix, cutoff, names, tries)
    gone = 0
    for name in tries:
        temporary = layout.temporary_target(name)
        if lineage and not temporary:
            continue
        record = name + COMMAND_SUFFIX
        companions = (f"{step}/{record}",) if record in names else ()
        reason = "abandoned temporary folder" if temporary else "unreferenced artefact"
        for removal in _candidate(fs, f"{step}/{name}", prefix, kept, cutoff, reason, companions):
            gone += not temporary
            yield removal
    real = [name for name in tries if not layout.temporary_target(name)]
    if real and gone == len(real) and LATEST in names:
        yield Removal(f"{prefix}{step}/{LATEST}", names[LATEST].get("size") or 0, 0, "points at removed uploads")


def _failed_try_records(
    fs, step: str, prefix: str, cutoff: float, names: dict[str, dict], tries: list[str]
) -> Iterator[Removal]:
    """Command records with no try folder: written by a try that failed before its output was in place. One
    whose try still has a temporary sibling (being written, or kept to resume from) stays while that does."""
    pending = {layout.temporary_target(name) for name in tries}
    for name, info in names.items():
        try_name = name.removesuffix(COMMAND_SUFFIX)
        if name == try_name or try_name in tries or try_name in pending:
            continue
        stamp = _stamp(info) or 0.0
        if stamp < cutoff:
            age = (time.time() - stamp) / _DAY_S
            yield Removal(f"{prefix}{step}/{name}", info.get("size") or 0, age, "command record of a failed try")


def _candidate(
    fs, path: str, prefix: str, kept: set[str], cutoff: float, reason: str, companions: tuple[str, ...] = ()
) -> Iterator[Removal]:
    """``path`` when no kept location is within it and its newest file (its companions' included) is older
    than ``cutoff``."""
    location = prefix + path
    if any(_within(kept_location, location) for kept_location in kept):
        return
    size, newest = _measure(fs, path)
    newest = max([newest, *(_stamp(fs.info(companion)) or 0.0 for companion in companions)])
    if newest < cutoff:
        yield Removal(location, size, (time.time() - newest) / _DAY_S, reason, tuple(prefix + c for c in companions))


def workspace_removals(workspace: Path, cutoff: float) -> list[Removal]:
    """Run folders of the local workspace (WORKSPACE/DAG_ID/RUN_KEY) written to last before ``cutoff``."""
    if not workspace.is_dir():
        raise ConfigError(f"--workspace {workspace}: no such folder")
    fs, _ = _fs(str(workspace))
    removals = []
    for run in sorted(workspace.glob("*/*")):
        if run.is_dir() and (layout.is_run_key(run.name) or layout.temporary_target(run.name)):
            removals += _candidate(fs, str(run), "", set(), cutoff, "workspace run folder")
    return removals


def cache_removals(cache: Path, cutoff: float, *, dry_run: bool) -> Iterator[Removal]:
    """Model cache entries nobody resolved since ``cutoff``, their leftovers, and lock files with no entry.

    Each is removed holding the entry's lock, so a process downloading or resolving it either finishes first
    or, coming after, downloads it again; an entry whose lock is held is skipped."""
    folder = cache / "models"
    if not folder.is_dir():
        return
    fs, _ = _fs(str(folder))
    entries: dict[str, list[Path]] = {}
    for child in sorted(folder.iterdir()):
        name = layout.temporary_target(child.name) or child.name.removeprefix(".").removesuffix(".lock")
        entries.setdefault(name, []).append(child)
    for name, paths in entries.items():
        entry = folder / name
        # A dry run writes nothing, not even a lock file: where there is none, nobody holds it.
        unlocked = dry_run and not models.lock_file(entry).exists()
        try:
            with nullcontext() if unlocked else models.cache_lock(entry, wait=0):
                yield from _remove_cache_entry(fs, entry, paths, cutoff, dry_run)
        except TimeoutError:
            log.info("gc: %s is in use (its lock is held): kept", entry)


def _remove_cache_entry(fs, entry: Path, paths: list[Path], cutoff: float, dry_run: bool) -> Iterator[Removal]:
    lock = models.lock_file(entry)
    for path in paths:
        if path == lock or not path.exists():
            continue
        if path == entry:
            used = models.last_used(entry)
            size, newest = _measure(fs, str(entry))
            stamp, reason = (used, "cache entry not used") if used is not None else (newest, "incomplete cache entry")
        else:
            size, stamp = _measure(fs, str(path))
            reason = "abandoned download"
        if stamp >= cutoff:
            continue
        if not dry_run:
            # Out of the way first: from here on nobody finds it complete.
            aside = layout.old_sibling(entry) if path == entry else path
            if aside != path:
                os.rename(path, aside)
            fs.rm(str(aside), recursive=True)
        yield Removal(str(path), size, (time.time() - stamp) / _DAY_S, reason)
    if not dry_run and not any(path.exists() for path in paths if path != lock):
        # Deleted while held: a process waiting on this lock file notices and locks a new one. Lock files are
        # empty, so they go without a line of their own.
        lock.unlink(missing_ok=True)


def _remove(removal: Removal, top: str) -> None:
    """Remove one location (and its companions); a local folder left empty by it goes too, up to ``top``."""
    for location in (removal.location, *removal.companions):
        fs, path = _fs(location)
        if fs.exists(path):
            fs.rm(path, recursive=fs.isdir(path))
        if "://" not in location:  # S3 has no empty folders
            for folder in Path(location).parents:
                if not _within(str(folder), top) or str(folder) == top or any(folder.iterdir()):
                    break
                folder.rmdir()


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
