"""The Airflow UI in a real browser (Debian's chromium, driven by Playwright): sign in, open nlp_local, fill
the trigger form, see an invalid value refused, trigger, and watch the run succeed; then read the run's model
Asset events back through the REST API, and see the graph's stages and the Assets view.

The graph and Assets view screenshots go to the test's temporary folder, or, with ``UPDATE_DOC_IMAGES=1``, over
the README's docs/images/graph-groups.png and docs/images/assets-view.png."""

import os
import sys
import time
from urllib.parse import quote, unquote

import httpx
import pytest

from tests.airflow.conftest import ARTIFACTS
from tests.airflow.stack.browser import CHROMIUM, CHROMIUM_FLAGS, open_trigger_form
from tests.airflow.stack.conftest import REST_TIMEOUT, api_headers
from tests.conftest import REPO, free_port, run_tasks

sys.path.insert(0, str(REPO / "plugins"))
from nlp_pipeline.links import ARTEFACTS_PREFIX, REPORT  # noqa: E402

SCREENSHOTS = ARTIFACTS
DOC_IMAGES = REPO / "docs" / "images"
STAGES = ("data", "tuning", "training", "compression", "evaluation", "rollout")
# What every model Asset event's extra holds (plugins/nlp_pipeline/assets.py, model_event).
EXTRA_KEYS = {
    "version",
    "status",
    "precision",
    "accuracy",
    "f1",
    "latency_ms_b1_p50",
    "throughput_b32",
    "data_fingerprint",
    "uri",
    "model_card",
    "dag_id",
    "run_id",
}


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


def model_asset_events(url: str, run_id: str) -> dict[str, tuple[int, list[dict]]]:
    """The run's events on each model Asset, as the REST API gives them: {Asset name: (its id, its events)}."""
    headers = api_headers(url)
    assets = httpx.get(
        f"{url}/api/v2/assets", params={"name_pattern": "nlp_model_"}, headers=headers, timeout=REST_TIMEOUT
    ).json()["assets"]
    found = {}
    for asset in assets:
        events = httpx.get(
            f"{url}/api/v2/assets/events",
            params={"asset_id": asset["id"], "source_dag_id": "nlp_local", "source_run_id": run_id},
            headers=headers,
            timeout=REST_TIMEOUT,
        ).json()["asset_events"]
        found[asset["name"]] = (asset["id"], events)
    return found


def open_evaluation_links(url: str, run_id: str) -> None:
    """The evaluate task's links, as the UI gets them, open the run's report, chart and model card through the
    api-server's artefact app for a signed-in user, and for nobody else."""
    headers = api_headers(url)
    links = httpx.get(
        f"{url}/api/v2/dags/nlp_local/dagRuns/{quote(run_id)}/taskInstances/evaluate/links",
        headers=headers,
        timeout=REST_TIMEOUT,
    ).json()["extra_links"]
    assert set(links) == {"Evaluation report", "Evaluation chart", "Model card"}, links
    report, chart, card = (links[name] for name in ("Evaluation report", "Evaluation chart", "Model card"))
    assert report.startswith(f"{ARTEFACTS_PREFIX}/nlp_local/") and "/evaluation/try" in report, report
    assert report.endswith(f"/{REPORT}"), report
    opened = httpx.get(url + report, headers=headers, timeout=REST_TIMEOUT)
    assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/plain"), opened
    assert opened.text.startswith("# Evaluation"), opened.text[:200]
    assert httpx.get(url + chart, headers=headers, timeout=REST_TIMEOUT).content.startswith(b"\x89PNG")
    assert httpx.get(url + card, headers=headers, timeout=REST_TIMEOUT).text.startswith("---")
    assert httpx.get(url + report, timeout=REST_TIMEOUT).status_code == 401


def see_graph_and_assets(page, url: str, run_id: str, asset_id: int, extra: dict, images) -> None:
    """The run's graph with its stages' TaskGroups expanded, and the candidates Asset with the run's event and
    its extra unfolded: both checked on the page, then saved to ``images``."""
    from playwright.sync_api import expect

    page.set_viewport_size({"width": 1800, "height": 650})  # the graph runs left to right: wide and low
    page.evaluate("localStorage.setItem('default_dag_view', JSON.stringify('graph'))")  # the UI's own setting
    page.goto(f"{url}/dags/nlp_local/runs/{quote(run_id)}")
    graph = page.locator(".react-flow").first
    expand = page.get_by_role("button", name="Expand all task groups")
    for attempt in range(2):
        expect(graph).to_be_visible(timeout=60_000)
        try:
            expect(expand).to_be_enabled(timeout=60_000)
            break
        except AssertionError:
            # Under load the UI can show its buttons' translation keys (taskGroups.expandAll) when a translation
            # file came too late; the page loaded again fetches it.
            if attempt:
                raise
            page.reload()
    expand.click()
    expect(page.get_by_role("button", name="Collapse all task groups")).to_be_enabled()
    for name in (*STAGES, "stage_dataset", "mark_production"):
        expect(graph.get_by_text(name, exact=True).first).to_be_visible()
    page.get_by_role("button", name="Collapse Details Panel").click()
    page.get_by_role("button", name="Fit View").click()
    page.wait_for_timeout(2000)  # the panel's and the view's last move
    page.screenshot(path=images / "graph-groups.png")

    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{url}/assets/{asset_id}")
    expect(page.get_by_text("nlp_model_candidates").first).to_be_visible(timeout=60_000)
    folded = page.locator(".monaco-editor .inline-folded").first  # the event's extra, folded to {…}
    expect(folded).to_be_visible(timeout=60_000)
    folded.click()
    editor = page.locator(".monaco-editor").first
    for shown in (extra["version"], '"accuracy"', '"data_fingerprint"'):
        expect(editor.get_by_text(shown).first).to_be_visible()
    page.wait_for_timeout(1000)
    page.screenshot(path=images / "assets-view.png")


def test_a_run_triggered_from_the_form_succeeds(airflow_stack, browser, raw_data, tiny_model, tmp_path):
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
        events = model_asset_events(url, run_id)
        (candidates_id, [candidate]), (_, [production]) = events["nlp_model_candidates"], events["nlp_model_production"]
        assert (candidate["source_task_id"], production["source_task_id"]) == ("register", "mark_production")
        extra = candidate["extra"]
        assert set(extra) == EXTRA_KEYS and (extra["dag_id"], extra["run_id"]) == ("nlp_local", run_id)
        assert extra["version"] == served["model_version"] and extra["status"] == "approved"
        assert 0 <= extra["accuracy"] <= 1 and extra["data_fingerprint"].startswith("sha256:")
        assert production["extra"] == extra | {"status": "production"}
        open_evaluation_links(url, run_id)
        images = DOC_IMAGES if os.environ.get("UPDATE_DOC_IMAGES") == "1" else tmp_path
        see_graph_and_assets(page, url, run_id, candidates_id, extra, images)
    finally:
        run_tasks(
            "stop-local",
            "--state",
            f"{airflow_stack['env']['AIRFLOW_VAR_NLP_ARTEFACT_ROOT']}/nlp_local/endpoint",
            check=False,
        )
