"""The inference server over real HTTP on 127.0.0.1: the contract, every client error, metrics, batching, SIGTERM."""

import asyncio
import json
import re
import signal
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tasks.serving.contract import LABELS
from tests.conftest import ServerProcess, flags

PAIR = {"sentence1": "The company posted a profit.", "sentence2": "The firm reported earnings."}
MAX_INSTANCES = 8
MAX_BODY = 32768
MAX_CHARS = 10_000


@pytest.fixture(scope="module")
def server(int8_tiny, tmp_path_factory):
    limits = flags(max_instances=MAX_INSTANCES, max_body_bytes=MAX_BODY, max_sentence_chars=MAX_CHARS, max_wait_ms=50)
    process = ServerProcess(int8_tiny, *limits, log=tmp_path_factory.mktemp("server") / "server.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def invoke(server, payload, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/invocations", json=payload, timeout=30, **kwargs)


def test_ping_names_the_model_version(server):
    answer = httpx.get(f"{server.url}/ping").json()
    assert answer["status"] == "ready" and answer["model_version"].startswith("int8-")


def test_text_pairs_get_tf_serving_predictions_labels_and_probabilities(server):
    response = invoke(server, {"instances": [PAIR, {"sentence1": "Prices rose.", "sentence2": "Prices fell."}]})
    assert response.status_code == 200
    body = response.json()
    assert len(body["predictions"]) == 2 and all(len(row) == 2 for row in body["predictions"])
    assert set(body["labels"]) <= {"equivalent", "not_equivalent"}
    assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in body["probabilities"])
    assert body["model_version"] == httpx.get(f"{server.url}/ping").json()["model_version"]


def test_pre_tokenised_instances_match_the_same_text(server, int8_tiny):
    from transformers import AutoTokenizer

    encoded = AutoTokenizer.from_pretrained(int8_tiny / "tokenizer")(PAIR["sentence1"], PAIR["sentence2"])
    instance = {name: encoded[name] for name in ("input_ids", "attention_mask", "token_type_ids")}
    tokenised = invoke(server, {"instances": [instance, {"input_ids": encoded["input_ids"]}]}).json()
    text = invoke(server, {"instances": [PAIR]}).json()
    assert tokenised["predictions"][0] == pytest.approx(text["predictions"][0], abs=1e-4)
    assert tokenised["labels"][1] == text["labels"][0]


