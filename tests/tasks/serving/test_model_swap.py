"""Model swaps without a server: the model slot, per-model batches, the smoke check (the control socket that
requests them and the state file: tests/tasks/endpoint/test_control.py)."""

import asyncio
import threading

import numpy as np
import pytest

from tasks.errors import EndpointError, ModelError
from tasks.serving.batching import DynamicBatcher
from tasks.serving.model_swap import ModelSlot


class FakeModel:
    def __init__(self, version: str, offset: float = 0.0):
        self.version, self.offset, self.calls = version, offset, []
        self.digest = f"sha256:{version}"

    def predict(self, pairs):
        self.calls.append(list(pairs))
        return np.array([[pair + self.offset, 0.0] for pair in pairs], dtype=np.float32)


def loader(models: dict, asked: list | None = None):
    """``load(source, digest)`` returning ``models[source]``, raising it when it is an exception; each
    ``(source, digest)`` asked for is appended to ``asked``."""

    def load(source, digest):
        if asked is not None:
            asked.append((source, digest))
        model = models[source]
        if isinstance(model, Exception):
            raise model
        return model

    return load


def test_a_deploy_switches_and_remembers_the_previous_model():
    async def scenario():
        changes = []
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a"), "/b": FakeModel("int8-b")}), lambda: changes.append(1))
        await slot.deploy("/a", action="start")
        assert (slot.model.version, slot.previous) == ("fp32-a", None)
        await slot.deploy("/b")
        assert slot.model.version == "int8-b" and slot.previous.version == "fp32-a"
        await slot.deploy("/b")  # the same model again leaves the way back alone
        assert slot.previous.version == "fp32-a"
        await slot.rollback()
        assert (slot.model.version, slot.previous.version) == ("fp32-a", "int8-b")
        assert [(e["action"], e["version"], e["result"]) for e in slot.history] == [
            ("start", "fp32-a", "serving"),
            ("deploy", "int8-b", "serving"),
            ("deploy", "int8-b", "serving"),
            ("rollback", "fp32-a", "serving"),
        ]
        assert changes  # every step was recorded
        assert slot.describe()["status"] == "ready" and slot.describe()["loading"] is None

    asyncio.run(scenario())


def test_a_model_that_fails_to_load_is_rejected_and_the_old_one_keeps_serving():
    async def scenario():
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a"), "/bad": ModelError("smoke check: logits are not finite")}))
        await slot.deploy("/a")
        with pytest.raises(EndpointError, match=r"deploy of /bad failed, still serving fp32-a: ModelError: smoke"):
            await slot.deploy("/bad")
        assert slot.model.version == "fp32-a" and slot.previous is None and slot.load_error is None
        assert slot.history[-1] == {**slot.history[-1], "result": "rejected", "version": None, "model": "/bad"}

    asyncio.run(scenario())


def test_a_first_model_that_fails_leaves_the_slot_failed_with_the_reason():
    async def scenario():
        slot = ModelSlot(loader({"/bad": FileNotFoundError("no saved_model")}))
        with pytest.raises(EndpointError, match="nothing is served"):
            await slot.deploy("/bad", action="start")
        assert slot.status == "failed" and slot.load_error == "FileNotFoundError: no saved_model"

    asyncio.run(scenario())


def test_rollback_without_a_previous_model_is_refused():
    async def scenario():
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a")}))
        await slot.deploy("/a")
        with pytest.raises(EndpointError, match="no previous model"):
            await slot.rollback()

    asyncio.run(scenario())


def test_the_expected_digest_reaches_the_loader_and_a_rollback_asks_for_the_digest_it_served():
    async def scenario():
        asked = []
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a"), "/b": FakeModel("int8-b")}, asked))
        await slot.deploy("/a", "sha256:fp32-a", action="start")
        await slot.deploy("/b")  # no digest given: the loader checks the one sealed in the folder only
        assert slot.current.digest == "sha256:int8-b" and slot.previous.digest == "sha256:fp32-a"
        await slot.rollback()
        assert asked == [("/a", "sha256:fp32-a"), ("/b", ""), ("/a", "sha256:fp32-a")]
        assert slot.describe()["current"]["digest"] == "sha256:fp32-a"

    asyncio.run(scenario())


class Unwritable:
    """An ``on_change`` that records the slot, but fails as a full disk does on a description ``broken`` picks."""

    def __init__(self, broken=lambda description: False):
        self.broken, self.recorded = broken, []

    def __call__(self, slot):
        description = slot.describe()
        if self.broken(description):
            raise EndpointError("/state/state.json could not be written: No space left on device")
        self.recorded.append(description)


def serving(model: str):
    return lambda description: (description["current"] or {}).get("model") == model


