"""The modules the Airflow side imports stay light: the standard library and tasks.errors only."""

import json
import subprocess
import sys

AIRFLOW_SIDE_IMPORTS = (
    "tasks.config",
    "tasks.errors",
    "tasks.serving.contract",
    "tasks.runtime.sagemaker_job",
    "tasks.runtime.step_result",
)
HEAVY = ("tensorflow", "transformers", "datasets", "neural_compressor", "numpy", "httpx", "fastapi")


def test_the_modules_the_airflow_side_imports_pull_in_no_heavy_library():
    script = (
        f"import json, sys\nfor name in {AIRFLOW_SIDE_IMPORTS!r}:\n    __import__(name)\n"
        f"print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
