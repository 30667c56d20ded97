"""
### nlp_maintenance: daily housekeeping of the local platform's disk

Runs `python -m tasks gc` on the `nlp_local` DAG's folder of the artefact root (Variable `nlp_artefact_root`),
with the local registry (`registry.sqlite`); the EKS and SageMaker DAGs' folders under a shared root are
never touched (their registries are elsewhere). Also the workspace of a remote root
(`$AIRFLOW_HOME/nlp-workspace`) and the worker's model cache. It removes artefacts no registry entry names, abandoned temporary folders, old workspace runs and
cached models nobody used, older than 14 days; a run folder with a registered model is kept whole, and a
registry that cannot be read stops it before anything goes. Each removal is one line of the task log.
See docs/operations.md, section `gc`.
"""

import pendulum
from airflow.sdk import dag
from nlp_pipeline.alerts import RunFailureNotifier
from nlp_pipeline.limits import GC_LIMIT
from nlp_pipeline.maintenance import collect_garbage
from nlp_pipeline.pipeline import DEFAULT_ARGS


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=GC_LIMIT * (DEFAULT_ARGS["retries"] + 1),
    default_args=DEFAULT_ARGS | {"execution_timeout": GC_LIMIT},
    tags=["nlp", "local", "maintenance"],
    doc_md=__doc__,
    on_failure_callback=RunFailureNotifier(),
)
def nlp_maintenance():
    collect_garbage()


nlp_maintenance()
