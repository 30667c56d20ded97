"""tune plan: the trials drawn from the seed, within the ranges given."""

import json
import math

import pytest

from tasks import tuning
from tasks.config import TUNE_ACTIONS, TuneArguments
from tasks.tuning import plan, space
from tests.conftest import run_tasks


def arguments(**given) -> TuneArguments:
    return TuneArguments(**({"output": "search", "trials": 12} | given))


def test_the_same_seed_plans_the_same_trials_and_another_seed_others():
    assert plan.make(arguments(seed=3)) == plan.make(arguments(seed=3))
    assert plan.make(arguments(seed=3))["trials"] != plan.make(arguments(seed=4))["trials"]
    # More trials extend the plan: the first ones stay.
    assert plan.make(arguments(seed=3, trials=20))["trials"][:12] == plan.make(arguments(seed=3))["trials"]


def test_every_setting_lies_within_the_ranges_given():
    given = arguments(
        trials=32,
        learning_rate_range=[2e-5, 5e-4],
        epochs_range=[1, 3],
        batch_sizes=[8, 64],
        warmup_ratio_range=[0.05, 0.1],
        weight_decay_range=[0.0, 0.0],
    )
    planned = plan.make(given)
    settings = [trial["setting"] for trial in planned["trials"]]
    assert [trial["name"] for trial in planned["trials"]] == [f"trial-{index:03d}" for index in range(32)]
    assert all(set(setting) == {dimension.name for dimension in space.DIMENSIONS} for setting in settings)
    assert all(2e-5 <= setting["learning_rate"] <= 5e-4 for setting in settings)
    assert {setting["epochs"] for setting in settings} == {1, 2, 3}
    assert {setting["batch_size"] for setting in settings} == {8, 64}
    assert all(0.05 <= setting["warmup_ratio"] <= 0.1 and setting["weight_decay"] == 0 for setting in settings)
    assert all(isinstance(setting["epochs"], int) and isinstance(setting["batch_size"], int) for setting in settings)


def test_the_learning_rate_is_drawn_on_a_log_scale():
    rates = [trial["setting"]["learning_rate"] for trial in plan.make(arguments(trials=32))["trials"]]
    # Log-uniform over [1e-5, 3e-4]: about as many below the geometric mean (5.5e-5) as above; uniform would put
    # nearly all above it.
    below = sum(rate < math.sqrt(1e-5 * 3e-4) for rate in rates)
    assert 8 <= below <= 24


def test_the_plan_names_its_space_objective_and_budget():
    planned = plan.make(arguments(trials=1, max_steps=40, early_stopping="off"))
    assert planned["space"] == {
        "learning_rate": {"type": "log", "range": [1e-5, 3e-4]},
        "epochs": {"type": "integer", "range": [2, 5]},
        "batch_size": {"type": "choice", "values": [16, 32]},
        "warmup_ratio": {"type": "linear", "range": [0.0, 0.2]},
        "weight_decay": {"type": "linear", "range": [0.0, 0.1]},
    }
    assert (planned["objective"], planned["max_steps"], planned["early_stopping"]) == ("validation accuracy", 40, "off")
    assert plan.make(arguments(trials=0))["trials"] == []


def test_every_action_has_its_function():
    assert tuple(tuning.ACTIONS) == TUNE_ACTIONS


def test_tune_plan_writes_plan_json_and_prints_it(tmp_path):
    result = run_tasks("tune", "plan", "--output", str(tmp_path / "search"), "--trials", "3", "--seed", "5")
    written = json.loads((tmp_path / "search" / "plan.json").read_text())
    assert json.loads(result.stdout.splitlines()[-1]) == written
    assert written == plan.make(arguments(output=str(tmp_path / "search"), trials=3, seed=5))
    assert [path.name for path in (tmp_path / "search").iterdir()] == ["plan.json"]  # no temporary left


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--learning-rate-range", "3e-4", "1e-5"], "--learning-rate-range must be LO HI with LO no more than HI"),
        (["--learning-rate-range", "-0.00001", "1e-4"], "--learning-rate-range values must each be in (0, 1)"),
        (["--trials", "33"], "--trials must be between 0 and 32, got 33"),
    ],
)
def test_a_bad_search_is_refused_with_exit_2_naming_the_flag(tmp_path, capsys, flags, message):
    from tasks.cli import main

    assert main(["tune", "plan", "--output", str(tmp_path / "search"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "search").exists()


def test_tune_plan_refuses_a_folder_holding_another_search(tmp_path, capsys):
    from tasks.cli import main

    output = str(tmp_path / "search")
    assert main(["tune", "plan", "--output", output, "--trials", "2", "--seed", "1"]) == 0
    assert main(["tune", "plan", "--output", output, "--trials", "2", "--seed", "1"]) == 0  # the same search again
    assert main(["tune", "plan", "--output", output, "--trials", "2", "--seed", "2"]) == 2
    assert "holds another search's plan.json" in capsys.readouterr().err


@pytest.mark.parametrize("kind", [space.LINEAR, space.LOG])
def test_a_rounded_draw_never_leaves_its_range(kind):
    """Rounding to SIGNIFICANT_DIGITS would give 0.1235 here, above HI: the draw is clamped into [LO, HI]."""
    low, high = 0.123451, 0.123459
    settings = space.sample({"x": {"type": kind, "range": [low, high]}}, 20, seed=0)
    assert all(low <= setting["x"] <= high for setting in settings)
