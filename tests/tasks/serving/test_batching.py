"""The bounded queue in front of the model, without a server: admission, release, and requests dropped from a
batch once their client stopped waiting."""

import asyncio
import threading

import numpy as np
import pytest

from tasks.serving.batching import DynamicBatcher, Overloaded


class GatedModel:
    """Each call waits until the test opens the gate; records the pairs of every call."""

    def __init__(self):
        self.calls, self.gate = [], threading.Event()

    def predict(self, pairs):
        self.calls.append(list(pairs))
        self.gate.wait(10)
        return np.zeros((len(pairs), 2), dtype=np.float32)


def test_admission_is_bounded_by_queued_pairs_and_an_oversized_request_still_gets_in_alone():
    async def scenario():
        batcher = DynamicBatcher(max_queued_pairs=8, stuck_after=30)
        assert batcher.full() is None
        alone = batcher.admit(20)  # more than the bound, but nothing waits: never refused forever
        assert "20 pairs are waiting" in str(batcher.full())
        with pytest.raises(Overloaded, match=r"20 pairs are waiting for the model \(at most 8\)") as refused:
            batcher.admit(1)
        assert refused.value.retry_after >= 1
        batcher.release(alone)
        batcher.release(alone)  # once only
        assert batcher.queued_pairs == 0
        first = batcher.admit(6)
        with pytest.raises(Overloaded):
            batcher.admit(3)
        second = batcher.admit(2)
        assert batcher.queued_pairs == 8
        batcher.release(first), batcher.release(second)
        assert batcher.queued_pairs == 0

    asyncio.run(scenario())


def test_a_request_whose_client_stopped_waiting_is_dropped_from_the_batch():
    model = GatedModel()

    async def scenario():
        batcher = DynamicBatcher(max_batch_size=8, max_wait=0.01, max_queued_pairs=8, stuck_after=30)
        batcher.start()
        first = asyncio.create_task(batcher.submit(model, [1], batcher.admit(1)))
        await asyncio.sleep(0.1)  # its batch is in the model now
        waiting = [asyncio.create_task(batcher.submit(model, [pair], batcher.admit(1))) for pair in (2, 3, 4)]
        await asyncio.sleep(0.05)
        assert batcher.queued_pairs == 3
        waiting[1].cancel()  # the client of pair 3 timed out
        await asyncio.sleep(0.05)
        assert batcher.queued_pairs == 2, "its pairs no longer count against the queue"
        model.gate.set()
        await asyncio.gather(first, waiting[0], waiting[2])
        assert batcher.queued_pairs == 0 and batcher.health() is None
        await batcher.stop()

    asyncio.run(scenario())
    assert model.calls == [[1], [2, 4]]
