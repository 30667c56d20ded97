"""Take docs/images/trigger-form.png: the Airflow trigger form of nlp_local, in Debian's chromium.

Run it after `make demo`, whose Airflow home (demo-output/airflow) it reuses:

    .venv/bin/python docs/images/capture_trigger_form.py [--demo demo-output] [--output docs/images/trigger-form.png]

It starts `airflow api-server` on 127.0.0.1 with the settings `make airflow` uses (the Makefile's AIRFLOW_ENV),
signs in as admin with the password `make demo` generated (demo-output/airflow/passwords.json) with Playwright, opens the trigger form of nlp_local with its first section expanded,
saves a full-page screenshot, and stops the server. Playwright drives /usr/bin/chromium (`make chromium`
installs it); never `playwright install`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))

from tests.airflow.stack.browser import CHROMIUM, CHROMIUM_FLAGS, open_trigger_form, stop_session  # noqa: E402

START_TIMEOUT = 180  # seconds for the api-server to answer its health check


def airflow_env(demo: Path, port: int) -> dict[str, str]:
    """The Makefile's AIRFLOW_ENV for this demo folder, and an api-server on 127.0.0.1:port."""
    home = demo / "airflow"
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_VAR_NLP_ARTEFACT_ROOT": str(demo / "artefacts"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"airflow api-server exited {server.returncode}; its log: {log}")
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(2)
    raise SystemExit(f"airflow api-server did not answer {url} within {START_TIMEOUT} s; its log: {log}")


def screenshot_trigger_form(url: str, password: str, output: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            form = open_trigger_form(page, url, "nlp_local", password)
            form.get_by_role("button", name="Data and model").click()
            form.locator("[name=element_source]").wait_for()
            page.wait_for_timeout(1000)  # let the section's opening animation finish
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=output, full_page=True)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=REPO / "demo-output", help="the make demo output folder")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "trigger-form.png")
    args = parser.parse_args()
    demo = args.demo.resolve()
    if not (demo / "airflow" / "airflow.db").exists():
        raise SystemExit(f"no Airflow home with a database under {demo}: run `make demo` first")
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: `make chromium` installs Debian's chromium")

    port = free_port()
    url, env = f"http://127.0.0.1:{port}", airflow_env(demo, port)
    # The DAG as the files define it now, not only as the last `make demo` run stored it.
    subprocess.run([BIN / "airflow", "dags", "reserialize"], env=env, check=True, capture_output=True)
    log = demo / "airflow" / "capture-api-server.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [BIN / "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_healthy(url, server, log)
        password = json.loads((demo / "airflow" / "passwords.json").read_text())["admin"]
        screenshot_trigger_form(url, password, args.output)
        print(f"wrote {args.output}")
    finally:
        stop_session(server, timeout=30)


if __name__ == "__main__":
    main()
