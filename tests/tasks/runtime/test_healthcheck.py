"""The task image's health check, on command lines as Docker starts the image (the running server is checked
through the real entrypoint in tests/docker/test_task_entrypoint.py)."""

import pytest

from tasks.runtime import healthcheck
from tests.conftest import free_port, run_tasks

ENTRYPOINT = ["dumb-init", "--", "/usr/local/bin/nlp-task-entrypoint"]


@pytest.mark.parametrize(
    ("arguments", "environ", "port"),
    [
        (["serve"], {}, 8080),
        (["serve"], {"SAGEMAKER_BIND_TO_PORT": "9090"}, 9090),
        (["serve", "--model", "s3://b/m", "--host", "0.0.0.0", "--port", "8501"], {}, 8501),
        (["serve", "--port=8502"], {"SAGEMAKER_BIND_TO_PORT": "9090"}, 8502),
        (["serve", "--port", "0"], {"SAGEMAKER_BIND_TO_PORT": "9090"}, 9090),
        (["train"], {}, None),
        (["stage", "--source", "hf://nyu-mll/glue/mrpc", "--output", "/artefacts/staged"], {}, None),
        ([], {}, None),
    ],
)
def test_serving_port_follows_serve_flags_then_sagemaker_then_8080(arguments, environ, port):
    assert healthcheck.serving_port(healthcheck.container_arguments([*ENTRYPOINT, *arguments]), environ) == port


def _cmdline(tmp_path, *arguments: str):
    """A ``/proc/PID/cmdline`` file of a container started with ``arguments``."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(part.encode() for part in [*ENTRYPOINT, *arguments]) + b"\0")
    return cmdline


def test_a_batch_step_container_is_healthy_while_it_runs(tmp_path):
    result = run_tasks("healthcheck", "--cmdline", str(_cmdline(tmp_path, "train")))
    assert result.stdout == "healthy: runs `train`, which serves no HTTP\n"


def test_a_server_that_does_not_answer_is_unhealthy(tmp_path):
    port = free_port()
    result = run_tasks("healthcheck", "--cmdline", str(_cmdline(tmp_path, "serve", "--port", str(port))), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: unhealthy: nothing answers on port {port}")


def test_a_server_still_loading_its_model_is_unhealthy():
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Loading(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503 if self.path == "/ping" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Loading)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert healthcheck.ping(server.server_address[1]) == "/ping answered 503: the model is still loading"
    finally:
        server.shutdown()
        server.server_close()
