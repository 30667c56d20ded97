"""Model swaps without a server: the model slot, per-model batches, the smoke check, the control socket, the state file."""

import asyncio
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from tasks.endpoint import control_client, control_server
from tasks.endpoint import state as endpoint_state
from tasks.errors import EndpointError, ModelError
from tasks.serving.batching import DynamicBatcher
from tasks.serving.model_swap import ModelSlot


class FakeModel:
    def __init__(self, version: str, offset: float = 0.0):
        self.version, self.offset, self.calls = version, offset, []

    def predict(self, pairs):
        self.calls.append(list(pairs))
        return np.array([[pair + self.offset, 0.0] for pair in pairs], dtype=np.float32)


def loader(models: dict):
    """``load(source)`` returning ``models[source]``, raising it when it is an exception."""

    def load(source):
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


def test_rollouts_run_one_at_a_time_while_the_served_model_keeps_answering():
    release = threading.Event()
    slow = FakeModel("fp32-slow")

    def load(source):
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
        batcher = DynamicBatcher(max_batch_size=32, max_wait=0.05)
        batcher.start()
        results = await asyncio.gather(
            batcher.submit(old, [1]), batcher.submit(old, [2]), batcher.submit(new, [3]), batcher.submit(old, [4])
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


def serve_control(tmp_path, handle):
    """Run a control server on a thread; returns its socket path and a function that closes it (leaving the file)."""
    path = tmp_path / "control.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(control_server.serve(path, handle), loop).result(5)

    def stop():
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)

    return path, stop


def test_the_control_socket_is_owner_only_and_answers_one_json_line(tmp_path):
    async def echo(request):
        return {"ok": True, "echo": request}

    path, stop = serve_control(tmp_path, echo)
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert control_client.call(path, {"action": "status"}, 5) == {"ok": True, "echo": {"action": "status"}}
        import socket

        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(path))
            raw.sendall(b"not json\n")
            answer = json.loads(raw.makefile("rb").readline())
        assert answer["ok"] is False and "not one line of JSON" in answer["error"]
    finally:
        stop()
    with pytest.raises(control_client.NotRunning, match="nothing listens"):
        control_client.call(path, {"action": "status"}, 5)


@pytest.mark.skipif(os.getuid() != 0, reason="acting as another user needs root (CI runs as root)")
def test_another_user_is_refused_even_when_the_socket_file_is_open_to_all(tmp_path):
    calls = []

    async def handle(request):
        calls.append(request)
        return {"ok": True}

    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # outside pytest's root-only tmp tree
    folder.chmod(0o755)
    path, stop = serve_control(folder, handle)
    try:
        path.chmod(0o666)  # take the file permission away, to show the kernel's peer check alone refuses
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.close(read)
                os.setuid(65534)
                answer = control_client.call(path, {"action": "deploy", "model": "/evil"}, 5)
                os.write(write, json.dumps(answer).encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(child, 0)
        answer = json.loads(os.read(read, 4096))
    finally:
        stop()
        shutil.rmtree(folder)
    assert answer == {"ok": False, "error": "uid 65534 may not control this endpoint; only its owner may"}
    assert calls == []


def test_control_requests_name_their_mistakes(tmp_path):
    from tasks.endpoint.control_server import LocalEndpoint

    endpoint = LocalEndpoint(str(tmp_path / "state"), "http://127.0.0.1:8080", "/a")

    async def scenario():
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a")}), lambda: endpoint.record(slot))
        await slot.deploy("/a", action="start")
        return [
            await endpoint.handle(slot, request)
            for request in ({"action": "deploy"}, {"action": "explode"}, {"action": "rollback"}, {"action": "status"})
        ]

    missing, unknown, no_previous, status = asyncio.run(scenario())
    assert missing == {"ok": False, "error": 'deploy needs "model": a model folder or URI'}
    assert unknown == {"ok": False, "error": "unknown action 'explode'; use deploy, rollback or status"}
    assert no_previous["ok"] is False and no_previous["error"] == "there is no previous model to roll back to"
    assert status["ok"] is True and status["current"]["version"] == "fp32-a" and status["pid"] == os.getpid()
    assert endpoint_state.read(endpoint.folder)["current"] == status["current"]


def test_the_state_folder_is_private_and_a_bad_state_file_names_itself(tmp_path):
    folder = endpoint_state.prepare(tmp_path / "state")
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert endpoint_state.read(folder) is None
    endpoint_state.write(folder, {"pid": 1})
    assert endpoint_state.read(folder) == {"pid": 1}
    (folder / "state.json").write_text("{broken")
    with pytest.raises(EndpointError, match=r"state\.json: not valid JSON"):
        endpoint_state.read(folder)
    with pytest.raises(EndpointError, match="too long for the control socket"):
        endpoint_state.prepare(tmp_path / ("x" * 120))


def test_a_reaped_or_zombie_process_is_not_alive():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT) is None:
        pass
    assert not endpoint_state.pid_alive(child.pid)  # exited, not reaped yet: a zombie
    child.wait()
    assert not endpoint_state.pid_alive(child.pid)
    assert endpoint_state.pid_alive(os.getpid())
