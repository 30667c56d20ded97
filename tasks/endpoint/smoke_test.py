"""``python -m tasks smoke-test --url URL``: an endpoint that was just rolled out answers as a model should.

Sends the smoke pairs the server itself checks a model with, over HTTP, and checks the answer's shape, labels
and probabilities, that a malformed request is refused with a 4xx (not a 5xx), and with
``--expect-version`` that the endpoint serves the model that was deployed.
"""

from __future__ import annotations

import json
import logging
import math

from tasks.config import SmokeTestArguments
from tasks.errors import EndpointError
from tasks.runtime.models import LABELS

log = logging.getLogger(__name__)


def run(args: SmokeTestArguments) -> None:
    import httpx

    from tasks.serving.served_model import SMOKE_PAIRS

    url = args.url.rstrip("/")
    instances = [{"sentence1": first, "sentence2": second} for first, second in SMOKE_PAIRS]
    try:
        with httpx.Client(base_url=url, timeout=args.timeout) as http:
            ping = http.get("/ping")
            answer = http.post("/invocations", json={"instances": instances})
            malformed = http.post("/invocations", json={"instances": [{"sentence1": "only one sentence"}]})
    except httpx.HTTPError as error:
        raise EndpointError(f"smoke test: {url} cannot be reached: {error!r}") from None
    _check(ping.status_code == 200, f"GET /ping answered {ping.status_code}: {ping.text[:200]}")
    _check(answer.status_code == 200, f"POST /invocations answered {answer.status_code}: {answer.text[:200]}")
    body = answer.json()
    _check(len(body.get("predictions", [])) == len(instances), f"{len(instances)} pairs sent, answer: {body}")
    _check(all(label in LABELS for label in body["labels"]), f"labels {body['labels']} are not all in {LABELS}")
    for row in body["probabilities"]:
        _check(math.isclose(sum(row), 1.0, abs_tol=1e-3), f"probabilities {row} do not sum to 1")
    if args.expect_version:
        _check(body["model_version"] == args.expect_version,
               f"the endpoint serves {body['model_version']}, not the deployed {args.expect_version}")  # fmt: skip
    _check(400 <= malformed.status_code < 500,
           f"a pair without sentence2 got {malformed.status_code}, expected a 4xx: {malformed.text[:200]}")  # fmt: skip
    log.info("smoke test of %s passed: %s serves labels %s", url, body["model_version"], body["labels"])
    print(json.dumps({"url": url, "model_version": body["model_version"], "labels": body["labels"]}))


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise EndpointError(f"smoke test failed: {problem}")
