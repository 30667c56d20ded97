"""tune select and tasks.tuning.results: each trial's outcome, the best setting, train's --tuning check."""

import json

import pytest

from tasks.config import TrainArguments, TuneArguments
from tasks.errors import ConfigError, TaskError
from tasks.tuning import plan, results

SETTING = {"learning_rate": 1e-4, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01}
PLAN = {
    "seed": 1,
    "objective": "validation accuracy",
    "max_steps": 0,
    "early_stopping": "auto",
    "space": {},
    "trials": [],
}


def trial(name, accuracy, f1=0.8, status="completed", **setting):
    return {
        "name": name,
        "setting": SETTING | setting,
        "accuracy": accuracy,
        "f1": f1,
        "val_loss": None if accuracy is None else 0.5,
        "epochs_run": None if accuracy is None else 3,
        "stopped_early": status == "stopped",
        "status": status,
    }


def test_the_best_trial_has_the_highest_accuracy_then_f1_then_the_first_name():
    outcomes = [
        trial("trial-000", 0.80, 0.85),
        trial("trial-001", 0.84, 0.86, learning_rate=2e-4),
        trial("trial-002", 0.84, 0.88, learning_rate=3e-4),
        trial("trial-003", 0.84, 0.88, learning_rate=4e-4),
        trial("trial-004", None, None, status="failed"),
    ]
    tuning = results.summarise(PLAN, outcomes)
    assert tuning["best"] == {
        "name": "trial-002",
        "setting": SETTING | {"learning_rate": 3e-4},
        "accuracy": 0.84,
        "f1": 0.88,
    }
    assert tuning["trials"] == outcomes
    assert {key: tuning[key] for key in ("objective", "seed", "space", "max_steps", "early_stopping")} == {
        key: PLAN[key] for key in ("objective", "seed", "space", "max_steps", "early_stopping")
    }


def test_a_stopped_trial_counts_with_its_last_score_and_a_failed_one_never():
    outcomes = [trial("trial-000", 0.7, status="stopped"), trial("trial-001", None, None, status="failed")]
    assert results.summarise(PLAN, outcomes)["best"]["name"] == "trial-000"


@pytest.mark.parametrize(
    "outcomes", [[], [trial("trial-000", None, None, status="failed")]], ids=["no trial", "all failed"]
)
def test_no_scored_trial_is_a_task_error(outcomes):
    with pytest.raises(TaskError, match="no trial of the search was scored"):
        results.summarise(PLAN, outcomes)


def test_an_unknown_status_is_refused():
    with pytest.raises(ValueError, match="trial status must be one of completed, stopped, failed"):
        results.summarise(PLAN, [trial("trial-000", 0.7, status="InProgress")])


def test_an_outcome_is_read_from_the_trials_metrics():
    planned = {"name": "trial-001", "setting": SETTING}
    metrics = {"accuracy": 0.8, "f1": 0.85, "validation_loss": 0.4, "epochs_run": 1, "stopped_early": True}
    assert results.outcome(planned, metrics) == {
        "name": "trial-001",
        "setting": SETTING,
        "accuracy": 0.8,
        "f1": 0.85,
        "val_loss": 0.4,
        "epochs_run": 1,
        "stopped_early": True,
        "status": "stopped",
    }
    assert results.outcome(planned, None)["status"] == "failed"
    assert results.outcome(planned, {"accuracy": None, "f1": None})["status"] == "failed"


def write_search(folder, scores):
    """A planned search whose trials wrote ``scores`` (accuracy, f1) or nothing (None)."""
    arguments = TuneArguments(output=str(folder), trials=len(scores), seed=9)
    planned = plan.run(arguments)
    for planned_trial, score in zip(planned["trials"], scores, strict=True):
        if score is not None:
            trial_folder = folder / "trials" / planned_trial["name"]
            trial_folder.mkdir(parents=True)
            metrics = {"accuracy": score[0], "f1": score[1], "epochs_run": 2, "stopped_early": False}
            (trial_folder / "metrics.json").write_text(json.dumps(metrics))
    return arguments, planned


def test_select_reads_each_trial_folder_and_writes_tuning_json(tmp_path):
    arguments, planned = write_search(tmp_path / "search", [(0.7, 0.8), None, (0.75, 0.7)])
    tuning = results.select(TuneArguments(output=arguments.output, action="select"))
    assert json.loads((tmp_path / "search" / "tuning.json").read_text()) == tuning
    assert [outcome["status"] for outcome in tuning["trials"]] == ["completed", "failed", "completed"]
    assert tuning["best"] == {
        "name": "trial-002",
        "setting": planned["trials"][2]["setting"],
        "accuracy": 0.75,
        "f1": 0.7,
    }
    assert sorted(path.name for path in (tmp_path / "search").iterdir()) == ["plan.json", "trials", "tuning.json"]


