"""The artefact app: a run's report, chart and model cards under a local artefact root, opened from the UI.

A link to ``file://`` does not open from a browser (and the Airflow UI drops it), so the api-server serves these
files itself, at ``ARTEFACTS_PREFIX/DAG_ID/PATH`` (nlp_pipeline/links.py builds the links):

- only ``SERVED_FILES`` (report.md, report.png, a model card README.md), only under ``ROOT/DAG_ID/`` of the
  local artefact root (artefacts.py), after resolving symlinks and ``..``: anything else is 404, whatever exists;
- only to a person Airflow lets read DAG_ID's task instances (``requires_access_dag``, the check behind the REST
  API's task-instance routes): the UI's session cookie (``_token``), which a plain browser navigation sends,
  or a bearer token. Anonymous is 401;
- Markdown as plain text (``nosniff``): nothing in a report runs in the browser.

Artefacts on S3 open on the S3 console instead; the app serves nothing from a remote root.

The links themselves need no registration here: the serialised DAG keeps each link's name and XCom key, and
the worker stores the URL (nlp_pipeline/links.py).
"""

from __future__ import annotations

from pathlib import Path

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPBearer
from nlp_pipeline import artefacts
from nlp_pipeline.links import ARTEFACTS_PREFIX, CHART, SERVED_FILES
from starlette.concurrency import run_in_threadpool

MEDIA_TYPES = {CHART: "image/png"}  # the rest (Markdown) is shown as plain text
HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; img-src 'self'"}


def served_file(dag_id: str, path: str) -> Path:
    """The file ``ROOT/DAG_ID/PATH`` if the app may serve it, else HTTPException 404 naming what is allowed."""
    not_served = HTTPException(
        status.HTTP_404_NOT_FOUND,
        f"not served: only {', '.join(sorted(SERVED_FILES))} files of a DAG's folder under the local artefact root",
    )
    root = artefacts.root()
    if artefacts.is_remote(root) or Path(path).name not in SERVED_FILES:
        raise not_served
    base = Path(root).resolve()
    target = (base / dag_id / path).resolve()
    inside = target.is_relative_to(base) and target.relative_to(base).parts[:1] == (dag_id,)
    if not inside or target.name not in SERVED_FILES or not target.is_file():
        raise not_served
    return target


async def require_task_instance_reader(request: Request) -> None:
    """The REST API's own check for reading the task instances of the path's ``dag_id``: the user from the bearer
    token, else the UI's session cookie (``get_user``), authorised by the auth manager (``requires_access_dag``).
    Imported when a request comes: the api-server's security module takes seconds to import, and every Airflow
    process that loads plugins would pay for it. The authorisation queries the database: the core API runs it
    as a sync dependency in the threadpool, and so does this, off the api-server's event loop."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    user = await get_user(request, None, await HTTPBearer(auto_error=False)(request))
    await run_in_threadpool(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE), request, user)


def artefact_app() -> FastAPI:
    app = FastAPI(title="NLP pipeline artefacts", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/{dag_id}/{path:path}", dependencies=[Depends(require_task_instance_reader)])
    def read_artefact(dag_id: str, path: str) -> FileResponse:
        target = served_file(dag_id, path)
        media_type = MEDIA_TYPES.get(target.name, "text/plain; charset=utf-8")
        return FileResponse(
            target, media_type=media_type, headers=HEADERS, filename=target.name, content_disposition_type="inline"
        )

    return app


class NlpLinksPlugin(AirflowPlugin):
    name = "nlp_links"
    fastapi_apps = [{"app": artefact_app(), "url_prefix": ARTEFACTS_PREFIX, "name": "NLP pipeline artefacts"}]
