"""The steps' argument dataclasses: the ranges they refuse and the JSON schema the trigger form is built from."""

import pytest

from tasks.config import MAX_TUNING_TRIALS, TrainArguments, TuneArguments, flag_schema
from tasks.errors import ConfigError


def tune(**given) -> TuneArguments:
    return TuneArguments(**({"output": "search"} | given))


def test_tune_defaults_are_the_documented_search_space():
    arguments = tune()
    assert arguments.action == "plan" and arguments.trials == 0 and arguments.early_stopping == "auto"
    assert arguments.learning_rate_range == [1e-5, 3e-4] and arguments.epochs_range == [2, 5]
    assert arguments.batch_sizes == [16, 32]
    assert arguments.warmup_ratio_range == [0.0, 0.2] and arguments.weight_decay_range == [0.0, 0.1]
    assert tune().batch_sizes is not arguments.batch_sizes  # each instance its own list


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"learning_rate_range": [3e-4, 1e-5]}, "--learning-rate-range must be LO HI with LO no more than HI"),
        ({"epochs_range": [5, 2]}, "--epochs-range must be LO HI with LO no more than HI"),
        ({"warmup_ratio_range": [0.2, 0.1]}, "--warmup-ratio-range must be LO HI with LO no more than HI"),
        ({"weight_decay_range": [0.1, 0.0]}, "--weight-decay-range must be LO HI with LO no more than HI"),
        ({"learning_rate_range": [0.0, 1e-4]}, r"--learning-rate-range values must each be in \(0, 1\), got \[0.0,"),
        ({"learning_rate_range": [-1e-5, 1e-4]}, r"--learning-rate-range values must each be in \(0, 1\)"),
        ({"learning_rate_range": [1e-5, 1.0]}, r"--learning-rate-range values must each be in \(0, 1\)"),
        ({"learning_rate_range": [1e-5]}, "--learning-rate-range must be exactly 2 values, got"),
        ({"epochs_range": [0, 3]}, "--epochs-range values must each be a positive integer, got"),
        ({"batch_sizes": [0, 16]}, "--batch-sizes values must each be a positive integer, got"),
        ({"batch_sizes": []}, "--batch-sizes must be 1 to 8 values, got"),
        ({"batch_sizes": list(range(1, 10))}, "--batch-sizes must be 1 to 8 values, got"),
        ({"warmup_ratio_range": [0.0, 1.0]}, r"--warmup-ratio-range values must each be in \[0, 1\)"),
        ({"weight_decay_range": [-0.1, 0.0]}, r"--weight-decay-range values must each be in \[0, 1\)"),
        ({"trials": MAX_TUNING_TRIALS + 1}, f"--trials must be between 0 and {MAX_TUNING_TRIALS}, got 33"),
        ({"trials": -1}, "--trials must be between 0 and 32"),
        ({"max_steps": -1}, "--max-steps must be 0 or a positive integer"),
        ({"early_stopping": "median"}, "--early-stopping must be auto or off, got 'median'"),
        ({"output": ""}, "--output must be the search's folder"),
        ({"action": "run", "trials": 2}, "--data must be a staged data folder for `tune run`"),
        ({"action": "run", "data": "staged", "trials": 0}, "--trials must be at least 1 for `tune run`"),
    ],
)
def test_tune_refuses_a_bad_search_naming_the_flag(given, message):
    with pytest.raises(ConfigError, match=message):
        tune(**given)


def test_a_single_value_range_and_the_trial_limit_are_allowed():
    arguments = tune(learning_rate_range=[1e-4, 1e-4], epochs_range=[3, 3], trials=MAX_TUNING_TRIALS)
    assert arguments.trials == MAX_TUNING_TRIALS


def test_train_checks_given_values_and_skips_the_ones_left_to_the_model_size():
    assert TrainArguments(data="d", output="o").learning_rate is None
    with pytest.raises(ConfigError, match=r"--learning-rate must be in \(0, 1\), got 0.0"):
        TrainArguments(data="d", output="o", learning_rate=0.0)
    with pytest.raises(ConfigError, match="--epochs must be a positive integer, got 0"):
        TrainArguments(data="d", output="o", epochs=0)


def test_an_optional_flag_is_null_or_its_type_in_the_schema():
    assert flag_schema(TrainArguments, "learning_rate") == {
        "type": ["null", "number"],
        "exclusiveMinimum": 0,
        "exclusiveMaximum": 1,
        "default": None,
        "description": "Peak learning rate of AdamW; default: by the base model's size (tasks/training/defaults.py).",
    }
    assert flag_schema(TrainArguments, "epochs")["type"] == ["null", "integer"]
    assert flag_schema(TrainArguments, "score_only")["type"] == "boolean"


def test_a_list_flag_is_an_array_with_item_bounds_and_counts_in_the_schema():
    learning_rates = flag_schema(TuneArguments, "learning_rate_range")
    assert {key: value for key, value in learning_rates.items() if key != "description"} == {
        "type": "array",
        "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "minItems": 2,
        "maxItems": 2,
        "default": [1e-5, 3e-4],
    }
    batch_sizes = flag_schema(TuneArguments, "batch_sizes")
    assert batch_sizes["items"] == {"type": "integer", "minimum": 1}
    assert (batch_sizes["minItems"], batch_sizes["maxItems"], batch_sizes["default"]) == (1, 8, [16, 32])
    assert flag_schema(TuneArguments, "trials")["maximum"] == MAX_TUNING_TRIALS


def test_the_schema_refuses_what_tune_refuses():
    """The trigger form checks the schema with jsonschema, as Airflow's Param does (min > max excepted: no schema
    says it)."""
    import jsonschema

    for name, bad in (
        ("learning_rate_range", [-1e-5, 1e-4]),
        ("learning_rate_range", [1e-5]),
        ("batch_sizes", [0]),
        ("epochs_range", [0, 2]),
        ("trials", MAX_TUNING_TRIALS + 1),
    ):
        schema = {key: value for key, value in flag_schema(TuneArguments, name).items() if key != "default"}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ConfigError):
            tune(**{name: bad})
        jsonschema.validate(flag_schema(TuneArguments, name)["default"], schema)
