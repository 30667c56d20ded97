"""``python -m tasks smoke-test --url URL``: an endpoint that was just rolled out answers as a model should.

Sends the smoke pairs the server itself checks a model with, over HTTP, and checks the answer against the
inference contract (``tasks.serving.contract``: shape, labels, probabilities), that a malformed request is
refused with a 4xx (not a 5xx), and with ``--expect-version`` that the endpoint serves the model that was
deployed. Its answer is printed and, in a pod, written as the step's result (``TASKS_RESULT_FILE``).
"""

from __future__ import annotations

import json
import logging

from tasks.config import SmokeTestArguments
from tasks.errors import EndpointError
from tasks.runtime import step_result
from tasks.serving.contract import SMOKE_REQUEST, answer_problems

log = logging.getLogger(__name__)


def run(args: SmokeTestArguments) -> None:
    import httpx

    url = args.url.rstrip("/")
    try:
        with httpx.Client(base_url=url, timeout=args.timeout) as http:
            ping = http.get("/ping")
            answer = http.post("/invocations", json=SMOKE_REQUEST)
            malformed = http.post("/invocations", json={"instances": [{"sentence1": "only one sentence"}]})
    except httpx.HTTPError as error:
        raise EndpointError(f"smoke test: {url} cannot be reached: {error!r}") from None
    _check(ping.status_code == 200, f"GET /ping answered {ping.status_code}: {ping.text[:200]}")
    _check(answer.status_code == 200, f"POST /invocations answered {answer.status_code}: {answer.text[:200]}")
    body, problems = answer_problems(answer.content)
    _check(not problems, "; ".join(problems))
    served = body.get("model_version")
    deployed = args.expect_version
    _check(not deployed or served == deployed, f"the endpoint serves {served}, not the deployed {deployed}")
    refused = malformed.status_code
    _check(400 <= refused < 500, f"a pair without sentence2 got {refused}, expected a 4xx: {malformed.text[:200]}")
    log.info("smoke test of %s passed: %s serves labels %s", url, served, body["labels"])
    result = {"url": url, "model_version": served, "labels": body["labels"]}
    print(json.dumps(result))
    step_result.write(result)  # a pod's termination message: what the orchestrator reads back


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise EndpointError(f"smoke test failed: {problem}")
