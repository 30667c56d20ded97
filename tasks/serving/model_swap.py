"""The model an endpoint serves, and how it is replaced with zero downtime.

A new model's content digest is verified, then it is loaded, warmed up and smoke-checked on a worker thread
while the current one keeps serving. Only a model that passed all of these replaces it, in one assignment on the
event loop; each request reads the model once, so it is encoded, scored and labelled by the same model, and the
batcher never mixes two models in one call. A model that fails is rejected with its reason and the served one
stays. Rollouts run one at a time.

Every change is recorded (``on_change``: a local endpoint's ``state.json``) before any request can see it, with
no ``await`` in between; a change that cannot be recorded is undone and refused. So what the state file names is
what is served, and a rollout whose record failed is a failed rollout with nothing to roll back, never a switch
that the caller, the state file and the DAG's rollback cannot see. (Reporting the switch as an error instead
would leave an unrecorded model serving: the DAG's rollback task skips a deploy that failed.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NoReturn

from tasks.endpoint.state import HISTORY_KEPT, now
from tasks.errors import EndpointError, describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    model: str  # the model folder or URI, as the server loads it
    version: str
    since: str
    digest: str = ""  # the content digest the model had when it was verified and loaded

    @classmethod
    def from_dict(cls, record: dict | None) -> Deployment | None:
        if not record:
            return None
        return cls(record["model"], record["version"], record["since"], record.get("digest", ""))


class ModelSlot:
    """The served model; ``load(source, digest)`` returns a model (with its ``version`` and verified ``digest``)
    that is warm and passed its smoke check, or raises; ``on_change()`` records the slot, or raises."""

    def __init__(
        self,
        load: Callable[[str, str], object],
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

    async def deploy(self, source: str, digest: str = "", action: str = "deploy") -> Deployment:
        """Serve ``source`` once it has the content digest ``digest`` (when given; always the one sealed in it)
        and has loaded beside the current model; on any failure keep the current one."""
        async with self._lock:
            self._change(action, source, loading=source)
            try:
                model = await asyncio.to_thread(self._load, source, digest)
            except Exception as failure:  # any failure to verify, load or check rejects the model, whatever its kind
                self._reject(action, source, failure)
            current = Deployment(source, model.version, now(), model.digest)
            served = self.current
            switched = served is not None and (served.model, served.version) != (source, model.version)
            self._change(
                action,
                source,
                model=model,
                current=current,
                previous=served if switched else self.previous,
                load_error=None,
                loading=None,
                history=self._logged(action, source, model.version, None),
            )
            log.info("%s: now serving %s (%s, %s)", action, model.version, model.digest or "no digest", source)
            return current

    async def rollback(self) -> Deployment:
        """Serve the previous model again, loaded and checked like any new one."""
        if self.previous is None:
            raise EndpointError("there is no previous model to roll back to")
        return await self.deploy(self.previous.model, self.previous.digest, action="rollback")

    def describe(self) -> dict:
        return {
            "status": self.status,
            "load_error": self.load_error,
            "current": asdict(self.current) if self.current else None,
            "previous": asdict(self.previous) if self.previous else None,
            "loading": self.loading,
            "history": self.history,
        }

    def _kept(self) -> str:
        return f"still serving {self.current.version}" if self.current else "nothing is served"

    def _reject(self, action: str, source: str, failure: Exception) -> NoReturn:
        reason = describe(failure)
        log.error("%s of %s rejected: %s", action, source, reason)
        rejected = EndpointError(f"{action} of {source} failed, {self._kept()}: {reason}")
        try:
            self._change(
                action,
                source,
                loading=None,
                load_error=reason if self.model is None else self.load_error,
                history=self._logged(action, source, None, reason),
            )
        except Unrecorded as unrecorded:
            rejected = EndpointError(f"{rejected}; and its rejection {unrecorded.reason}")
            if self.model is None:
                self.load_error = str(rejected)
        raise rejected from failure

    def _logged(self, action: str, source: str, version: str | None, reason: str | None) -> list[dict]:
        """The history with this rollout's outcome appended."""
        entry = {"at": now(), "action": action, "model": source, "version": version}
        entry |= {"result": "rejected", "reason": reason} if reason else {"result": "serving"}
        return [*self.history, entry][-HISTORY_KEPT:]

    def _change(self, action: str, source: str, **changes) -> None:
        """Apply ``changes`` and record them, with no ``await`` in between (no request sees an unrecorded model);
        when they cannot be recorded, undo them and raise Unrecorded. A slot left serving nothing says why."""
        before = {name: getattr(self, name) for name in changes}
        for name, value in changes.items():
            setattr(self, name, value)
        try:
            self._on_change()
        except Exception as failure:  # a full disk, a read-only folder: whatever stops the record stops the change
            for name, value in before.items():
                setattr(self, name, value)
            self.loading = None  # the rollout ends here
            unrecorded = Unrecorded(action, source, self._kept(), describe(failure))
            if self.model is None:
                self.load_error = str(unrecorded)
            log.error("%s", unrecorded)
            raise unrecorded from failure


class Unrecorded(EndpointError):
    """A change to the slot that could not be recorded, so it was not made."""

    def __init__(self, action: str, source: str, kept: str, reason: str):
        self.reason = f"could not be recorded: {reason}"
        super().__init__(f"{action} of {source} refused, {kept}: it {self.reason}")
