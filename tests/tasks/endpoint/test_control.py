"""A local endpoint's owner-only control socket and its state folder, without a server."""

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from tasks.endpoint import control_client, control_server
from tasks.endpoint import state as endpoint_state
from tasks.errors import EndpointError
from tasks.serving.model_swap import ModelSlot
from tests.tasks.serving.test_model_swap import FakeModel, loader


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


def test_a_swap_whose_state_cannot_be_written_is_refused_with_the_reason_and_the_state_file_stays_true(
    tmp_path, monkeypatch
):
    from tasks.endpoint.control_server import LocalEndpoint

    endpoint = LocalEndpoint(str(tmp_path / "state"), "http://127.0.0.1:8080", "/a")
    written = endpoint_state.write

    def unwritable_once_b_is_served(folder, state):
        if (state.get("current") or {}).get("model") == "/b":
            (folder / f".state.json.tmp-{os.getpid()}").mkdir()  # where the new file goes is taken: the write fails
        written(folder, state)

    async def scenario():
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a"), "/b": FakeModel("int8-b")}), lambda: endpoint.record(slot))
        await slot.deploy("/a", action="start")
        monkeypatch.setattr(endpoint_state, "write", unwritable_once_b_is_served)
        answer = await endpoint.handle(slot, {"action": "deploy", "model": "/b"})
        return slot, answer

    slot, answer = asyncio.run(scenario())
    assert answer["ok"] is False
    assert answer["error"] == (
        "deploy of /b refused, still serving fp32-a: it could not be recorded: EndpointError:"
        f" {endpoint.folder / 'state.json'} could not be written: Is a directory"
    )
    assert answer["current"]["version"] == slot.model.version == "fp32-a"  # the answer is what is served
    assert endpoint_state.read(endpoint.folder)["current"]["version"] == "fp32-a"  # and what the file says


def test_a_state_file_that_cannot_be_written_names_itself_and_leaves_the_old_one(tmp_path):
    folder = endpoint_state.prepare(tmp_path / "state")
    endpoint_state.write(folder, {"pid": 1})
    (folder / f".state.json.tmp-{os.getpid()}").mkdir()  # where the new file would be written is taken
    with pytest.raises(EndpointError, match=r"state/state\.json could not be written: Is a directory"):
        endpoint_state.write(folder, {"pid": 2})
    assert endpoint_state.read(folder) == {"pid": 1}


def test_an_unexpected_failure_of_a_control_request_is_answered_not_dropped(tmp_path):
    from tasks.endpoint.control_server import LocalEndpoint

    endpoint = LocalEndpoint(str(tmp_path / "state"), "http://127.0.0.1:8080", "/a")

    class Broken(ModelSlot):
        async def rollback(self):
            raise RuntimeError("a bug")

    async def scenario():
        slot = Broken(loader({"/a": FakeModel("fp32-a")}))
        await slot.deploy("/a", action="start")
        return await endpoint.handle(slot, {"action": "rollback"})

    answer = asyncio.run(scenario())
    assert answer["ok"] is False and answer["error"] == "rollback failed: RuntimeError: a bug"
    assert answer["current"]["version"] == "fp32-a"


def test_a_deploy_request_carries_the_expected_digest_to_the_loader(tmp_path):
    from tasks.endpoint.control_server import LocalEndpoint

    endpoint = LocalEndpoint(str(tmp_path / "state"), "http://127.0.0.1:8080", "/a")
    asked = []

    async def scenario():
        slot = ModelSlot(loader({"/a": FakeModel("fp32-a"), "/b": FakeModel("int8-b")}, asked))
        await slot.deploy("/a", action="start")
        return [
            await endpoint.handle(slot, request)
            for request in (
                {"action": "deploy", "model": "/b", "digest": 7},
                {"action": "deploy", "model": "/b", "digest": "sha256:int8-b"},
            )
        ]

    bad, good = asyncio.run(scenario())
    assert bad == {"ok": False, "error": '"digest" must be a string: the content digest the model must have'}
    assert good["ok"] is True and good["current"]["digest"] == "sha256:int8-b"
    assert asked == [("/a", ""), ("/b", "sha256:int8-b")]


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
