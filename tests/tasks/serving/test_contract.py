"""The inference contract's answer, as every smoke test judges it (the Airflow side imports the same module)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tasks.serving.contract import LABELS, SMOKE_PAIRS, SMOKE_REQUEST, answer_problems
from tests.conftest import run_tasks

PAIRS = len(SMOKE_PAIRS)
GOOD = {
    "predictions": [1, 0, 1],
    "labels": ["equivalent", "not_equivalent", "equivalent"],
    "probabilities": [[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]],
    "model_version": "v1",
}


def test_the_request_carries_every_smoke_pair():
    assert SMOKE_REQUEST == {"instances": [{"sentence1": a, "sentence2": b} for a, b in SMOKE_PAIRS]}
    assert PAIRS == len(GOOD["predictions"])


def test_an_answer_in_the_contracts_shape_has_no_problems():
    assert answer_problems(json.dumps(GOOD).encode()) == (GOOD, [])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"predictions": [1]}, f"{PAIRS} pairs, answer "),
        ({"labels": ["equivalent", "maybe", "equivalent"]}, f"label 'maybe' not in {LABELS}"),
        ({"probabilities": [[0.2, 0.8], [0.9, 0.2], [0.4, 0.6]]}, "probabilities [0.9, 0.2] do not sum to 1"),
    ],
)
def test_each_broken_rule_is_named(change, problem):
    body, problems = answer_problems(json.dumps(GOOD | change).encode())
    assert body == GOOD | change
    assert len(problems) == 1 and problems[0].startswith(problem)


@pytest.mark.parametrize("raw", [b"<html>busy</html>", b'{"predictions": []}', b"[1, 2]"])
def test_a_body_that_is_not_the_contracts_answer_is_refused_whole(raw):
    body, problems = answer_problems(raw)
    assert body is None
    assert len(problems) == 1 and problems[0].startswith("not the inference contract's answer (")
    assert repr(raw[:300]) in problems[0]


class _Endpoint(BaseHTTPRequestHandler):
    """An endpoint that answers ``/invocations`` with ``answer`` and refuses a malformed pair with 400."""

    answer: dict = GOOD

    def do_GET(self):
        self._reply(200 if self.path == "/ping" else 404, {})

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        malformed = any("sentence2" not in pair for pair in request["instances"])
        self._reply(400, {"error": "sentence2 missing"}) if malformed else self._reply(200, self.answer)

    def _reply(self, status: int, body: dict):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    """The base URL of a fake endpoint; set ``_Endpoint.answer`` to change what it answers."""
    server = HTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    _Endpoint.answer = GOOD


def test_the_smoke_test_step_passes_an_answer_in_the_contracts_shape(endpoint):
    result = run_tasks("smoke-test", "--url", endpoint, "--expect-version", "v1")
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "url": endpoint,
        "model_version": "v1",
        "labels": GOOD["labels"],
    }


def test_the_smoke_test_step_names_what_the_contract_finds_wrong(endpoint):
    _Endpoint.answer = GOOD | {"labels": ["equivalent", "maybe", "equivalent"]}
    result = run_tasks("smoke-test", "--url", endpoint, check=False)
    assert result.returncode == 1
    assert f"error: smoke test failed: label 'maybe' not in {LABELS}" in result.stderr
