"""
### nlp_maintenance: daily housekeeping of the local platform's disk

Runs `python -m tasks gc` on the artefact root (Variable `nlp_artefact_root`), with the local registry
(`registry.sqlite`), the workspace of a remote root (`$AIRFLOW_HOME/nlp-workspace`) and the worker's model
cache. It removes artefacts no registry entry names, abandoned temporary folders, old workspace runs and
cached models nobody used, older than 14 days; a run folder with a registered model is kept whole, and a
registry that cannot be read stops it before anything goes. Each removal is one line of the task log.
See docs/operations.md, section `gc`.
"""

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from nlp_pipeline.alerts import RunFailureNotifier
from nlp_pipeline.pipeline import DEFAULT_ARGS

# Listing and deleting files: minutes, unless the store hangs.
_GC_LIMIT = timedelta(hours=1)


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=_GC_LIMIT * (DEFAULT_ARGS["retries"] + 1),
    default_args=DEFAULT_ARGS | {"execution_timeout": _GC_LIMIT},
    tags=["nlp", "local", "maintenance"],
    doc_md=__doc__,
    on_failure_callback=RunFailureNotifier(),
)
def nlp_maintenance():
    @task
    def collect_garbage() -> str:
        from airflow.sdk.exceptions import AirflowSkipException
        from nlp_pipeline import artefacts
        from nlp_pipeline.operators.local import run_step

        registry = artefacts.registry_file()
        if not registry.exists():  # nothing registered yet; and gc without its registry would refuse
            raise AirflowSkipException(f"no registry at {registry} yet: nothing to clean up")
        root = artefacts.root()
        flags = ["--root", root, "--registries", registry]
        if artefacts.is_remote(root):
            flags += ["--workspace", artefacts.airflow_home() / "nlp-workspace"]
        return run_step("gc", *flags)

    collect_garbage()


nlp_maintenance()
