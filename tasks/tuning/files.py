"""A search's JSON files (plan.json, a trial's metrics.json, tuning.json) in a local folder or under an ``s3://``
prefix: the trials of a platform without a shared volume write to the artefact store."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tasks.errors import ConfigError
from tasks.runtime.outputs import write_json
from tasks.runtime.remote_paths import is_remote


def join(folder: str, *parts: str) -> str:
    return "/".join([folder.rstrip("/"), *parts])


def read_json(location: str) -> dict | None:
    """The JSON object at ``location``, or None when there is none."""
    if is_remote(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        if not fs.exists(path):
            return None
        text = fs.cat_file(path).decode()
    else:
        path = Path(location)
        if not path.is_file():
            return None
        text = path.read_text()
    try:
        payload = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{location}: not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise ConfigError(f"{location}: expected a JSON object, got {type(payload).__name__}")
    return payload


def write_json_whole(location: str, payload: dict) -> None:
    """Write ``payload`` whole or not at all: renamed into place locally, one PUT on S3."""
    if is_remote(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        fs.pipe_file(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
        return
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary of its own in the same folder: two writers (retried trials) never share one, and a killed
    # writer's leftover blocks nothing.
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write_json(temporary, payload)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
