"""The local endpoint end to end: ``deploy-local``, ``rollback``, ``status`` and ``stop-local`` as a user runs them,
with a client sending requests the whole time."""

import asyncio
import json
import shutil
import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tasks.endpoint.state import pid_alive
from tests.conftest import flags, free_port, run_tasks

PAIRS = [
    {"sentence1": "The company posted a profit.", "sentence2": "The firm reported earnings."},
    {"sentence1": "Shares fell 3 percent in early trading on Monday.", "sentence2": "It rained all week."},
]


class LoadClient:
    """``clients`` concurrent clients posting pairs without pause until stopped; keeps every outcome."""

    def __init__(self, url: str, clients: int = 4):
        self.url, self.clients = url, clients
        self.outcomes: list[tuple[int, str]] = []  # (HTTP status or 0 for a transport error, version or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)

    def versions_seen(self) -> Counter:
        return Counter(detail for status, detail in self.outcomes if status == 200)

    def failures(self) -> list[tuple[int, str]]:
        return [outcome for outcome in self.outcomes if outcome[0] != 200]

    async def _run(self):
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as http:
            await asyncio.gather(*(self._client(http, offset) for offset in range(self.clients)))

    async def _client(self, http, offset: int):
        index = offset
        while not self._stop.is_set():
            try:
                response = await http.post("/invocations", json={"instances": [PAIRS[index % len(PAIRS)]]})
                body = response.json()
                self.outcomes.append((response.status_code, body.get("model_version") or body.get("error")))
            except httpx.HTTPError as error:
                self.outcomes.append((0, repr(error)))
            index += 1


def wait_for(condition, timeout: float = 30):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def status(state: Path) -> dict:
    return json.loads(run_tasks("status", "--state", str(state), "--json").stdout)


@pytest.fixture
def state(tmp_path):
    """A state folder whose endpoint, if any was started, is stopped after the test whatever happened."""
    folder = tmp_path / "ep"
    yield folder
    run_tasks("stop-local", "--state", str(folder), check=False)


@pytest.fixture
def corrupt_model(tmp_path, trained_tiny) -> Path:
    """A model folder whose graph is garbage, sealed as written: its digest holds, but it cannot load."""
    from tasks.runtime.digest import seal

    folder = tmp_path / "corrupt"
    shutil.copytree(trained_tiny, folder)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"not a graph")
    seal(folder)
    return folder


@pytest.fixture
def tampered_model(tmp_path, trained_tiny) -> Path:
    """A sealed model folder whose files changed after it was sealed: a file planted beside the graph."""
    folder = tmp_path / "tampered"
    shutil.copytree(trained_tiny, folder)
    (folder / "saved_model" / "planted.bin").write_bytes(b"not what was evaluated")
    return folder


@pytest.fixture
def nan_model(tmp_path, trained_tiny) -> Path:
    """A model that loads and runs but answers NaN: only the smoke check catches it."""
    import tensorflow as tf

    from tasks.training.export import SIGNATURE_INPUTS

    class NaNClassifier(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name=name) for name in SIGNATURE_INPUTS])
        def serve(self, input_ids, attention_mask, token_type_ids):
            return {"logits": tf.fill([tf.shape(input_ids)[0], 2], float("nan"))}

    folder = tmp_path / "nan"
    module = NaNClassifier()
    tf.saved_model.save(module, str(folder / "saved_model"), signatures={"serving_default": module.serve})
    shutil.copytree(trained_tiny / "tokenizer", folder / "tokenizer")
    return folder


def test_rollouts_under_load_never_fail_a_request(
    state, trained_tiny, int8_tiny, corrupt_model, nan_model, tampered_model
):
    port = free_port()
    started = run_tasks("deploy-local", "--model", str(trained_tiny), "--state", str(state), "--port", str(port))
    first = status(state)
    fp32, url = first["current"]["version"], first["url"]
    assert url == f"http://127.0.0.1:{port}" and fp32.startswith("fp32-") and fp32 in started.stdout
    with LoadClient(url) as load:
        wait_for(lambda: len(load.outcomes) > 20)
        run_tasks("deploy-local", "--model", str(int8_tiny), "--state", str(state))
        int8 = status(state)["current"]["version"]
        assert int8.startswith("int8-")
        wait_for(lambda: load.versions_seen()[int8] > 20)

        unregistered = "sha256:" + "0" * 64
        for broken, digest, reason in (
            (corrupt_model, "", "cannot load the serving signature"),
            (nan_model, "", "smoke check: logits are not finite"),
            (tampered_model, "", f"{tampered_model}: the content digest is sha256:"),
            (trained_tiny, unregistered, f"not the expected {unregistered}: the files changed"),
        ):
            deploy = ["--model", str(broken), "--state", str(state), "--model-digest", digest]
            refused = run_tasks("deploy-local", *deploy, check=False)
            assert refused.returncode == 1
            assert f"deploy of {broken} failed, still serving {int8}" in refused.stderr
            assert reason in refused.stderr
        assert httpx.get(f"{url}/ping").json()["model_version"] == int8

        rolled_back = run_tasks("rollback", "--state", str(state))
        assert f"serving   {fp32}" in rolled_back.stdout
        before = load.versions_seen()[fp32]
        wait_for(lambda: load.versions_seen()[fp32] > before + 20)
    assert load.failures() == []
    assert set(load.versions_seen()) == {fp32, int8}
    run_tasks("stop-local", "--state", str(state))

    recorded = json.loads((state / "state.json").read_text())
    assert recorded["current"]["version"] == fp32 and recorded["previous"]["version"] == int8
    assert [(entry["action"], entry["result"]) for entry in recorded["history"]] == [
        ("start", "serving"),
        ("deploy", "serving"),
        ("deploy", "rejected"),
        ("deploy", "rejected"),
        ("deploy", "rejected"),
        ("deploy", "rejected"),
        ("rollback", "serving"),
    ]
    assert not pid_alive(recorded["pid"]) and not (state / "control.sock").exists()


