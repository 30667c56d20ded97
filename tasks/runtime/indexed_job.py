"""A multi-worker training run as a Kubernetes Indexed Job, described to TensorFlow as ``TF_CONFIG``.

The Job controller gives the pod of index ``i`` the environment variable ``JOB_COMPLETION_INDEX=i`` and the
hostname ``JOB-i``; with the pod template's ``subdomain`` naming a headless Service that selects the pods,
``JOB-i.SUBDOMAIN`` resolves to that pod in the cluster's DNS. The Job's manifest lists every worker's
address, in index order, in ``TASKS_WORKER_ADDRESSES``; each pod builds its own ``TF_CONFIG`` from the list
and its index, so no training operator is needed. Worker 0 is the chief (it writes the model and the result).

Only the standard library and ``tasks.errors`` are imported: the Airflow side's manifest builder imports the
constants.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import MutableMapping

from tasks.errors import ConfigError

log = logging.getLogger(__name__)

INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by the Job controller in every pod of an Indexed Job
ADDRESSES_ENV = "TASKS_WORKER_ADDRESSES"  # "host:port,host:port,...": every worker, in index order
WORKER_PORT = 2222  # where each worker's TensorFlow server listens (the headless Service's port)


def tf_config(addresses: str, index: str) -> dict:
    """``TF_CONFIG`` of the worker ``index`` among ``addresses`` (comma-separated, in index order)."""
    workers = [address.strip() for address in addresses.split(",") if address.strip()]
    if not index.isdigit() or int(index) >= len(workers):
        raise ConfigError(
            f"{INDEX_ENV}={index!r} is not the index of one of the {len(workers)} workers in {ADDRESSES_ENV}={addresses!r}"
        )
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": int(index)}}


def export_tf_config(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set ``TF_CONFIG`` in an Indexed Job's pod (``TASKS_WORKER_ADDRESSES`` and ``JOB_COMPLETION_INDEX``
    both set); elsewhere, or when ``TF_CONFIG`` is already given, leave the environment as it is."""
    if "TF_CONFIG" in environ or ADDRESSES_ENV not in environ:
        return
    if INDEX_ENV not in environ:
        raise ConfigError(f"{ADDRESSES_ENV} is set but {INDEX_ENV} is not: run it as an Indexed Job's pod")
    environ["TF_CONFIG"] = json.dumps(tf_config(environ[ADDRESSES_ENV], environ[INDEX_ENV]))
    log.info("worker %s of an Indexed Job: TF_CONFIG=%s", environ[INDEX_ENV], environ["TF_CONFIG"])
