"""A Hugging Face Hub stand-in on 127.0.0.1: serves model and dataset repos from local folders.

It answers the few endpoints ``huggingface_hub`` and ``datasets`` call to read a public repo (repo info,
tree listing, paths-info, file resolve), so ``snapshot_download`` and ``load_dataset`` run their real
code against data the tests generate. Point a process at it with ``HF_ENDPOINT``.
"""

from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse

SHA = "0123456789abcdef0123456789abcdef01234567"


@cache
def _sha1(path: Path) -> str:
    """Git-style object id of a file; cached, as model weights are large and asked for repeatedly."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _entry(root: Path, path: Path) -> dict:
    relative = path.relative_to(root).as_posix()
    if path.is_dir():
        return {"type": "directory", "path": relative, "oid": SHA}
    return {"type": "file", "path": relative, "size": path.stat().st_size, "oid": _sha1(path)}


def create_app(repos: dict[tuple[str, str], Path]) -> FastAPI:
    """``repos`` maps (kind, repo id) to a folder, kind being "models" or "datasets"."""
    app = FastAPI()

    def folder(kind: str, repo: str) -> Path:
        if (kind, repo) not in repos:
            raise HTTPException(404, headers={"X-Error-Code": "RepoNotFound"}, detail="Repository not found")
        return repos[(kind, repo)]

    def info(kind: str, repo: str) -> dict:
        root = folder(kind, repo)
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return {
            "id": repo,
            "sha": SHA,
            "private": False,
            "disabled": False,
            "gated": False,
            "siblings": [{"rfilename": name} for name in files],
            "cardData": {},
            "tags": [],
        }

    @app.get("/api/{kind}/{owner}/{name}/revision/{revision}")
    @app.get("/api/{kind}/{owner}/{name}")
    def repo_info(kind: str, owner: str, name: str, revision: str = "main"):
        return info(kind, f"{owner}/{name}")

    @app.get("/api/{kind}/{owner}/{name}/tree/{revision}")
    @app.get("/api/{kind}/{owner}/{name}/tree/{revision}/{path:path}")
    def tree(kind: str, owner: str, name: str, revision: str, request: Request, path: str = ""):
        root = folder(kind, f"{owner}/{name}")
        base = root / path
        if not base.exists():
            raise HTTPException(404, headers={"X-Error-Code": "EntryNotFound"}, detail="not found")
        recursive = request.query_params.get("recursive", "false").lower() == "true"
        children = base.rglob("*") if recursive else base.iterdir()
        return [_entry(root, child) for child in sorted(children)]

    @app.post("/api/{kind}/{owner}/{name}/paths-info/{revision}")
    async def paths_info(kind: str, owner: str, name: str, revision: str, request: Request):
        root = folder(kind, f"{owner}/{name}")
        form = await request.form()
        paths = form.getlist("paths")
        return [_entry(root, root / p) for p in paths if (root / p).exists()]

    def resolve(kind: str, repo: str, filename: str, request: Request):
        path = folder(kind, repo) / filename
        if not path.is_file():
            return JSONResponse({"error": "Entry not found"}, 404, headers={"X-Error-Code": "EntryNotFound"})
        headers = {"ETag": f'"{_sha1(path)}"', "X-Repo-Commit": SHA}
        if request.method == "HEAD":
            headers["Content-Length"] = str(path.stat().st_size)
            return JSONResponse(None, headers=headers)
        return FileResponse(path, headers=headers)

    @app.api_route("/datasets/{owner}/{name}/resolve/{revision}/{filename:path}", methods=["GET", "HEAD"])
    def resolve_dataset_file(owner: str, name: str, revision: str, filename: str, request: Request):
        return resolve("datasets", f"{owner}/{name}", filename, request)

    @app.api_route("/{owner}/{name}/resolve/{revision}/{filename:path}", methods=["GET", "HEAD"])
    def resolve_model_file(owner: str, name: str, revision: str, filename: str, request: Request):
        return resolve("models", f"{owner}/{name}", filename, request)

    return app


class FakeHub:
    """Runs the app with uvicorn in a thread; ``url`` is set once it listens."""

    def __init__(self, repos: dict[tuple[str, str], Path]):
        config = uvicorn.Config(create_app(repos), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> FakeHub:
        self.thread.start()
        while not self.server.started:
            threading.Event().wait(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