TOO_LONG = {"input_ids": [101] * 129}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([PAIR], 'the body must be a JSON object with "instances"'),
        ({"pairs": [PAIR]}, 'the body must be a JSON object with "instances"'),
        ({"instances": [PAIR], "extra": 1}, "unknown top-level field(s) ['extra']"),
        ({"instances": PAIR}, '"instances" must be a list, got an object'),
        ({"instances": []}, '"instances" is empty'),
        ({"instances": [PAIR] * (MAX_INSTANCES + 1)}, f'"instances" has 9 pairs; at most {MAX_INSTANCES} per request'),
        ({"instances": ["a sentence"]}, "instances[0] must be an object, got a string"),
        ({"instances": [{"sentence1": "a"}]}, "instances[0].sentence2 is missing"),
        ({"instances": [{"sentence1": "a", "sentence2": 3}]}, "instances[0].sentence2 must be a string, got a number"),
        ({"instances": [{"sentence1": " ", "sentence2": "b"}]}, "instances[0].sentence1 is empty"),
        (
            {"instances": [PAIR, {"input_ids": [101, 102]}]},
            "instances[1]: unknown field(s) ['input_ids'] for a text pair",
        ),
        ({"instances": [{"input_ids": [101, 10**6]}]}, "instances[0].input_ids[1] is 1000000; allowed: 0 to 30521"),
        ({"instances": [{"input_ids": [101, 1.5]}]}, "instances[0].input_ids[1] must be an integer, got a number"),
        ({"instances": [{"input_ids": [101, True]}]}, "instances[0].input_ids[1] must be an integer, got a boolean"),
        ({"instances": [{"input_ids": []}]}, "instances[0].input_ids must be a non-empty list of integers"),
        (
            {"instances": [{"input_ids": [101, 102], "attention_mask": [1]}]},
            "attention_mask has 1 values for 2 input_ids",
        ),
        ({"instances": [{"input_ids": [101], "token_type_ids": [2]}]}, "token_type_ids[0] is 2; allowed: 0 to 1"),
        ({"instances": [TOO_LONG]}, "instances[0].input_ids has 129 tokens; the model takes at most 128"),
        (
            {"instances": [PAIR, {"sentence1": "a", "sentence2": "!" * (MAX_CHARS + 1)}]},
            f"instances[1].sentence2 has {MAX_CHARS + 1} characters; at most {MAX_CHARS}",
        ),
    ],
)
def test_client_mistakes_are_400_with_a_message(server, payload, message):
    response = invoke(server, payload)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_bad_json_large_bodies_and_other_content_types(server):
    bad = httpx.post(f"{server.url}/invocations", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("the body is not valid JSON")
    large = invoke(server, {"instances": [{"sentence1": "x" * MAX_BODY, "sentence2": "y"}]})
    assert large.status_code == 413 and str(MAX_BODY) in large.json()["error"]
    streamed = iter([b"{" + b" " * MAX_BODY + b"}"])
    chunked = httpx.post(f"{server.url}/invocations", content=streamed, headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    text = httpx.post(f"{server.url}/invocations", content=b"a,b", headers={"content-type": "text/csv"})
    assert text.status_code == 415 and "'text/csv' is not supported" in text.json()["error"]


def test_a_long_pair_never_holds_up_ping(server):
    """A pair at the length limit, 10,000 tokens a sentence, is tokenised off the event loop, in linear time (the
    tokenizer's own pair truncation took seconds, and /ping waited behind it)."""
    longest = {"sentence1": "!" * MAX_CHARS, "sentence2": "?" * MAX_CHARS}

    async def long_pair_and_pings():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            invocation = asyncio.create_task(client.post("/invocations", json={"instances": [longest]}))
            pings = []
            while not invocation.done():
                started = time.perf_counter()
                assert (await client.get("/ping")).status_code == 200
                pings.append(time.perf_counter() - started)
            return await invocation, pings

    answer, pings = asyncio.run(long_pair_and_pings())
    assert answer.status_code == 200 and len(answer.json()["labels"]) == 1
    assert pings and max(pings) < 1.0, pings
    tokenising = metric_values(server)
    assert tokenising["tokenization_seconds_count"] >= 1


def metric_values(server) -> dict[str, float]:
    metrics = httpx.get(f"{server.url}/metrics").text
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines() if line and line[0] != "#"}


def test_concurrent_requests_share_model_calls_and_metrics_count_them(server):
    async def burst():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            return await asyncio.gather(*(client.post("/invocations", json={"instances": [PAIR]}) for _ in range(16)))

    assert all(response.status_code == 200 for response in asyncio.run(burst()))
    values = metric_values(server)
    assert values['invocations_requests_total{status="200"}'] >= 16
    assert values['invocations_requests_total{status="400"}'] >= 1
    assert values["model_batch_size_sum"] / values["model_batch_size_count"] > 1  # some calls held several pairs
    version = httpx.get(f"{server.url}/ping").json()["model_version"]
    assert values[f'model_info{{version="{version}"}}'] == 1
    assert values["invocations_latency_seconds_count"] >= 16
    assert values["model_seconds_count"] >= 1 and values["queued_pairs"] == 0
    assert values["process_resident_memory_bytes"] > 0 and values["invocations_shed_total"] == 0


def test_no_generated_request_gets_a_server_error(server):
    """schemathesis generates requests from the server's own OpenAPI schema, valid and invalid alike."""
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(operation.method.upper(), operation.path) for operation in operations} >= {
        ("GET", "/ping"),
        ("POST", "/invocations"),
        ("GET", "/metrics"),
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.body, response.text)

        no_server_error()


def test_sigterm_lets_in_flight_requests_finish(int8_tiny, tmp_path):
    process = ServerProcess(int8_tiny, "--max-wait-ms", "400", log=tmp_path / "server.log")
    process.wait_ready()

    async def requests_then_sigterm():
        async with httpx.AsyncClient(base_url=process.url, timeout=30) as client:
            pending = [asyncio.create_task(client.post("/invocations", json={"instances": [PAIR]})) for _ in range(8)]
            await asyncio.sleep(0.15)  # the batch waits 400 ms for more pairs: these are in flight
            process.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*pending)

    responses = asyncio.run(requests_then_sigterm())
    assert [response.status_code for response in responses] == [200] * 8
    # uvicorn drains, shuts the app down, then re-raises the SIGTERM it caught, as a container expects.
    assert process.process.wait(timeout=30) == -signal.SIGTERM
    log = process.log_path.read_text()
    assert "Waiting for connections to close" in log and "Application shutdown complete" in log
    process.stop()


def test_ping_is_503_until_the_model_loads_and_says_why_it_failed():
    import threading

    from fastapi.testclient import TestClient

    from tasks.config import ServeArguments
    from tasks.serving.server import create_app

    release = threading.Event()

    def slow_failing_load(source, digest):
        release.wait(10)
        raise FileNotFoundError("no saved_model here")

    with TestClient(create_app(ServeArguments(), load_model=slow_failing_load)) as client:
        assert client.get("/ping").json() == {"status": "loading"}
        assert client.get("/ping").status_code == 503
        assert client.post("/invocations", json={"instances": [PAIR]}).status_code == 503
        release.set()
        for _ in range(100):
            answer = client.get("/ping").json()
            if answer["status"] != "loading":
                break
            threading.Event().wait(0.05)
        assert answer == {"status": "failed", "error": "FileNotFoundError: no saved_model here"}


