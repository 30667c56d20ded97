"""Which worker this process is, and the distribution strategy it trains under.

``TF_CONFIG`` (set by a Kubeflow TFJob, by hand, or from SageMaker's resource config) with more than one
worker means multi-worker data-parallel training with ``MultiWorkerMirroredStrategy``; otherwise one
process trains alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from tasks.errors import ConfigError


@dataclass(frozen=True)
class TrainingCluster:
    """This worker's place in a (multi-worker) training: how many workers, its index, whether it is the chief."""

    workers: int
    index: int
    is_chief: bool

    @property
    def distributed(self) -> bool:
        return self.workers > 1


def cluster_from_environment() -> TrainingCluster:
    """Read ``TF_CONFIG``; a chief task, if the cluster has one, is counted as a worker."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return TrainingCluster(workers=1, index=0, is_chief=True)
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        task_type, index = task["type"], int(task["index"])
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            'TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
            f'"task": {{"type": "worker", "index": 0}}}}, got {raw!r}'
        ) from error
    if task_type not in ("chief", "worker"):
        raise ConfigError(f"TF_CONFIG task type must be 'chief' or 'worker', got {task_type!r}")
    if workers < 1 or not 0 <= index < len(cluster.get(task_type, [])):
        raise ConfigError(f"TF_CONFIG task index {index} is not in the cluster's {task_type} list")
    has_chief = bool(cluster.get("chief"))
    is_chief = task_type == "chief" or (not has_chief and index == 0)
    position = index if task_type == "chief" or not has_chief else index + 1
    return TrainingCluster(workers=workers, index=position, is_chief=is_chief)


def strategy_for(cluster: TrainingCluster):
    """MultiWorkerMirroredStrategy across workers; TensorFlow's default strategy for one process."""
    import tensorflow as tf

    if cluster.distributed:
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()
