"""The training cache's key (decisions.training_config) follows train's by-size defaults table."""

import subprocess
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import decisions  # noqa: E402
from nlp_pipeline.params import pipeline_params  # noqa: E402

from tasks.training import defaults  # noqa: E402


def form_defaults() -> dict:
    return {name: param.value for name, param in pipeline_params().items()}


def test_a_run_leaving_hyperparameters_to_the_step_is_keyed_by_the_defaults_table(monkeypatch):
    """A model trained with the old table no longer matches once the table changes."""
    params = form_defaults()
    assert params["learning_rate"] is params["epochs"] is None
    before = decisions.training_config(params)
    assert before["training_defaults"] == defaults.DEFAULTS
    monkeypatch.setitem(defaults.DEFAULTS, "small", defaults.DEFAULTS["small"] | {"learning_rate": 5e-5})
    assert decisions.training_config(params) != before


def test_a_run_naming_every_hyperparameter_is_keyed_by_its_values_alone():
    setting = {"learning_rate": 1e-4, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01}
    config = decisions.training_config(form_defaults() | setting)
    assert "training_defaults" not in config and {name: config[name] for name in setting} == setting


def test_the_defaults_table_imports_nothing_heavy():
    probe = "import sys, tasks.training.defaults; print(sorted({'tensorflow', 'transformers'} & set(sys.modules)))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert found.stdout.strip() == "[]"
