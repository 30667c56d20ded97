"""tune run: a whole search on this machine, each trial a `python -m tasks train` subprocess."""

import json

import pytest

from tasks.config import TuneArguments
from tasks.errors import ConfigError, TaskError
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


def staged(folder, fingerprint):
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"fingerprint": fingerprint}))
    return str(folder)


def failing_trials(monkeypatch):
    """Every trial's train exits 1 after writing a line to its log."""
    import subprocess

    def train(command, stdout, **_):
        stdout.write("Traceback: the trial broke\n")
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(search.subprocess, "run", train)


def test_a_failing_trial_is_warned_with_its_log_tail_and_counted_failed(tmp_path, monkeypatch, caplog):
    failing_trials(monkeypatch)
    output = str(tmp_path / "search")
    with pytest.raises(TaskError, match="no trial of the search was scored"):
        search.run(TuneArguments(output=output, action="run", data=staged(tmp_path / "a", "f"), trials=1))
    assert "failed (exit 1)" in caplog.text and "Traceback: the trial broke" in caplog.text
    assert "trial trial-000 wrote no scores: counted as failed" in caplog.text


def test_a_folder_holding_a_search_of_other_data_or_another_model_is_refused(tmp_path, monkeypatch):
    """The same plan on other data or another model is another search: its trials' scores are not this one's."""
    failing_trials(monkeypatch)
    data_a, data_b = staged(tmp_path / "a", "fingerprint-a"), staged(tmp_path / "b", "fingerprint-b")
    output = str(tmp_path / "search")
    with pytest.raises(TaskError, match="no trial of the search was scored"):
        search.run(TuneArguments(output=output, action="run", data=data_a, model="/m", trials=1))
    assert json.loads((tmp_path / "search" / search.SEARCH).read_text()) == {"data": "fingerprint-a", "model": "/m"}
    for data, model in ((data_b, "/m"), (data_a, "/other")):
        with pytest.raises(ConfigError, match=f"--output {output} holds a search of other data or another model"):
            search.run(TuneArguments(output=output, action="run", data=data, model=model, trials=1))


def test_tune_run_refuses_an_s3_output(tmp_path):
    with pytest.raises(ConfigError, match="--output must be a local folder for `tune run`"):
        search.run(TuneArguments(output="s3://bucket/search", action="run", data=str(tmp_path), trials=1))
