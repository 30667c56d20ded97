"""The Airflow UI in a real browser (Debian's chromium, driven by Playwright): sign in, open nlp_local, fill
the trigger form, see an invalid value refused, trigger, and watch the run succeed."""

import time
from urllib.parse import unquote

import httpx
import pytest

from tests.airflow.conftest import ARTIFACTS
from tests.airflow.stack.browser import CHROMIUM, CHROMIUM_FLAGS, open_trigger_form
from tests.airflow.stack.conftest import REST_TIMEOUT, api_headers
from tests.conftest import free_port, run_tasks

SCREENSHOTS = ARTIFACTS


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: `make install` installs it"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def manual_runs(url: str) -> list[str]:
    headers = api_headers(url)
    runs = httpx.get(f"{url}/api/v2/dags/nlp_local/dagRuns", headers=headers, timeout=REST_TIMEOUT).json()["dag_runs"]
    return [run["dag_run_id"] for run in runs if run["run_type"] == "manual"]


def wait_for_run(url: str, run_id: str, timeout: float = 900) -> str:
    headers = api_headers(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = httpx.get(
            f"{url}/api/v2/dags/nlp_local/dagRuns/{run_id}", headers=headers, timeout=REST_TIMEOUT
        ).json()["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(5)
    raise AssertionError(f"run {run_id} still {state} after {timeout} s")


def test_a_run_triggered_from_the_form_succeeds(airflow_stack, browser, raw_data, tiny_model):
    from playwright.sync_api import expect

    url, port = airflow_stack["url"], free_port()
    runs_before = manual_runs(url)  # other tests share the stack
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    form = open_trigger_form(page, url, "nlp_local")
    trigger = form.get_by_role("button", name="Trigger")

    form.get_by_role("button", name="Data and model").click()
    source = form.locator("[name=element_source]")
    source.fill("mrpc data")  # neither hf://, s3:// nor a path: the Param's pattern refuses it
    trigger.click()
    expect(form.get_by_text("Invalid input for param source: 'mrpc data' does not match")).to_be_visible()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "trigger-form-refuses-bad-source.png")
    assert page.url == f"{url}/dags/nlp_local" and manual_runs(url) == runs_before
    source.fill(str(raw_data))
    form.locator("[name=element_base_model]").fill(str(tiny_model))
    form.get_by_role("button", name="Training").click()
    form.locator("[name=element_epochs]").fill("1")
    form.locator("[name=element_batch_size]").fill("16")
    form.locator("[name=element_learning_rate]").fill("0.001")
    # The gate's thresholds are the promotion policy's (the stack's Variable), not the form's.
    expect(form.locator("[name=element_min_accuracy]")).to_have_count(0)
    form.get_by_role("button", name="Rollout").click()
    form.locator("[name=element_endpoint_port]").fill(str(port))
    trigger.click()

    page.wait_for_url(f"{url}/dags/nlp_local/runs/**")
    run_id = unquote(page.url.split("/runs/")[1].split("/")[0].split("?")[0])
    try:
        assert wait_for_run(url, run_id) == "success"
        page.reload()
        page.wait_for_timeout(2000)
        page.screenshot(path=SCREENSHOTS / "triggered-run-succeeded.png")
        served = httpx.get(f"http://127.0.0.1:{port}/ping").json()
        assert served["status"] == "ready"
    finally:
        run_tasks(
            "stop-local",
            "--state",
            f"{airflow_stack['env']['AIRFLOW_VAR_NLP_ARTEFACT_ROOT']}/nlp_local/endpoint",
            check=False,
        )
