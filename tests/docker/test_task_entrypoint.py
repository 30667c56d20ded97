"""The task image's entrypoint (docker/task/entrypoint.sh) run directly, as the image runs it: ``serve``
under dumb-init with the image's health check, other steps passed through, the thread settings handed over.
SageMaker's ``train`` goes through it in tests/tasks/training/test_train.py::test_sagemaker_training_contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tasks.endpoint.commands import terminate
from tasks.runtime import cpu, healthcheck
from tests.conftest import entrypoint_environment, flags, free_port, run_entrypoint, run_tasks

PAIR = {"sentence1": "The cat sat on the mat.", "sentence2": "A cat was sitting on the mat."}


def _spy_python(folder: Path) -> Path:
    """A ``python`` that records what ``python -m tasks`` would get (arguments, environment) and runs
    everything else (the entrypoint's ``python -m tasks cpu-threads``) with the real interpreter."""
    folder.mkdir(parents=True)
    spy = folder / "python"
    spy.write_text(f"""#!/bin/sh
if [ "$1 $2" = "-m tasks" ] && [ "$3" != "cpu-threads" ]; then
    exec {sys.executable} -c 'import json, os, sys; json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, sys.stdout)' "$@"
fi
exec {sys.executable} "$@"
""")
    spy.chmod(0o755)
    return folder


def _handed_over(tmp_path: Path, *args: str, env: dict | None = None) -> dict:
    spy = _spy_python(tmp_path / "spy")
    environment = entrypoint_environment(tmp_path / "bin", env)
    environment["PATH"] = f"{spy}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(["nlp-task-entrypoint", *args], env=environment, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_without_arguments_it_names_what_it_runs(tmp_path):
    result = run_entrypoint(bin_folder=tmp_path / "bin", check=False)
    assert result.returncode == 2
    assert "usage: nlp-task-entrypoint train | serve [FLAGS] | STEP [FLAGS]" in result.stderr


def test_train_serve_and_any_other_step_become_python_m_tasks(tmp_path):
    for arguments in (
        ["train"],
        ["serve", "--model", "s3://bucket/model/", "--host", "0.0.0.0"],
        ["stage", "--source", "s3://bucket/raw", "--output", "/opt/ml/processing/output/staged"],
    ):
        assert _handed_over(tmp_path / arguments[0], *arguments)["argv"] == ["-m", "tasks", *arguments]


def test_thread_settings_follow_the_container_cpus_and_keep_what_is_set(tmp_path, monkeypatch):
    for name in cpu.thread_environment(1):
        monkeypatch.delenv(name, raising=False)
    cores = str(cpu.available_cores())
    env = _handed_over(tmp_path / "plain", "train")["env"]
    assert {name: env[name] for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_ENABLE_ONEDNN_OPTS")} == {
        "OMP_NUM_THREADS": cores,
        "TF_NUM_INTRAOP_THREADS": cores,
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }
    # A Kubernetes pod sets OMP_NUM_THREADS from its CPU limit: that one stays.
    env = _handed_over(tmp_path / "pod", "serve", env={"OMP_NUM_THREADS": "1"})["env"]
    assert env["OMP_NUM_THREADS"] == "1" and env["TF_NUM_INTRAOP_THREADS"] == cores


def test_other_steps_run_and_their_exit_status_comes_back(tmp_path):
    output = tmp_path / "raw"
    sizes = flags(train_size=40, dev_size=10, test_size=4)
    result = run_entrypoint("sample", "--output", str(output), *sizes, bin_folder=tmp_path / "bin")
    assert sorted(path.name for path in output.iterdir()) == [".digest", "dev.tsv", "test.tsv", "train.tsv"]
    assert result.stderr.startswith("nlp-task-entrypoint: python -m tasks sample, ")
    refused = run_entrypoint("no-such-step", bin_folder=tmp_path / "bin", check=False)
    assert refused.returncode == 2 and "unknown step 'no-such-step'" in refused.stderr


def test_serve_under_dumb_init_passes_the_health_check_and_stops_on_sigterm(tmp_path, trained_tiny):
    """``docker run IMAGE serve ...``: dumb-init is PID 1 and forwards SIGTERM to the server."""
    port = free_port()
    serve = flags(model=trained_tiny, host="127.0.0.1", port=port)
    command = ["dumb-init", "--", "nlp-task-entrypoint", "serve", *serve]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        environment = entrypoint_environment(tmp_path / "bin")
        container = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        cmdline = Path(f"/proc/{container.pid}/cmdline")
        deadline = time.monotonic() + 180
        while not cmdline.read_bytes():  # the kernel shows it once dumb-init is running
            time.sleep(0.1)
        while not healthcheck.check(cmdline)[0]:
            assert container.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"/ping never answered 200:\n{log.read_text()}"
            time.sleep(1)
        # The image's HEALTHCHECK command, as Docker runs it.
        health = run_tasks("healthcheck", "--cmdline", str(cmdline))
        assert health.stdout == f"healthy: /ping answers on port {port}\n"
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"instances": [PAIR]}, timeout=30)
        assert answer.status_code == 200 and len(answer.json()["probabilities"]) == 1
        container.send_signal(signal.SIGTERM)
        # uvicorn finishes in-flight requests, then re-raises SIGTERM: 143 is how a stopped container exits.
        assert container.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()
        assert "Application shutdown complete" in log.read_text()
    finally:
        if container.poll() is None:
            # SIGTERM first: SIGKILL alone would leave the server behind (dumb-init runs it in its own session).
            terminate(container)
    assert healthcheck.ping(port) is not None, "the server stopped"
