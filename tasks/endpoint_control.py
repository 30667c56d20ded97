"""The server side of a local endpoint: it records itself in its state folder and takes rollouts on its
owner-only control socket (``python -m tasks serve --state DIR``, as ``deploy-local`` starts it)."""

from __future__ import annotations

import asyncio
import os

from tasks import control, endpoint_state
from tasks.errors import EndpointError
from tasks.rollout import Deployment, ModelSlot


class LocalEndpoint:
    def __init__(self, state: str, url: str, model: str):
        self.folder = endpoint_state.prepare(state)
        self.url = url
        self.socket = self.folder / endpoint_state.CONTROL_SOCKET
        self.started_at = endpoint_state.now()
        self._model = model
        self._server: asyncio.AbstractServer | None = None

    def recalled(self) -> dict:
        """What the last server in this folder served: its model becomes the previous one, its history goes on."""
        recorded = endpoint_state.read(self.folder) or {}
        current = Deployment.from_dict(recorded.get("current"))
        previous = Deployment.from_dict(recorded.get("previous"))
        if current is not None and current.model != self._model:
            previous = current
        return {"previous": previous, "history": recorded.get("history", [])}

    def record(self, slot: ModelSlot) -> None:
        endpoint_state.write(self.folder, self.describe(slot))

    def describe(self, slot: ModelSlot) -> dict:
        return {
            "pid": os.getpid(),
            "url": self.url,
            "control_socket": str(self.socket),
            "started_at": self.started_at,
            **slot.describe(),
        }

    async def open_control(self, slot: ModelSlot) -> None:
        self._server = await control.serve(self.socket, lambda request: self.handle(slot, request))

    def close_control(self) -> None:
        if self._server is not None:
            self._server.close()
            self.socket.unlink(missing_ok=True)

    async def handle(self, slot: ModelSlot, request: dict) -> dict:
        action = request.get("action")
        try:
            if action == "deploy":
                model = request.get("model")
                if not isinstance(model, str) or not model:
                    return {"ok": False, "error": 'deploy needs "model": a model folder or URI'}
                await slot.deploy(model)
            elif action == "rollback":
                await slot.rollback()
            elif action != "status":
                return {"ok": False, "error": f"unknown action {action!r}; use deploy, rollback or status"}
        except EndpointError as rejected:
            return {**self.describe(slot), "ok": False, "error": str(rejected)}
        return {**self.describe(slot), "ok": True}


def client_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a server listening on ``host``."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