def test_the_port_follows_sagemaker_unless_given(monkeypatch):
    from tasks.config import ServeArguments
    from tasks.serving.server import listening_port

    assert listening_port(ServeArguments()) == 8080
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "9090")
    assert listening_port(ServeArguments()) == 9090
    assert listening_port(ServeArguments(port=7070)) == 7070


def test_serve_passes_model_digest_to_the_loader_and_ping_reports_the_digest():
    import threading

    from fastapi.testclient import TestClient

    from tasks.config import ServeArguments
    from tasks.serving.server import create_app
    from tests.tasks.serving.test_model_swap import FakeModel, loader

    asked, expected = [], "sha256:" + "ab" * 32
    args = ServeArguments(model="/models/a", model_digest=expected)
    with TestClient(create_app(args, load_model=loader({"/models/a": FakeModel("fp32-a")}, asked))) as client:
        for _ in range(100):
            if client.get("/ping").status_code == 200:
                break
            threading.Event().wait(0.05)
        ready = client.get("/ping").json()
    assert ready == {"status": "ready", "model_version": "fp32-a", "model_digest": "sha256:fp32-a"}
    assert asked == [("/models/a", expected)]


def test_a_model_whose_bytes_changed_is_refused_before_it_is_loaded(tmp_path):
    from tasks.errors import ModelError
    from tasks.runtime.digest import folder_digest, seal
    from tasks.serving.served_model import ServedModel

    sealed_model = tmp_path / "sealed"
    (sealed_model / "saved_model").mkdir(parents=True)
    (sealed_model / "saved_model" / "saved_model.pb").write_bytes(b"the graph that was evaluated")
    sealed = seal(sealed_model)
    (sealed_model / "saved_model" / "saved_model.pb").write_bytes(b"another graph")  # tampered after it was sealed
    tampered = folder_digest(sealed_model)
    with pytest.raises(
        ModelError,
        match=re.escape(f"{sealed_model}: the content digest is {tampered}, not the sealed in .digest {sealed}"),
    ):
        ServedModel.load(str(sealed_model))  # without --model-digest: the seal alone refuses it

    unsealed_model = tmp_path / "unsealed"
    (unsealed_model / "saved_model").mkdir(parents=True)
    (unsealed_model / "saved_model" / "saved_model.pb").write_bytes(b"a graph")
    registered = "sha256:" + "0" * 64
    actual = folder_digest(unsealed_model)
    with pytest.raises(
        ModelError, match=re.escape(f"{unsealed_model}: the content digest is {actual}, not the expected {registered}")
    ):
        ServedModel.load(str(unsealed_model), digest=registered)


def test_the_real_model_s_captured_records_match_its_answers(int8_tiny, tmp_path):
    """Capture with the real tokenizer: a long pair is recorded cut to the model's length, a character outside the
    vocabulary as an unknown token, and each record's label and probability are the answer's."""
    from tasks.monitoring import records

    long_pair = {"sentence1": " ".join(["profit"] * 200), "sentence2": " ".join(["earnings"] * 100)}
    unknown = {"sentence1": "The company posted a profit \u2603.", "sentence2": PAIR["sentence2"]}
    capture = tmp_path / "capture"
    process = ServerProcess(int8_tiny, *flags(capture_dir=capture), log=tmp_path / "server.log")
    try:
        process.wait_ready()
        answer = invoke(process, {"instances": [PAIR, long_pair, unknown]}, headers={"X-Request-Id": "real-1"}).json()
    finally:
        assert process.stop() == -signal.SIGTERM
    (path,) = [path for path in capture.rglob("*" + records.SUFFIX)]
    assert not path.name.startswith(records.HIDDEN)
    short, long, odd = (json.loads(line) for line in path.read_text().splitlines())
    assert short["truncated"] is False and short["unknown_tokens"] == 0
    # 300 words in 125 tokens, the longer sentence first: 63 and 62 words, with [CLS] [SEP] and [SEP]
    assert long["truncated"] is True and long["tokens"] == [65, 63]
    assert odd["unknown_tokens"] == 1
    for index, record in enumerate((short, long, odd)):
        assert record["request_id"] == "real-1" and record["model_version"] == answer["model_version"]
        assert LABELS[record["label"]] == answer["labels"][index]
        assert record["probability"] == pytest.approx(max(answer["probabilities"][index]), abs=1e-6)
        assert records.TEXT not in record
