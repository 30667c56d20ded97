"""Steps that read and write the artefact store directly: ``--data``, ``--evaluation``, ``--output`` and
``--registry`` may be ``s3://`` URIs (any fsspec URL).

A Kubernetes pod without a shared volume works this way, with its service account's credentials (EKS IRSA or
Pod Identity; no keys in the pod spec). Input folders are downloaded into the local cache first
(``tasks.runtime.models.resolve``, keyed by their contents); the step writes its output into a local folder, uploaded to the
URI once the step succeeded; a registry file is downloaded, updated and uploaded back. The caller names a new
output URI for each try, so a reader never sees half an upload. Of a multi-worker training only the chief
uploads: the other workers write nothing to keep. A registry on S3 has one writer at a time (the DAG runs
one run at a time); two concurrent writers would lose one's update.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

INPUT_FOLDERS = ("data", "evaluation")


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
    output, registry = getattr(args, "output", ""), getattr(args, "registry", "")
    with tempfile.TemporaryDirectory(prefix="tasks-remote-") as scratch:
        if output and is_remote(output):
            args.output = f"{scratch}/output"
        if registry and is_remote(registry):
            args.registry = f"{scratch}/registry.sqlite"
            fs, path = _fs(registry)
            if fs.exists(path):
                fs.get(path, args.registry)
        yield args
        if output and is_remote(output) and cluster_from_environment().is_chief:
            fs, path = _fs(output)
            fs.put(f"{args.output}/", f"{path.rstrip('/')}/", recursive=True)
            log.info("uploaded %s to %s", args.output, output)
        if registry and is_remote(registry) and Path(args.registry).exists():
            fs, path = _fs(registry)
            fs.put_file(args.registry, path)
