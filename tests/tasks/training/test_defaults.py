"""Learning rate and epochs by the base model's size, when a run names none."""

import json

import pytest

from tasks.config import TrainArguments
from tasks.errors import ModelError
from tasks.training import defaults


def write_config(folder, layers):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": layers}))
    return folder


def test_the_tiny_bert_and_the_packaged_minilm_are_small_models(tiny_model, minilm_path):
    assert defaults.hidden_layers(str(tiny_model)) == 2
    assert defaults.hidden_layers(str(minilm_path)) == 6
    assert defaults.model_size(str(minilm_path)) == "small"


def test_a_model_of_more_than_six_layers_gets_bert_bases_defaults(tmp_path):
    base = write_config(tmp_path / "base", 12)
    resolved = defaults.resolved(TrainArguments(data="d", output="o", model=str(base)))
    assert (resolved.learning_rate, resolved.epochs) == (3e-5, 3)
    small = write_config(tmp_path / "small", defaults.SMALL_MODEL_LAYERS)
    resolved = defaults.resolved(TrainArguments(data="d", output="o", model=str(small)))
    assert (resolved.learning_rate, resolved.epochs) == (
        defaults.DEFAULTS["small"]["learning_rate"],
        defaults.DEFAULTS["small"]["epochs"],
    )


def test_given_values_are_kept_and_only_the_missing_one_is_resolved(tmp_path):
    base = str(write_config(tmp_path / "base", 12))
    given = TrainArguments(
        data="d", output="o", model=base, learning_rate=1e-3, epochs=1, batch_size=8, warmup_ratio=0, weight_decay=0
    )
    assert defaults.resolved(given) is given
    assert defaults.resolved(TrainArguments(data="d", output="o", model=base, epochs=7)).learning_rate == 3e-5


def test_batch_size_warm_up_and_decay_default_to_the_table_and_need_no_model_when_every_size_agrees(tmp_path):
    """The same for every size: resolved without reading the model (here, a model that does not exist)."""
    given = TrainArguments(data="d", output="o", model=str(tmp_path / "nowhere"), learning_rate=1e-3, epochs=1)
    assert (given.batch_size, given.warmup_ratio, given.weight_decay) == (None, None, None)
    resolved = defaults.resolved(given)
    assert (resolved.batch_size, resolved.warmup_ratio, resolved.weight_decay) == (32, 0.1, 0.01)
    assert all(
        defaults.DEFAULTS[size][name] == defaults.DEFAULTS["base"][name]
        for size in defaults.DEFAULTS
        for name in ("batch_size", "warmup_ratio", "weight_decay")
    )


def test_a_model_without_a_config_is_a_model_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="cannot read the number of layers"):
        defaults.model_size(str(tmp_path / "empty"))


def test_a_config_autoconfig_cannot_read_is_a_model_error_naming_the_model(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ModelError, match=f"^{folder}: cannot read the number of layers from its config.json"):
        defaults.hidden_layers(str(folder))
