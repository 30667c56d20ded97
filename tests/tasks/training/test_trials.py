"""train as a tuning trial runs it: --score-only, --early-stopping-dir, --max-steps within the schedule, and the
final training's --tuning."""

import json

import pytest

from tasks.training import early_stopping
from tests.conftest import flags, run_tasks
from tests.tasks.training.test_train import curves


def trial(staged_data, tiny_model, output, **options):
    settings = {"batch_size": 16, "learning_rate": "1e-3", "warmup_ratio": 0, "log_every": 4} | options
    return ["train", *flags(data=staged_data, model=tiny_model, output=output, **settings)]


def test_a_trial_below_the_median_of_its_peers_stops_and_writes_only_its_scores(tmp_path, staged_data, tiny_model):
    scores = tmp_path / "scores"
    for peer in ("peer-a", "peer-b"):  # two trials that scored perfectly at every epoch
        early_stopping.record(str(scores), peer, [1.0, 1.0, 1.0])
    output = tmp_path / "trials" / "trial-000"
    result = run_tasks(*trial(staged_data, tiny_model, output, epochs=3, early_stopping_dir=scores), "--score-only")
    assert "early stopping after epoch 1: validation accuracy" in result.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["stopped_early"], metrics["epochs_run"], metrics["steps"]) == (True, 1, 16)
    published = sorted(path.name for path in output.iterdir() if not path.name.startswith("."))  # .digest: the seal
    assert published == ["metrics.json", "tensorboard"]  # no model, no checkpoint
    assert curves(output, "validation")["epoch_accuracy"][0][0] == 16
    mine = [path for path in scores.glob("*.json") if path.stem not in ("peer-a", "peer-b")]
    assert len(mine) == 1 and json.loads(mine[0].read_text())["accuracy"] == [metrics["accuracy"]]


def test_max_steps_stops_within_the_runs_own_schedule(tmp_path, staged_data, tiny_model):
    """256 pairs in batches of 16: 16 steps an epoch, a schedule of 32; the run stops after 20, in epoch 2, with the
    learning rate where the 32-step schedule has it, and epoch 2 scored where it stopped."""
    output = tmp_path / "model"
    run_tasks(*trial(staged_data, tiny_model, output, epochs=2, max_steps=20), "--score-only")
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["steps"], metrics["epochs_run"], metrics["stopped_early"]) == (20, 2, False)
    rates = curves(output, "train")["learning_rate"]
    assert [step for step, _ in rates] == list(range(1, 21))
    assert rates[-1][1] == pytest.approx(1e-3 * (1 - 19 / 32), rel=1e-4)  # linear decay to 0 over 32 steps
    assert [step for step, _ in curves(output, "validation")["epoch_accuracy"]] == [16, 20]


def write_tuning(tmp_path, setting) -> str:
    from tasks.tuning import results

    plan = {"seed": 1, "objective": "validation accuracy", "max_steps": 8, "early_stopping": "auto", "space": {}}
    outcomes = [
        results.outcome(
            {"name": "trial-000", "setting": setting | {"learning_rate": 1e-4}}, {"accuracy": 0.6, "f1": 0.5}
        ),
        results.outcome({"name": "trial-001", "setting": setting}, {"accuracy": 0.7, "f1": 0.6, "epochs_run": 1}),
    ]
    path = tmp_path / "search" / "tuning.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results.summarise(plan, outcomes)))
    return str(path)


def test_the_final_training_records_the_search_and_refuses_another_setting(tmp_path, staged_data, tiny_model):
    setting = {"learning_rate": 1e-3, "epochs": 1, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01}
    uri = write_tuning(tmp_path, setting)
    output = tmp_path / "model"
    # No --learning-rate or --epochs: the best setting's, not the model size's.
    run_tasks(
        "train", *flags(data=staged_data, model=tiny_model, output=output, batch_size=16, max_steps=4, tuning=uri)
    )
    card = json.loads((output / "model_card.json").read_text())
    assert card["hyperparameters"]["learning_rate"] == 1e-3 and card["hyperparameters"]["epochs"] == 1
    assert card["tuning"]["uri"] == uri and card["tuning"]["best"]["name"] == "trial-001"
    assert [trial["accuracy"] for trial in card["tuning"]["trials"]] == [0.6, 0.7]
    assert card["tuning"]["trials"][0]["setting"]["learning_rate"] == 1e-4
    readme = (output / "README.md").read_text()
    assert "**tuning**: learning_rate 0.001, epochs 1" in readme and "the best of 2 scored trial(s) of 2" in readme

    refused = run_tasks(
        "train",
        *flags(data=staged_data, model=tiny_model, output=tmp_path / "other", learning_rate=3e-4, tuning=uri),
        check=False,
    )
    assert refused.returncode == 2
    assert "the hyper-parameters differ from the search's best setting: --learning-rate 0.0003 (best: 0.001)" in (
        refused.stderr
    )
    assert not (tmp_path / "other").exists()
