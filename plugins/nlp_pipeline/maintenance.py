"""The maintenance DAG's task, of the local platform: ``python -m tasks gc`` on its artefact root, registry and
workspace.

Only the local DAGs' folders are collected (nlp_local's, and nlp_monitor_local's, whose monitoring reports no
registry entry names: they go after 14 days): the EKS and SageMaker DAGs share the root (Variable
``nlp_artefact_root``) but keep their models in other registries (ROOT/registry.sqlite, a SageMaker model
package group) that this one does not know, so their models would look unreferenced."""

from __future__ import annotations

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException

from nlp_pipeline import artefacts, commands, local, monitoring
from nlp_pipeline.operators.local import run_step


@task
def collect_garbage() -> str:
    """Remove what no registry entry names and nobody used for 14 days (the gc step's default); skipped until
    the first model is registered, since gc without its registry refuses to remove anything."""
    registry = artefacts.registry_file()
    if not registry.exists():
        raise AirflowSkipException(f"no registry at {registry} yet: nothing to clean up")
    root = artefacts.root()
    workspace = artefacts.workspace_root() if artefacts.is_remote(root) else None
    return run_step(
        *commands.command(
            "gc",
            {},
            root=root,
            dags=f"{local.DAG_ID},{monitoring.dag_id('local')}",
            registries=registry,
            workspace=workspace,
        )
    )
