"""The maintenance DAG's task, of the local platform: ``python -m tasks gc`` on its artefact root, registry and
workspace."""

from __future__ import annotations

from airflow.sdk import task
from airflow.sdk.exceptions import AirflowSkipException

from nlp_pipeline import artefacts, commands
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
    return run_step(*commands.command("gc", {}, root=root, registries=registry, workspace=workspace))
