"""The model an endpoint serves, and how it is replaced with zero downtime.

A new model is loaded, warmed up and smoke-checked on a worker thread while the current one keeps serving.
Only a model that passed all three replaces it, in one assignment on the event loop; each request reads
the model once, so it is encoded, scored and labelled by the same model, and the batcher never mixes two
models in one call. A model that fails is rejected with its reason and the served one stays. Rollouts run
one at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tasks.endpoint.state import HISTORY_KEPT, now
from tasks.errors import EndpointError, describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    model: str  # the model folder or URI, as the server loads it
    version: str
    since: str

    @classmethod
    def from_dict(cls, record: dict | None) -> Deployment | None:
        return cls(record["model"], record["version"], record["since"]) if record else None


class ModelSlot:
    """The served model; ``load(source)`` returns a model that is warm and passed its smoke check, or raises."""

    def __init__(
        self,
        load: Callable[[str], object],
        on_change: Callable[[], None] = lambda: None,
        *,
        previous: Deployment | None = None,
        history: list[dict] | None = None,
    ):
        self.model = None
        self.current: Deployment | None = None
        self.previous = previous
        self.load_error: str | None = None
        self.loading: str | None = None
        self.history = list(history or [])
        self._load = load
        self._on_change = on_change
        self._lock = asyncio.Lock()

    @property
    def status(self) -> str:
        if self.model is not None:
            return "ready"
        return "failed" if self.load_error else "loading"

    async def deploy(self, source: str, action: str = "deploy") -> Deployment:
        """Serve ``source`` once it has loaded beside the current model; on failure keep the current one."""
        async with self._lock:
            self.loading = source
            self._on_change()
            try:
                model = await asyncio.to_thread(self._load, source)
            except Exception as failure:  # any failure to load or check rejects the model, whatever its kind
                reason = describe(failure)
                if self.model is None:
                    self.load_error = reason
                self._record(action, source, None, reason)
                kept = f"still serving {self.current.version}" if self.current else "nothing is served"
                raise EndpointError(f"{action} of {source} failed, {kept}: {reason}") from failure
            if self.current is not None and (self.current.model, self.current.version) != (source, model.version):
                self.previous = self.current
            self.model, self.current, self.load_error = model, Deployment(source, model.version, now()), None
            self._record(action, source, model.version, None)
            log.info("%s: now serving %s (%s)", action, model.version, source)
            return self.current

    async def rollback(self) -> Deployment:
        """Serve the previous model again, loaded and checked like any new one."""
        if self.previous is None:
            raise EndpointError("there is no previous model to roll back to")
        return await self.deploy(self.previous.model, action="rollback")

    def describe(self) -> dict:
        return {
            "status": self.status,
            "load_error": self.load_error,
            "current": asdict(self.current) if self.current else None,
            "previous": asdict(self.previous) if self.previous else None,
            "loading": self.loading,
            "history": self.history,
        }

    def _record(self, action: str, source: str, version: str | None, reason: str | None) -> None:
        self.loading = None
        entry = {"at": now(), "action": action, "model": source, "version": version}
        entry |= {"result": "rejected", "reason": reason} if reason else {"result": "serving"}
        if reason:
            log.error("%s of %s rejected: %s", action, source, reason)
        self.history = [*self.history, entry][-HISTORY_KEPT:]
        self._on_change()
