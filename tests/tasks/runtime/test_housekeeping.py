"""``python -m tasks gc``: each rule of what is removed and what is kept, on a local root, a workspace, the model
cache and an S3 root (moto); a dry run removes nothing; an unreadable registry stops it before anything goes."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tasks.cli import parse
from tasks.config import GcArguments
from tasks.endpoint.registry import Registry
from tasks.errors import ConfigError
from tasks.runtime import housekeeping, layout, models
from tests.conftest import run_tasks, upload_folder

DAY = 86400
OLD, NEW = 30, 2  # days; gc runs with its default of 14
RUN_A, RUN_B, RUN_C = "20260101T000000Z", "20260102T000000Z", "20260103T000000Z"


def _write(folder: Path, days_old: float, size: int = 1000) -> Path:
    """A folder of two files written ``days_old`` days ago."""
    (folder / "saved_model").mkdir(parents=True, exist_ok=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"x" * size)
    (folder / "metrics.json").write_text("{}")
    _age(folder, days_old)
    return folder


def _age(path: Path, days_old: float) -> None:
    stamp = time.time() - days_old * DAY
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (stamp, stamp))


def _try(root: Path, run: str, step: str, days_old: float, name: str = "try1") -> Path:
    folder = _write(root / "nlp_local" / run / step / name, days_old)
    record = folder.with_name(name + layout.COMMAND_SUFFIX)
    record.write_text('{"command": []}')
    _age(record, days_old)
    return folder


def _registry(path: Path, *models_: str) -> Path:
    registry = Registry(path)
    for model in models_:
        digest = f"sha256:{hashlib.sha256(model.encode()).hexdigest()}"
        registry.register(model=model, version="v", status="production", evaluation={}, card={}, digest=digest)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    """Three runs: A old and registered, B old and unregistered, C recent; the registry and an endpoint."""
    root = tmp_path / "artefacts"
    for step in ("staged", "model", "quantized", "evaluation"):
        _try(root, RUN_A, step, OLD)
        _try(root, RUN_B, step, OLD)
        _try(root, RUN_C, step, NEW)
    _try(root, RUN_A, "quantized", OLD, name="try2")  # a retry of the registered run
    _registry(root / "registry.sqlite", str(root / "nlp_local" / RUN_A / "quantized" / "try1"))
    _age(root / "registry.sqlite", OLD)
    _write(root / "nlp_local" / "endpoint", OLD)
    return root


def _gc(root, capsys, **flags) -> list[str]:
    housekeeping.run(GcArguments(root=str(root), **{"dags": "nlp_local", **flags}))
    return capsys.readouterr().out.splitlines()


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_unreferenced_old_artefacts_go_and_a_registered_run_stays_whole(root, capsys):
    before = _files(root)
    lines = _gc(root, capsys)
    removed = before - _files(root)
    assert not (root / "nlp_local" / RUN_B).exists(), "an unreferenced old run is removed, empty folders too"
    assert all(name.startswith(f"nlp_local/{RUN_B}/") for name in removed)
    assert {f"nlp_local/{RUN_B}/model/try1.command.json", f"nlp_local/{RUN_B}/model/try1/metrics.json"} <= removed
    # Kept: the registered run (its staged data and retries too), the recent run, the registry, the endpoint.
    assert (root / "nlp_local" / RUN_A / "staged" / "try1").is_dir()
    assert (root / "nlp_local" / RUN_A / "quantized" / "try2").is_dir()
    assert (root / "nlp_local" / RUN_C / "model" / "try1").is_dir()
    assert (root / "registry.sqlite").is_file()
    assert (root / "nlp_local" / "endpoint" / "metrics.json").is_file()
    assert len(lines) == 5 and all(line.startswith("removed ") for line in lines)
    assert f"{root}/nlp_local/{RUN_B}/quantized/try1" in "\n".join(lines)
    assert lines[-1] == "removed 4 item(s), 3.9 KB in all"


def test_a_dry_run_lists_the_same_and_removes_nothing(root, tmp_path, capsys):
    _cache_entry(models.cache_dir(), "aaaa", OLD)
    _write(tmp_path / "workspace" / "nlp_local" / RUN_B, OLD)
    everything = [root, tmp_path / "workspace", models.cache_dir()]
    before = [_files(folder) for folder in everything]
    listed = _gc(root, capsys, dry_run=True, workspace=str(tmp_path / "workspace"))
    assert [_files(folder) for folder in everything] == before
    assert len(listed) == 7 and all(line.startswith("would remove ") for line in listed)
    removed = _gc(root, capsys, workspace=str(tmp_path / "workspace"))
    assert [line.replace("would remove", "removed") for line in listed] == removed


def test_nothing_newer_than_the_limit_goes(root, capsys):
    lines = _gc(root, capsys, older_than_days=OLD + 1)
    assert lines == ["removed 0 item(s), 0 B in all"]


def test_an_old_layout_step_folder_is_one_artefact(tmp_path, capsys):
    root = tmp_path / "artefacts"
    kept = _write(root / "nlp_local" / RUN_A / "model", OLD)
    _write(root / "nlp_local" / RUN_B / "model", OLD)
    _registry(root / "registry.sqlite", str(kept))
    lines = _gc(root, capsys)
    assert (kept / "saved_model" / "saved_model.pb").is_file()
    assert not (root / "nlp_local" / RUN_B).exists()
    assert lines[0].endswith(f"{root}/nlp_local/{RUN_B}/model  (unreferenced artefact, 30 days old)")


def test_abandoned_temporary_siblings_go_even_in_a_registered_run(root, capsys):
    step = root / "nlp_local" / RUN_A / "model"
    for name in (".try3.tmp-0a1b2c3d", ".try3.partial", ".try1.old-0a1b2c3d"):
        _write(step / name, OLD)
    _write(step / ".try4.tmp-9f8e7d6c", NEW)
    _write(root / "nlp_local" / RUN_A / ".staged.tmp-0a1b2c3d", OLD)
    _gc(root, capsys)
    assert sorted(p.name for p in step.iterdir()) == [".try4.tmp-9f8e7d6c", "try1", "try1.command.json"]
    assert not (root / "nlp_local" / RUN_A / ".staged.tmp-0a1b2c3d").exists()


def test_a_missing_registry_stops_gc_before_anything_goes(root, capsys):
    before = _files(root)
    (root / "registry.sqlite").unlink()
    with pytest.raises(ConfigError, match=r"registry.sqlite: no such registry file; gc removes nothing"):
        _gc(root, capsys)
    with pytest.raises(ConfigError, match="no such registry file"):
        _gc(root, capsys, registries=f"{root}/registry.sqlite,{root}/other.sqlite")
    assert _files(root) == before - {"registry.sqlite"}


def test_a_corrupt_registry_stops_gc_with_exit_2(root):
    before = _files(root)
    (root / "registry.sqlite").write_bytes(b"this is not a database" * 100)
    result = run_tasks("gc", "--root", str(root), "--dags", "nlp_local", check=False)
    assert result.returncode == 2
    assert "registry.sqlite: cannot read the registry" in result.stderr
    assert result.stderr.rstrip().endswith("gc removes nothing without it")
    assert _files(root) == before


def test_every_registry_given_keeps_its_models(root, capsys):
    other = _registry(root.parent / "other.sqlite", str(root / "nlp_local" / RUN_B / "model" / "try1"))
    _gc(root, capsys, registries=f"{root}/registry.sqlite,{other}")
    assert (root / "nlp_local" / RUN_B / "model" / "try1").is_dir(), "named by the second registry"


def test_the_flags_are_checked(root, capsys):
    with pytest.raises(ConfigError, match="--older-than-days must be a positive integer, got 0"):
        parse("gc", ["--root", str(root), "--dags", "nlp_local", "--older-than-days", "0"])
    with pytest.raises(ConfigError, match=r"--root .*/absent: no such folder"):
        _gc(root / "absent", capsys, registries=str(root / "registry.sqlite"))
    with pytest.raises(ConfigError, match="--workspace .*/absent: no such folder"):
        _gc(root, capsys, workspace=str(root / "absent"))


def test_old_workspace_run_folders_go(root, tmp_path, capsys):
    workspace = tmp_path / "nlp-workspace"
    old = _write(workspace / "nlp_sagemaker" / RUN_A / "model" / "try1", OLD).parents[1]
    _age(old, OLD)
    new = _write(workspace / "nlp_sagemaker" / RUN_C / "model" / "try1", NEW).parents[1]
    lines = _gc(root, capsys, workspace=str(workspace))
    assert not old.exists() and new.is_dir() and workspace.is_dir()
    assert any(line.endswith(f"{old}  (workspace run folder, 30 days old)") for line in lines)


def _cache_entry(cache: Path, name: str, days_unused: float) -> Path:
    entry = _write(cache / "models" / name, days_unused)
    (entry / models.COMPLETE).touch()
    _age(entry / models.COMPLETE, days_unused)
    return entry


_HOLD_LOCK = """
import sys, time
from datetime import timedelta
from pathlib import Path
from tasks.runtime.models import cache_lock
with cache_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_cache_entries_unused_for_days_go_unless_in_use(root, tmp_path, capsys):
    cache = tmp_path / "cache"
    unused = _cache_entry(cache, "aaaa", OLD)
    used = _cache_entry(cache, "bbbb", NEW)
    locked = _cache_entry(cache, "cccc", OLD)
    abandoned = _write(cache / "models" / ".dddd.tmp-0a1b2c3d", OLD)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(locked)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lines = _gc(root, capsys, cache=str(cache))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not unused.exists() and not abandoned.exists()
    assert not models.lock_file(unused).exists(), "the lock file goes with its entry"
    assert used.is_dir() and locked.is_dir()
    assert any(line.endswith(f"{unused}  (cache entry not used, 30 days old)") for line in lines)
    assert any(line.endswith(f"{abandoned}  (abandoned download, 30 days old)") for line in lines)


