"""Early stopping across the trials of one search: the median rule of SageMaker's ``TrainingJobEarlyStoppingType``
Auto, on a folder the trials share (a local or shared volume's folder, or an ``s3://`` prefix).

Each run records its validation accuracy after every epoch in ``FOLDER/<run>.json`` (``{"run": NAME, "accuracy":
[epoch 1, epoch 2, ...]}``, replaced whole: renamed into place locally, one PUT on S3). After an epoch that is not
its last, a run stops when its accuracy is below the median of at least ``MIN_PEERS`` other runs' running averages
of their accuracy up to the same epoch (SageMaker's rule: "the median value of the running averages of the
objective metric for all previous training jobs up to the same epoch"). A hopeless trial so gives its time to the others; the first trials, with no peers yet,
always run their budget.

A run is named by its settings (``run_name``), not its output folder: a retried trial replaces its own record, and
a trial whose output is uploaded from a scratch folder is still told apart from the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
from pathlib import Path

from tasks.errors import ConfigError
from tasks.runtime.remote_paths import is_remote
from tasks.tuning import files

log = logging.getLogger("tasks.training.train")

MIN_PEERS = 2


def run_name(identity: dict) -> str:
    """A run's name in the folder: a digest of what it trains with (settings, data, seed, budget)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def record(folder: str, run: str, accuracies: list[float]) -> None:
    """Replace ``run``'s record in ``folder`` with its accuracies so far, whole or not at all."""
    files.write_json_whole(files.join(folder, f"{run}.json"), {"run": run, "accuracy": accuracies})


def _records(folder: str) -> list[str]:
    """The location of every record in ``folder``."""
    if is_remote(folder):
        import fsspec

        fs, path = fsspec.core.url_to_fs(folder)
        fs.invalidate_cache()
        protocol = folder.split("://", 1)[0]
        return [f"{protocol}://{found}" for found in sorted(fs.glob(f"{path.rstrip('/')}/*.json"))]
    return [str(path) for path in sorted(Path(folder).glob("*.json"))]


def peer_accuracies(folder: str, run: str, epoch: int) -> list[float]:
    """The running averages of accuracy over epochs 1 to ``epoch`` (from 1) of the other runs in ``folder`` that got
    that far."""
    found = []
    for where in _records(folder):
        try:
            peer = files.read_json(where) or {}
            accuracies = [float(accuracy) for accuracy in peer["accuracy"]]
        except (ConfigError, KeyError, TypeError, ValueError) as error:
            log.warning("early stopping: skipping %s, which is no run's record: %s", where, error)
            continue
        if peer.get("run") != run and len(accuracies) >= epoch:
            found.append(statistics.fmean(accuracies[:epoch]))
    return found


def median_to_beat(accuracy: float, peers: list[float]) -> float | None:
    """The median of the peers' running averages when ``accuracy`` is below it and there are at least MIN_PEERS
    peers, else None."""
    if len(peers) < MIN_PEERS:
        return None
    median = statistics.median(peers)
    return median if accuracy < median else None
