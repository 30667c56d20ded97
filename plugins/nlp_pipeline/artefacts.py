"""Where a run's artefacts, the registry and the local endpoint's state live.

    ROOT/DAG_ID/RUN_KEY/{staged,model,quantized,evaluation}   one folder per run and step
    ROOT/registry.sqlite                                       the model registry (all DAGs)
    ROOT/DAG_ID/endpoint/                                      the local endpoint's state folder

ROOT is the Airflow Variable ``nlp_artefact_root`` (or ``AIRFLOW_VAR_NLP_ARTEFACT_ROOT``), by default
``$AIRFLOW_HOME/nlp-artefacts``. RUN_KEY is the run's logical date (its run-after time when a manual run
has none), so each backfill interval writes its own folder, and re-running an interval replaces it.

ROOT may be remote (``s3://bucket/prefix``): each step then writes into a local workspace
(``$AIRFLOW_HOME/nlp-workspace/DAG_ID/RUN_KEY/STEP``), which is uploaded to ROOT once the step succeeded;
the next steps of the run read the local copy, and the registry points at the uploaded one. The registry
(a SQLite file) and the endpoint's state, which must be on the worker, stay under ``$AIRFLOW_HOME``.

S3 cannot rename a folder, so a remote artefact is replaced atomically the way table formats commit:
each upload goes to a new prefix ``STEP/UPLOAD_ID/`` and, once complete, the one object ``STEP/LATEST``
is overwritten with its id (a single PUT, atomic). A reader sees the old upload or the new one, never a
mix; a URI handed on by XCom or kept in the registry names one upload and stays valid (an S3 lifecycle
rule may expire old uploads).
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import Variable

log = logging.getLogger(__name__)


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def root() -> str:
    configured = Variable.get("nlp_artefact_root", default=str(airflow_home() / "nlp-artefacts"))
    return configured.rstrip("/") if is_remote(configured) else str(Path(configured).expanduser().absolute())


def is_remote(location: str) -> bool:
    return "://" in location


def run_key(context) -> str:
    moment = context["dag_run"].logical_date or context["dag_run"].run_after
    return moment.strftime("%Y%m%dT%H%M%SZ")


def run_suffix(run_key: str, run_id: str) -> str:
    """``RUNKEY-HASH``: the run key and 6 hex of the run id, what names a run's jobs, models and TFJobs."""
    return f"{run_key.lower()}-{hashlib.sha1(run_id.encode()).hexdigest()[:6]}"


def run_folder(context) -> str:
    return f"{root()}/{context['dag'].dag_id}/{run_key(context)}"


def workspace(context, step: str) -> Path:
    """The local folder a step writes into: the artefact folder itself when ROOT is local."""
    if is_remote(root()):
        return airflow_home() / "nlp-workspace" / context["dag"].dag_id / run_key(context) / step
    return Path(run_folder(context)) / step


LATEST = "LATEST"


def publish(context, step: str, local: Path) -> str:
    """The artefact's location under ROOT; when ROOT is remote, ``local`` uploaded as the step's latest upload."""
    target = f"{run_folder(context)}/{step}"
    if not is_remote(target):
        return target
    import fsspec

    fs, path = fsspec.core.url_to_fs(target)
    upload = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-try{context['ti'].try_number}"
    fs.put(f"{local}/", f"{path}/{upload}/", recursive=True)
    fs.pipe_file(f"{path}/{LATEST}", upload.encode())
    log.info("uploaded %s to %s/%s (now %s/%s)", local, target, upload, target, LATEST)
    return f"{target}/{upload}"


def _local_root() -> Path:
    location = root()
    return airflow_home() / "nlp-artefacts" if is_remote(location) else Path(location)


def registry_file() -> Path:
    return _local_root() / "registry.sqlite"


def endpoint_state(context) -> Path:
    return _local_root() / context["dag"].dag_id / "endpoint"
