"""tune run: a whole search on this machine, each trial a `python -m tasks train` subprocess."""

import json

from tasks.config import TuneArguments
from tasks.tuning import search
from tests.conftest import flags, run_tasks


def test_a_trials_command_is_trains_with_its_setting_and_the_searchs_folders():
    arguments = TuneArguments(output="/s", action="run", data="/d", model="/m", trials=1, seed=4, max_steps=30)
    trial = {"name": "trial-000", "setting": {"learning_rate": 1e-4, "epochs": 2, "batch_size": 16}}
    command = search.trial_arguments(arguments, trial)
    assert command[:2] == ["train", "--score-only"]
    from tasks.cli import parse

    parsed = parse("train", command[1:])
    assert (parsed.output, parsed.early_stopping_dir, parsed.max_steps, parsed.seed) == (
        "/s/trials/trial-000",
        "/s/scores",
        30,
        4,
    )
    assert (parsed.learning_rate, parsed.epochs, parsed.batch_size, parsed.score_only) == (1e-4, 2, 16, True)
    off = TuneArguments(output="/s", action="run", data="/d", trials=1, early_stopping="off")
    assert "--early-stopping-dir" not in search.trial_arguments(off, trial)


def test_tune_run_trains_each_trial_and_selects_the_best(tmp_path, staged_data, tiny_model):
    search_flags = flags(
        data=staged_data, model=tiny_model, output=tmp_path / "search", trials=2, seed=3, max_steps=6
    ) + ["--learning-rate-range", "1e-4", "1e-3", "--epochs-range", "1", "2", "--batch-sizes", "16"]
    result = run_tasks("tune", "run", *search_flags)
    tuning = json.loads((tmp_path / "search" / "tuning.json").read_text())
    assert json.loads(result.stdout.splitlines()[-1]) == tuning
    planned = json.loads((tmp_path / "search" / "plan.json").read_text())
    assert [trial["setting"] for trial in tuning["trials"]] == [trial["setting"] for trial in planned["trials"]]
    assert [trial["status"] for trial in tuning["trials"]] == ["completed", "completed"]
    assert tuning["best"]["name"] in ("trial-000", "trial-001") and 0 <= tuning["best"]["accuracy"] <= 1
    for name in ("trial-000", "trial-001"):
        assert (tmp_path / "search" / "trials" / name / "metrics.json").is_file()
        assert not (tmp_path / "search" / "trials" / name / "saved_model").exists()
        assert "validation accuracy" in (tmp_path / "search" / "logs" / f"{name}.log").read_text()
    assert "trial 1/2 (trial-000: learning_rate" in result.stderr and "ETA" in result.stderr

    # Run again: the trials that scored are kept; another search in the same folder is refused.
    again = run_tasks("tune", "run", *search_flags)
    assert again.stderr.count("scored by an earlier run of this search, kept") == 2
    assert json.loads((tmp_path / "search" / "tuning.json").read_text()) == tuning
    other = run_tasks("tune", "run", *search_flags, "--seed", "4", check=False)
    assert other.returncode == 2 and "holds another search's plan.json" in other.stderr