def test_a_swap_that_cannot_be_recorded_is_refused_and_the_old_model_keeps_serving():
    async def scenario():
        record = Unwritable()
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a"), "/b": FakeModel("int8-b")}), lambda: record(slot))
        await slot.deploy("/a", action="start")
        record.broken = serving("/b")  # the load is recorded, the switch is not
        with pytest.raises(
            EndpointError,
            match=r"deploy of /b refused, still serving fp32-a: it could not be recorded: .*state\.json could not be"
            r" written: No space left on device",
        ):
            await slot.deploy("/b")
        assert slot.model.version == "fp32-a" and slot.current.version == "fp32-a" and slot.previous is None
        assert slot.status == "ready" and slot.loading is None
        assert [entry["version"] for entry in slot.history] == ["fp32-a"]
        assert record.recorded[-1]["current"]["version"] == "fp32-a"  # what the state file last said still holds
        record.broken = lambda description: False
        await slot.deploy("/b")  # once it can be recorded, the same rollout goes through
        assert slot.model.version == "int8-b" and record.recorded[-1]["current"]["version"] == "int8-b"

    asyncio.run(scenario())


def test_a_first_model_that_cannot_be_recorded_fails_instead_of_serving_unrecorded():
    async def scenario():
        record = Unwritable(serving("/a"))
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a")}), lambda: record(slot))
        with pytest.raises(EndpointError, match="start of /a refused, nothing is served: it could not be recorded"):
            await slot.deploy("/a", action="start")
        assert slot.model is None and slot.status == "failed" and "could not be written" in slot.load_error
        assert slot.loading is None and slot.current is None

    asyncio.run(scenario())


def test_a_rejected_model_whose_rejection_cannot_be_recorded_names_both_failures():
    async def scenario():
        record = Unwritable(lambda description: any(e["result"] == "rejected" for e in description["history"]))
        slot = ModelSlot(
            loader({"/a": FakeModel("fp32-a"), "/bad": ModelError("/bad: the content digest is x, not y")}),
            lambda: record(slot),
        )
        await slot.deploy("/a")
        with pytest.raises(
            EndpointError,
            match=r"^deploy of /bad failed, still serving fp32-a: ModelError: /bad: the content digest is x, not y;"
            r" and its rejection could not be recorded: EndpointError: /state/state.json could not be written",
        ):
            await slot.deploy("/bad")
        assert slot.model.version == "fp32-a" and slot.loading is None

        first = Unwritable(lambda description: any(e["result"] == "rejected" for e in description["history"]))
        empty = ModelSlot(loader({"/bad": ModelError("no saved_model")}), lambda: first(empty))
        with pytest.raises(EndpointError, match="nothing is served"):
            await empty.deploy("/bad", action="start")
        assert empty.status == "failed" and "no saved_model" in empty.load_error
        assert "could not be recorded" in empty.load_error

    asyncio.run(scenario())


def test_rollouts_run_one_at_a_time_while_the_served_model_keeps_answering():
    release = threading.Event()
    slow = FakeModel("fp32-slow")

    def load(source, digest):
        if source == "/slow":
            release.wait(10)
            return slow
        return FakeModel("fp32-" + source.strip("/"))

    async def scenario():
        slot = ModelSlot(load)
        await slot.deploy("/a")
        first = asyncio.create_task(slot.deploy("/slow"))
        second = asyncio.create_task(slot.deploy("/c"))
        await asyncio.sleep(0.05)
        assert slot.loading == "/slow" and slot.model.version == "fp32-a"  # still serving while loading
        release.set()
        await asyncio.gather(first, second)
        assert [e["version"] for e in slot.history] == ["fp32-a", "fp32-slow", "fp32-c"]

    asyncio.run(scenario())


def test_one_model_call_never_mixes_two_models():
    old, new = FakeModel("old"), FakeModel("new", offset=100)

    async def scenario():
        batcher = DynamicBatcher(max_batch_size=32, max_wait=0.05, max_queued_pairs=32, stuck_after=30)
        batcher.start()
        results = await asyncio.gather(
            *(
                batcher.submit(model, [pair], batcher.admit(1))
                for model, pair in ((old, 1), (old, 2), (new, 3), (old, 4))
            )
        )
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [row[0][0] for row in results] == [1, 2, 103, 4]
    assert old.calls == [[1, 2], [4]] and new.calls == [[3]]


class FakeSignature:
    """A serving function with chosen faults: NaN logits, a wrong shape, or padding that changes the result."""

    def __init__(self, fault: str = ""):
        self.fault = fault

    def __call__(self, input_ids, attention_mask, token_type_ids):
        rows = input_ids.shape[0]
        logits = np.tile([[0.5, -0.5]], (rows, 1)).astype(np.float32)
        if self.fault == "nan":
            logits[0, 0] = np.nan
        elif self.fault == "shape":
            logits = logits[:, :1]
        elif self.fault == "padding":
            logits += (attention_mask == 0).sum(axis=1, keepdims=True)
        return {"logits": Tensor(logits)}


class Tensor:
    def __init__(self, array):
        self.array = array

    def numpy(self):
        return self.array


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nan", "logits are not finite"),
        ("shape", r"logits of shape \(3, 1\), expected \(3, 2\)"),
        ("padding", "scored in a padded batch instead of alone"),
    ],
)
def test_the_smoke_check_refuses_a_broken_model(minilm_path, fault, message):
    from transformers import AutoTokenizer

    from tasks.serving.served_model import ServedModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    ServedModel(minilm_path, "fp32-ok", FakeSignature(), tokenizer, 128).smoke_check()
    with pytest.raises(ModelError, match=message):
        ServedModel(minilm_path, "fp32-bad", FakeSignature(fault), tokenizer, 128).smoke_check()