def test_a_restarted_endpoint_remembers_its_previous_model(state, trained_tiny, int8_tiny):
    port = free_port()
    run_tasks("deploy-local", "--model", str(trained_tiny), "--state", str(state), "--port", str(port))
    run_tasks("stop-local", "--state", str(state))
    stopped = run_tasks("status", "--state", str(state), check=False)
    assert stopped.returncode == 1 and "is not running" in stopped.stderr

    run_tasks("deploy-local", "--model", str(int8_tiny), "--state", str(state), "--port", str(port))
    restarted = status(state)
    assert restarted["current"]["model"] == str(int8_tiny)
    assert restarted["previous"]["model"] == str(trained_tiny)
    assert [entry["action"] for entry in restarted["history"]] == ["start", "start"]
    fp32, int8 = restarted["previous"]["version"], restarted["current"]["version"]
    stale = run_tasks("rollback", "--state", str(state), "--expect-version", fp32)  # another rollout won since
    assert f"nothing to roll back: the endpoint serves {int8}, not {fp32}" in stale.stdout
    assert status(state)["current"]["version"] == int8
    run_tasks("rollback", "--state", str(state), "--expect-version", int8)
    assert status(state)["current"]["model"] == str(trained_tiny)


def test_a_first_model_that_cannot_serve_leaves_no_server_behind(state, corrupt_model):
    port = free_port()
    result = run_tasks("deploy-local", *flags(model=corrupt_model, state=state, port=port), check=False)
    assert result.returncode == 1
    assert "the server could not serve its model: ModelError:" in result.stderr
    assert "cannot load the serving signature" in result.stderr
    recorded = json.loads((state / "state.json").read_text())
    wait_for(lambda: not pid_alive(recorded["pid"]))
    assert recorded["current"] is None and recorded["history"][-1]["result"] == "rejected"
    free = run_tasks("status", "--state", str(state), check=False)
    assert free.returncode == 1 and "is not running" in free.stderr


def test_commands_name_what_is_missing(tmp_path, trained_tiny):
    import socket

    nothing = run_tasks("rollback", "--state", str(tmp_path / "none"), check=False)
    assert nothing.returncode == 1 and "no endpoint runs from" in nothing.stderr
    never = run_tasks("status", "--state", str(tmp_path / "none"), check=False)
    assert never.returncode == 1 and "no endpoint was ever started from" in never.stderr
    no_model = run_tasks("deploy-local", "--state", str(tmp_path / "ep"), check=False)
    assert no_model.returncode == 2 and "--model must be a model folder or URI" in no_model.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        deploy = flags(model=trained_tiny, state=tmp_path / "ep", port=port)
        busy = run_tasks("deploy-local", *deploy, check=False)
    assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}: Address already in use" in busy.stderr


def test_deploy_local_hands_the_model_digest_to_a_new_server_and_to_a_running_one(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tasks.cli import parse
    from tasks.endpoint import commands
    from tasks.errors import ConfigError

    digest, model = "sha256:" + "c" * 64, tmp_path / "model"
    args = parse("deploy-local", ["--model", str(model), "--state", str(tmp_path / "ep"), "--model-digest", digest])
    described = {"url": "http://127.0.0.1:8080", "pid": 1, "started_at": "now", "current": None, "previous": None}
    sent = []

    def call(folder, request, timeout):
        sent.append(request)
        return {**described, "ok": True}

    monkeypatch.setattr(commands, "_call", call)
    commands.deploy(args)  # an endpoint runs: the swap request carries the digest
    assert sent[-1] == {"action": "deploy", "model": str(model), "digest": digest}

    spawned = []
    monkeypatch.setattr(commands, "_live_status", lambda folder: None)
    monkeypatch.setattr(commands, "_require_free_port", lambda host, port: None)
    monkeypatch.setattr(
        commands, "spawn_server", lambda flags, *_, **__: spawned.append(flags) or SimpleNamespace(pid=1)
    )
    monkeypatch.setattr(commands, "wait_ready", lambda *_: "fp32-x")
    commands.deploy(args)  # none runs: the new server's flags carry it, as serve's own parser reads them
    assert parse("serve", spawned[0]).model_digest == digest

    for step in ("serve", "deploy-local"):
        with pytest.raises(ConfigError, match=r"--model-digest must be empty or sha256: and 64 lowercase hex digits"):
            parse(step, ["--model", str(model), "--state", str(tmp_path / "ep"), "--model-digest", digest.upper()])


def test_deploy_local_fails_with_the_servers_reason_when_the_swap_is_refused(tmp_path, monkeypatch):
    from tasks.cli import parse
    from tasks.endpoint import commands, control_client
    from tasks.errors import EndpointError

    refusal = "deploy of /b refused, still serving fp32-a: it could not be recorded: EndpointError: state.json ..."
    described = {"url": "http://127.0.0.1:8080", "pid": 1, "started_at": "now", "current": None, "previous": None}
    answers = iter([{**described, "ok": True}, {**described, "ok": False, "error": refusal}])
    monkeypatch.setattr(control_client, "call", lambda *_: next(answers))
    with pytest.raises(EndpointError) as refused:
        commands.deploy(parse("deploy-local", ["--model", "/b", "--state", str(tmp_path / "ep")]))
    assert str(refused.value) == refusal
