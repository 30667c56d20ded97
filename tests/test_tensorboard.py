"""`make tensorboard`: the recipe the Makefile runs serves the demo's training curves on 127.0.0.1."""

import json
import shlex
import subprocess
import time
import urllib.request

from tasks.endpoint.commands import terminate
from tests.conftest import REPO, free_port

# A run as `make demo` lays it out: the train step's output under the artefact root, its events in tensorboard/.
RUN = "nlp_local/20260301T000000Z/model/try1-abc123/tensorboard/train"


def make_recipe(target: str, **variables: str) -> list[str]:
    """The command ``make TARGET`` runs, as make prints it (its install prerequisite taken as done)."""
    assignments = [f"{name}={value}" for name, value in variables.items()]
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed-demo", target, *assignments],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return shlex.split(printed.strip().splitlines()[-1])


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_make_tensorboard_serves_the_demos_runs_on_localhost(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "artefacts" / RUN))
    with writer.as_default(step=1):
        tf.summary.scalar("batch_loss", 0.69)
    writer.close()

    port = free_port()
    command = make_recipe("tensorboard", DEMO=str(tmp_path), TENSORBOARD_PORT=str(port))
    assert command[0] == ".venv/bin/tensorboard" and command[command.index("--host") + 1] == "127.0.0.1"
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, tags = time.monotonic() + 120, {}
        while RUN not in tags and time.monotonic() < deadline:
            assert server.poll() is None, f"tensorboard exited {server.returncode}: {server.stderr.read()}"
            try:
                tags = get_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        assert tags.get(RUN, {}).keys() == {"batch_loss"}, tags
    finally:
        terminate(server)
