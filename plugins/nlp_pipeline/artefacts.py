"""Where a run's artefacts, the registry and the local endpoint's state live.

    ROOT/registry.sqlite                 the model registry (all DAGs)
    ROOT/DAG_ID/endpoint/                the local endpoint's state folder
    ROOT/DAG_ID/RUN_KEY/{staged,model,quantized,evaluation}

ROOT is the Airflow Variable ``nlp_artefact_root`` (or ``AIRFLOW_VAR_NLP_ARTEFACT_ROOT``), by default
``$AIRFLOW_HOME/nlp-artefacts``. RUN_KEY is the run's logical date (its run-after time when a manual run
has none), so each backfill interval writes its own folder, and re-running an interval replaces it.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow.sdk import Variable


def root() -> Path:
    default = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")) / "nlp-artefacts"
    return Path(Variable.get("nlp_artefact_root", default=str(default))).expanduser().absolute()


def run_key(context) -> str:
    moment = context["dag_run"].logical_date or context["dag_run"].run_after
    return moment.strftime("%Y%m%dT%H%M%SZ")


def run_folder(context) -> Path:
    return root() / context["dag"].dag_id / run_key(context)


def registry_file() -> Path:
    return root() / "registry.sqlite"


def endpoint_state(context) -> Path:
    return root() / context["dag"].dag_id / "endpoint"
