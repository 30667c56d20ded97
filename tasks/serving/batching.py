"""Dynamic batching behind a bounded queue: concurrent requests share one model call, overload is shed.

A request is first admitted (``admit``) by its number of pairs: while more than ``max_queued_pairs`` pairs wait
for a model call (being tokenised or queued), a request is refused with ``Overloaded``, which the server answers
503 with Retry-After; a request is never queued without bound and never silently lost. Admitted requests hand
over their pairs (``submit``) and await their rows of the result. One worker task takes the oldest waiting
request, then gathers more until the batch holds ``max_batch_size`` pairs or ``max_wait`` has passed since the
first arrived, and runs the model on a single background thread, so the event loop keeps accepting requests while
the model computes and model calls never overlap. A request whose client stopped waiting (the server's request
timeout cancelled it) is dropped from the queue before its batch is formed.

Each request names the model that encoded it, and a batch holds one model's requests only: while a new
model is swapped in, requests encoded by the old one finish on the old one.

``health`` says whether the worker can still serve: it is dead when its task ended, stuck when one model call has
run longer than ``stuck_after`` seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Model(Protocol):
    def predict(self, pairs: list) -> np.ndarray: ...


class Overloaded(Exception):
    """The queue is full; ``retry_after`` is the whole seconds it should take to drain."""

    def __init__(self, queued: int, limit: int, retry_after: int):
        super().__init__(f"{queued} pairs are waiting for the model (at most {limit}); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class Ticket:
    """An admitted request's pairs, counted against the queue until its batch starts or it ends."""

    pairs: int
    counted: bool = True


@dataclass
class _Waiting:
    model: Model
    pairs: Sequence
    future: asyncio.Future
    ticket: Ticket
    arrived: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(
        self,
        *,
        max_batch_size: int = 32,
        max_wait: float = 0.005,
        max_queued_pairs: int,
        stuck_after: float,
        on_batch: Callable[[int], None] = lambda size: None,
        on_model_seconds: Callable[[float], None] = lambda seconds: None,
        on_queued: Callable[[int], None] = lambda pairs: None,
    ):
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.max_queued_pairs = max_queued_pairs
        self.stuck_after = stuck_after
        # Metrics hooks: pairs per model call, seconds per model call, pairs queued.
        self.on_batch, self.on_model_seconds, self.on_queued = on_batch, on_model_seconds, on_queued
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker: asyncio.Task | None = None
        self._carried: _Waiting | None = None  # the request that did not fit into the last batch
        self._queued_pairs = 0
        self._busy_since: float | None = None  # when the running model call started
        self._seconds_per_pair = 0.0  # moving average over recent model calls, for Retry-After

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)  # a stuck model call must not hold up the exit

    @property
    def queued_pairs(self) -> int:
        return self._queued_pairs

    def health(self) -> str | None:
        """None while the worker can serve; otherwise why it cannot (dead or stuck)."""
        if self._worker is None or self._worker.done():
            return "the model worker is not running"
        if self._busy_since is not None and (running := time.perf_counter() - self._busy_since) > self.stuck_after:
            return f"the model worker is stuck: one model call has run {running:.0f} s (limit {self.stuck_after:g} s)"
        return None

    def full(self) -> Overloaded | None:
        """Overloaded while the queue holds ``max_queued_pairs`` pairs already: no request fits, whatever its size."""
        return self._overloaded(0) if self._queued_pairs >= self.max_queued_pairs else None

    def admit(self, pairs: int) -> Ticket:
        """Count ``pairs`` against the queue, or raise Overloaded when they do not fit."""
        if self._queued_pairs and self._queued_pairs + pairs > self.max_queued_pairs:
            raise self._overloaded(pairs)
        self._count(pairs)
        return Ticket(pairs)

    def _overloaded(self, pairs: int) -> Overloaded:
        drain = (self._queued_pairs + pairs) * self._seconds_per_pair
        return Overloaded(self._queued_pairs, self.max_queued_pairs, max(1, math.ceil(drain)))

    def release(self, ticket: Ticket) -> None:
        """Stop counting ``ticket``'s pairs (once): its batch started, or the request ended without one."""
        if ticket.counted:
            ticket.counted = False
            self._count(-ticket.pairs)

    async def submit(self, model: Model, pairs: Sequence, ticket: Ticket) -> np.ndarray:
        """``model``'s output rows for ``pairs`` (admitted as ``ticket``), computed together with whatever else
        waits for that model; the ticket is released when its batch starts or the request ends."""
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(model, pairs, future, ticket))
        try:
            return await future
        finally:
            self.release(ticket)

    def _count(self, pairs: int) -> None:
        self._queued_pairs += pairs
        self.on_queued(self._queued_pairs)

    async def _next(self) -> _Waiting:
        """The oldest waiting request whose client still waits for it."""
        while True:
            waiting = await self._queue.get()
            if not waiting.future.done():
                return waiting
            self.release(waiting.ticket)

    async def _gather(self) -> list[_Waiting]:
        first, self._carried = self._carried or await self._next(), None
        batch, size = [first], len(first.pairs)
        deadline = first.arrived + self.max_wait
        while size < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            try:
                waiting = (
                    self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, TimeoutError):
                break
            if waiting.future.done():
                self.release(waiting.ticket)
                continue
            if waiting.model is not first.model or size + len(waiting.pairs) > self.max_batch_size:
                self._carried = waiting
                break
            batch.append(waiting)
            size += len(waiting.pairs)
        return batch

    async def _run(self) -> None:
        while True:
            await self._run_batch(await self._gather())

    async def _run_batch(self, batch: list[_Waiting]) -> None:
        for waiting in batch:
            self.release(waiting.ticket)
        batch = [waiting for waiting in batch if not waiting.future.done()]
        if not batch:
            return
        pairs = [pair for waiting in batch for pair in waiting.pairs]
        self.on_batch(len(pairs))
        self._busy_since = started = time.perf_counter()
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, batch[0].model.predict, pairs)
        except Exception as error:  # the model failed: every request in the batch gets the error
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            return
        finally:
            self._busy_since = None
            seconds = time.perf_counter() - started
            self.on_model_seconds(seconds)
            self._seconds_per_pair = 0.8 * self._seconds_per_pair + 0.2 * seconds / len(pairs)
        start = 0
        for waiting in batch:
            if not waiting.future.done():  # a client that went away cancelled its future
                waiting.future.set_result(outputs[start : start + len(waiting.pairs)])
            start += len(waiting.pairs)