def test_a_resolved_cache_entry_counts_as_used(tmp_path, capsys, root):
    source = _write(tmp_path / "model", OLD)
    entry = models.resolve(source.as_uri())
    _age(entry, OLD)
    assert models.resolve(source.as_uri()) == entry  # resolving it again marks it used
    _gc(root, capsys)
    assert (entry / "metrics.json").is_file()


def _backdate(bucket: str, prefix: str, days_old: float) -> None:
    """Objects under ``prefix`` as if written ``days_old`` days ago (S3 lets no client set LastModified)."""
    from moto.backends import get_backend

    keys = get_backend("s3")["123456789012"]["global"].buckets[bucket].keys
    for key in keys.values():
        if key.name.startswith(prefix):
            key.last_modified -= timedelta(days=days_old)


def test_on_an_s3_root_unreferenced_old_uploads_go(s3, tmp_path, capsys):
    bucket, client = s3["bucket"], s3["client"]
    model = _write(tmp_path / "model", 0)
    uploads = {
        run: upload_folder(client, model, bucket, f"artefacts/nlp_local/{run}/quantized/20260101T010000Z-try1")
        for run in (RUN_A, RUN_B, RUN_C)
    }
    for run in (RUN_A, RUN_B, RUN_C):
        client.put_object(Bucket=bucket, Key=f"artefacts/nlp_local/{run}/quantized/LATEST", Body=b"x")
    registry = _registry(tmp_path / "registry.sqlite", uploads[RUN_A])
    client.upload_file(str(registry), bucket, "artefacts/registry.sqlite")
    client.put_object(Bucket=bucket, Key="artefacts/nlp_local/endpoint/state.json", Body=b"{}")
    _backdate(bucket, "artefacts/", OLD)
    _backdate(bucket, f"artefacts/nlp_local/{RUN_C}/", -OLD + NEW)
    before = {item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]}

    listed = _gc(f"s3://{bucket}/artefacts", capsys, dry_run=True)
    assert {item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]} == before
    lines = _gc(f"s3://{bucket}/artefacts", capsys)
    assert [line.replace("would remove", "removed") for line in listed] == lines
    after = {item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert before - after == {key for key in before if key.startswith(f"artefacts/nlp_local/{RUN_B}/")}
    assert f"{uploads[RUN_B]}  (unreferenced artefact, 30 days old)" in lines[0]
    assert f"s3://{bucket}/artefacts/nlp_local/{RUN_B}/quantized/LATEST" in lines[1]
    assert lines[-1] == "removed 2 item(s), 1003 B in all"


def test_a_registry_on_s3_is_read_and_a_missing_one_stops_gc(s3, tmp_path, capsys):
    bucket = s3["bucket"]
    with pytest.raises(ConfigError, match="registry.sqlite: no such registry file"):
        _gc(f"s3://{bucket}/artefacts", capsys)
    folder = _write(tmp_path / "artefacts" / "nlp_local" / RUN_B / "model" / "try1", OLD)
    registry = _registry(tmp_path / "registry.sqlite", str(folder))
    s3["client"].upload_file(str(registry), bucket, "registries/local.sqlite")
    _gc(tmp_path / "artefacts", capsys, registries=f"s3://{bucket}/registries/local.sqlite")
    assert folder.is_dir()


def _other_dags(root: Path) -> None:
    """Old runs of the EKS and SageMaker DAGs under the same root, whose registries gc is not given."""
    _write(root / "nlp_eks" / RUN_B / "quantized" / "try1", OLD)
    _write(root / "nlp_sagemaker" / RUN_B / "model" / "try1", OLD)
    (root / "nlp_sagemaker" / RUN_B / "model" / "try1" / "model.tar.gz").write_bytes(b"tar")
    _age(root / "nlp_sagemaker", OLD)


def test_only_the_folders_of_the_dags_named_are_collected(root, capsys):
    _other_dags(root)
    others = {name for name in _files(root) if not name.startswith("nlp_local/")}
    _gc(root, capsys)
    assert not (root / "nlp_local" / RUN_B).exists()
    assert others <= _files(root), "the EKS and SageMaker models stay: their registries were not given"


def test_on_an_s3_root_other_dags_models_are_untouched(s3, tmp_path, capsys):
    bucket, client = s3["bucket"], s3["client"]
    model = _write(tmp_path / "model", 0)
    for dag in ("nlp_local", "nlp_eks", "nlp_sagemaker"):
        upload_folder(client, model, bucket, f"artefacts/{dag}/{RUN_B}/quantized/20260101T010000Z-try1")
    client.put_object(Bucket=bucket, Key=f"artefacts/nlp_sagemaker/{RUN_B}/model/model.tar.gz", Body=b"tar")
    _backdate(bucket, "artefacts/", OLD)
    registry = _registry(tmp_path / "registry.sqlite")
    before = {item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]}
    _gc(f"s3://{bucket}/artefacts", capsys, registries=str(registry))
    after = {item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert before - after == {key for key in before if key.startswith("artefacts/nlp_local/")}


def test_the_dags_flag_is_required_and_checked(root):
    with pytest.raises(ConfigError, match="--dags"):
        parse("gc", ["--root", str(root)])
    for bad in ("", " , ", "nlp_local,../other", "a/b"):
        with pytest.raises(ConfigError, match="--dags must be comma-separated DAG ids"):
            GcArguments(root=str(root), dags=bad)
    assert GcArguments(root=str(root), dags="nlp_local, nlp_eks").dags == "nlp_local, nlp_eks"


def _old_schema(path: Path) -> Path:
    """A registry written before the digest column existed."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE models (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version TEXT NOT NULL,"
            " status TEXT NOT NULL, decision TEXT, reasons TEXT NOT NULL, metrics TEXT NOT NULL,"
            " data_fingerprint TEXT, base_model TEXT, config TEXT NOT NULL, dag_id TEXT, run_id TEXT,"
            " logical_date TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO models (model, version, status, reasons, metrics, config, created_at, updated_at)"
            " VALUES (?, 'v', 'production', '[]', '{}', '{}', 'now', 'now')",
            (str(path.parent / "nlp_local" / RUN_B / "model" / "try1"),),
        )
    return path


def test_gc_never_writes_a_registry(root, capsys):
    registry = _old_schema(root / "old.sqlite")
    before = hashlib.sha256(registry.read_bytes()).hexdigest()
    _gc(root, capsys, registries=str(registry))
    assert hashlib.sha256(registry.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in registry.parent.iterdir() if p.name.startswith("old.sqlite")) == ["old.sqlite"]
    assert (root / "nlp_local" / RUN_B / "model" / "try1").is_dir(), "the old registry's entry keeps its model"


def test_a_database_that_is_no_registry_stops_gc_with_exit_2(root):
    import sqlite3

    with sqlite3.connect(root / "other.sqlite") as db:
        db.execute("CREATE TABLE things (name TEXT)")
    before = _files(root)
    result = run_tasks(
        "gc", "--root", str(root), "--dags", "nlp_local", "--registries", f"{root}/other.sqlite", check=False
    )
    assert result.returncode == 2
    assert "other.sqlite: cannot read the registry" in result.stderr
    assert _files(root) == before


def test_command_records_of_failed_tries_go_when_old(root, capsys):
    step = root / "nlp_local" / RUN_B / "train"
    step.mkdir()
    for name, days_old in (("try1", OLD), ("try2", NEW), ("try3", OLD)):
        (step / f"{name}{layout.COMMAND_SUFFIX}").write_text('{"command": []}')
        _age(step / f"{name}{layout.COMMAND_SUFFIX}", days_old)
    _write(step / ".try3.partial", NEW)  # try3 is still being written (or resumable)
    registered = root / "nlp_local" / RUN_A / "model" / f"try9{layout.COMMAND_SUFFIX}"
    registered.write_text('{"command": []}')
    _age(registered, OLD)
    lines = _gc(root, capsys)
    assert sorted(p.name for p in step.iterdir()) == [".try3.partial", "try2.command.json", "try3.command.json"]
    assert not registered.exists(), "a failed try's record names no artefact, in a registered run too"
    assert any(
        line.endswith(f"{step}/try1.command.json  (command record of a failed try, 30 days old)") for line in lines
    )


def test_a_run_of_only_failed_tries_goes_whole(tmp_path, capsys):
    root = tmp_path / "artefacts"
    record = root / "nlp_local" / RUN_B / "model" / f"try1{layout.COMMAND_SUFFIX}"
    record.parent.mkdir(parents=True)
    record.write_text('{"command": []}')
    _age(record, OLD)
    _registry(root / "registry.sqlite")
    _gc(root, capsys)
    assert not (root / "nlp_local" / RUN_B).exists(), "its empty step and run folders go with the record"
    assert (root / "registry.sqlite").is_file()


def test_a_try_is_as_old_as_its_command_record(root, capsys):
    """Reusing a try refreshes its record (plugins/nlp_pipeline/artefacts.py reusable_output): gc keeps it."""
    reused = root / "nlp_local" / RUN_B / "model" / "try1"
    _age(reused.with_name("try1" + layout.COMMAND_SUFFIX), 0)
    _gc(root, capsys)
    assert (reused / "metrics.json").is_file()
    assert not (root / "nlp_local" / RUN_B / "staged").exists()
