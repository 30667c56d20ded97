"""Dynamic batching: concurrent requests share one model call.

Each request hands over its pairs and awaits its rows of the result. One worker task takes the oldest
waiting request, then gathers more until the batch holds ``max_batch_size`` pairs or ``max_wait`` has
passed since the first arrived, and runs the model on a single background thread, so the event loop keeps
accepting requests while the model computes and model calls never overlap.

Each request names the model that encoded it, and a batch holds one model's requests only: while a new
model is swapped in, requests encoded by the old one finish on the old one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Model(Protocol):
    def predict(self, pairs: list) -> np.ndarray: ...


@dataclass
class _Waiting:
    model: Model
    pairs: Sequence
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(
        self,
        *,
        max_batch_size: int = 32,
        max_wait: float = 0.005,
        on_batch: Callable[[int], None] = lambda size: None,
    ):
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker: asyncio.Task | None = None
        self._carried: _Waiting | None = None  # the request that did not fit into the last batch

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, model: Model, pairs: Sequence) -> np.ndarray:
        """``model``'s output rows for ``pairs``, computed together with whatever else waits for that model."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Waiting(model, pairs, future))
        return await future

    async def _gather(self) -> list[_Waiting]:
        first, self._carried = self._carried or await self._queue.get(), None
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
        pairs = [pair for waiting in batch for pair in waiting.pairs]
        self.on_batch(len(pairs))
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, batch[0].model.predict, pairs)
        except Exception as error:  # the model failed: every request in the batch gets the error
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            return
        start = 0
        for waiting in batch:
            if not waiting.future.done():  # a client that went away cancelled its future
                waiting.future.set_result(outputs[start : start + len(waiting.pairs)])
            start += len(waiting.pairs)
