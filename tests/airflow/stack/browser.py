"""Debian's chromium as Playwright drives it, here and in docs/images/capture_trigger_form.py."""

import os
import signal
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# As root, without a sandbox; no background traffic, which this machine's closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]


def stop_session(process: subprocess.Popen, timeout: float = 60) -> None:
    """Stop a server started with ``start_new_session=True`` and everything it started: TERM, then KILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def open_trigger_form(page, url: str, dag_id: str, password: str = "admin"):
    """Sign in to the Airflow UI at ``url`` as admin (the test stack's password by default) and open ``dag_id``'s
    trigger form: its dialog."""
    page.goto(f"{url}/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda address: "/auth/login" not in address)
    page.wait_for_load_state("networkidle")
    page.goto(f"{url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    return page.get_by_role("dialog")