def test_select_without_a_plan_names_the_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="has no plan.json: run `python -m tasks tune plan` first"):
        results.select(TuneArguments(output=str(tmp_path), action="select"))


def test_plan_and_select_read_and_write_the_search_on_s3(s3):
    from tasks.cli import main

    root = f"s3://{s3['bucket']}/runs/search"
    assert main(["tune", "plan", "--output", root, "--trials", "2", "--seed", "3"]) == 0
    planned = json.loads(s3["client"].get_object(Bucket=s3["bucket"], Key="runs/search/plan.json")["Body"].read())
    metrics = json.dumps({"accuracy": 0.9, "f1": 0.91, "epochs_run": 2, "stopped_early": False})
    s3["client"].put_object(Bucket=s3["bucket"], Key="runs/search/trials/trial-001/metrics.json", Body=metrics)
    assert main(["tune", "select", "--output", root]) == 0
    tuning = json.loads(s3["client"].get_object(Bucket=s3["bucket"], Key="runs/search/tuning.json")["Body"].read())
    assert tuning["best"]["name"] == "trial-001" and tuning["best"]["setting"] == planned["trials"][1]["setting"]
    assert [outcome["status"] for outcome in tuning["trials"]] == ["failed", "completed"]


# ---- train --tuning --------------------------------------------------------------------------------------------------
def tuning_file(tmp_path, **setting):
    tuning = results.summarise(PLAN, [trial("trial-000", 0.8, **setting)])
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps(tuning))
    return str(path)


def test_train_takes_the_open_values_from_the_best_setting_and_keeps_equal_given_ones(tmp_path):
    uri = tuning_file(tmp_path)
    given = TrainArguments(data="d", output="o", tuning=uri, batch_size=16, epochs=3)
    tuned = results.with_best_setting(given, results.load(uri))
    assert (tuned.learning_rate, tuned.epochs, tuned.batch_size) == (1e-4, 3, 16)


def test_train_with_tuning_alone_takes_a_best_setting_of_non_default_warm_up_and_decay(tmp_path):
    """No hyper-parameter flag given: every one comes from the best setting, however far from train's defaults."""
    best = {"learning_rate": 2e-4, "epochs": 2, "batch_size": 8, "warmup_ratio": 0.17, "weight_decay": 0.07}
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps(results.summarise(PLAN, [trial("trial-000", 0.9, **best)])))
    tuned = results.with_best_setting(TrainArguments(data="d", output="o", tuning=str(path)), results.load(str(path)))
    assert {name: getattr(tuned, name) for name in best} == best


def test_train_refuses_hyperparameters_other_than_the_best_setting(tmp_path):
    uri = tuning_file(tmp_path)
    given = TrainArguments(data="d", output="o", tuning=uri, learning_rate=3e-5, batch_size=32)
    with pytest.raises(ConfigError) as refused:
        results.with_best_setting(given, results.load(uri))
    assert str(refused.value) == (
        f"--tuning {uri}: the hyper-parameters differ from the search's best setting: --learning-rate 3e-05 (best:"
        " 0.0001); --batch-size 32 (best: 16). Train with the best setting (--learning-rate 0.0001 --epochs 3"
        " --batch-size 16 --warmup-ratio 0.1 --weight-decay 0.01), or without --tuning"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), ("[]", "expected a JSON object"), ('{"best": {}}', "not a search's tuning.json")],
)
def test_a_tuning_file_that_is_not_a_searchs_is_refused(tmp_path, content, message):
    path = tmp_path / "tuning.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        results.load(str(path))


@pytest.mark.parametrize(
    ("best", "message"),
    [
        ([], "best must be an object"),
        ({"setting": []}, "best.setting must be an object"),
        ({"setting": SETTING | {"learning_rate": "fast"}}, "best.setting.learning_rate must be a number, got 'fast'"),
        ({"setting": SETTING | {"epochs": 2.5}}, "best.setting.epochs must be an integer, got 2.5"),
        ({"setting": SETTING | {"batch_size": True}}, "best.setting.batch_size must be an integer, got True"),
    ],
)
def test_a_tuning_file_of_wrong_types_is_refused_naming_the_field(tmp_path, best, message):
    path = tmp_path / "tuning.json"
    path.write_text(json.dumps({"best": best}))
    with pytest.raises(ConfigError) as refused:
        results.load(str(path))
    assert str(refused.value) == f"--tuning {path}: {message}"


def test_a_search_file_that_is_not_json_is_a_config_error_naming_it(tmp_path):
    from tasks.tuning import files

    path = tmp_path / "plan.json"
    path.write_text("{")
    with pytest.raises(ConfigError, match=f"^{path}: not JSON: "):
        files.read_json(str(path))
