import subprocess
import sys

import pytest

import tasks
from tasks.cli import STEPS, main, parse
from tasks.errors import ConfigError
from tests.conftest import imported_modules, run_tasks


def test_help_lists_every_step():
    result = run_tasks("--help")
    for step in STEPS:
        assert f"  {step} " in result.stdout


def test_step_help_lists_flags_with_defaults():
    result = run_tasks("train", "--help")
    assert "--max-seq-length" in result.stdout and "(default: 0)" in result.stdout
    assert "--batch-size" in result.stdout and "train's defaults" in " ".join(result.stdout.split())
    assert "--learning-rate" in result.stdout and "by the base model's size" in " ".join(result.stdout.split())


def test_list_flags_take_their_items_as_separate_arguments():
    tune = parse("tune", ["plan", "--output", "o", "--learning-rate-range", "1e-5", "3e-4", "--batch-sizes", "8"])
    assert tune.action == "plan" and tune.learning_rate_range == [1e-5, 3e-4] and tune.batch_sizes == [8]
    assert tune.epochs_range == [2, 5] and tune.warmup_ratio_range == [0.0, 0.2]


def test_the_pipelines_command_form_of_list_flags_parses():
    """plugins/nlp_pipeline/commands.py gives a list's items as arguments of their own, each ``str(item)``."""
    given = {
        "trials": 4,
        "seed": 7,
        "learning_rate_range": [2e-05, 0.0005],
        "epochs_range": [1, 3],
        "batch_sizes": [16, 32, 64],
        "warmup_ratio_range": [0.0, 0.1],
        "weight_decay_range": [0, 0.05],
        "max_steps": 40,
    }
    argv = ["--output", "o", "--action", "plan"]
    for name, value in given.items():
        argv += [f"--{name.replace('_', '-')}", *map(str, value if isinstance(value, list) else [value])]
    tune = parse("tune", argv)
    assert {name: getattr(tune, name) for name in given} == given


def test_train_leaves_learning_rate_and_epochs_to_the_model_size_unless_given():
    default = parse("train", ["--data", "d", "--output", "o"])
    assert default.learning_rate is None and default.epochs is None and default.score_only is False
    given = parse("train", ["--data", "d", "--output", "o", "--learning-rate", "1e-4", "--epochs", "4", "--score-only"])
    assert (given.learning_rate, given.epochs, given.score_only) == (1e-4, 4, True)


def test_tune_takes_its_action_as_a_word_or_a_flag():
    assert parse("tune", ["select", "--output", "o"]).action == "select"
    assert parse("tune", ["--output", "o", "--action", "select"]).action == "select"
    with pytest.raises(ConfigError, match="invalid choice: 'search'"):
        parse("tune", ["--output", "o", "--action", "search"])
    with pytest.raises(ConfigError, match="unexpected word 'extra' after select"):
        parse("tune", ["select", "extra", "--output", "o"])


def test_no_step_and_unknown_step_exit_2(capsys):
    assert main([]) == 2
    assert main(["xyz"]) == 2
    assert (
        "error: unknown step 'xyz'; choose one of sample, stage, train, tune, quantize, evaluate"
        in capsys.readouterr().err
    )


def test_a_mistyped_step_names_the_step_it_resembles(capsys):
    assert main(["trian"]) == 2
    assert capsys.readouterr().err == "error: unknown step 'trian'; did you mean 'train'?\n"


def test_step_help_shows_each_flag_once_in_kebab_case():
    help_text = run_tasks("stage", "--help").stdout
    assert "--max-seq-length" in help_text and "--on-bad-rows" in help_text
    assert "_" not in "".join(word for word in help_text.split() if word.startswith("--"))


def test_snake_case_flags_still_parse_and_bool_flags_are_switches():
    assert parse("stage", ["--output", "o", "--max_seq_length", "64"]).max_seq_length == 64
    assert parse("stage", ["--output", "o", "--max-seq-length", "64"]).max_seq_length == 64
    assert parse("status", ["--state", "s"]).json is False
    assert parse("status", ["--state", "s", "--json"]).json is True
    # A bool flag is a plain switch: the word after it is not its value.
    with pytest.raises(ConfigError, match="unrecognized arguments: false"):
        parse("status", ["--state", "s", "--json", "false"])


@pytest.mark.parametrize("flag", ["--epoch", "--epoch=3"])
def test_an_abbreviated_flag_is_refused_with_the_flag_it_resembles(flag):
    result = run_tasks("train", "--data", "d", "--output", "o", flag, "3", check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: python -m tasks train: unrecognized arguments: --epoch")
    assert "did you mean --epochs?" in result.stderr


def test_a_failure_is_printed_once_as_the_last_line_of_the_output():
    """The local runner reads the last line of stdout and stderr merged: the error, printed once."""
    command = [sys.executable, "-m", "tasks", "evaluate", "--model", "/absent", "--data", "/absent", "--output", "o"]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = result.stdout.splitlines()
    assert result.returncode == 3
    assert sum("no manifest.json" in line for line in lines) == 1
    assert lines[-1].startswith("error: /absent: no manifest.json; --data must be a folder written by")


def test_exported_names_are_sorted_and_real():
    assert tasks.__all__ == sorted(tasks.__all__)
    assert all(hasattr(tasks, name) for name in tasks.__all__)


def test_the_package_never_imports_airflow_and_the_library_never_imports_the_cli():
    import pathlib

    root = pathlib.Path(tasks.__file__).parent
    imports = {path.relative_to(root).as_posix(): imported_modules(path) for path in sorted(root.rglob("*.py"))}
    assert [path for path, names in imports.items() if any(name.split(".")[0] == "airflow" for name in names)] == []
    assert [path for path, names in imports.items() if "tasks.cli" in names and path != "__main__.py"] == []


def test_steps_given_no_flags_start_without_transformers():
    """The image's HEALTHCHECK (every 30 s beside the server) and entrypoint run `healthcheck` and `cpu-threads`
    without flags: no flag parser is built, so transformers is never imported."""
    import json
    import subprocess
    import sys

    script = (
        "import json, sys\nfrom tasks.cli import main\nmain(['cpu-threads'])\n"
        "print(json.dumps([name for name in ('transformers', 'tensorflow') if name in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    exports, imported = result.stdout.splitlines()[:-1], result.stdout.splitlines()[-1]
    assert json.loads(imported) == []
    assert all(line.startswith("export ") for line in exports)


def test_a_server_started_without_the_flag_takes_the_expected_digest_from_its_environment(monkeypatch):
    """A SageMaker endpoint starts the container with `serve` alone: the model's environment carries the digest."""
    from tasks.config import MODEL_DIGEST_ENV
    from tasks.errors import ConfigError

    digest = "sha256:" + "cd" * 32
    monkeypatch.setenv(MODEL_DIGEST_ENV, digest)
    assert parse("serve", []).model_digest == digest
    assert parse("serve", ["--model-digest", "sha256:" + "ef" * 32]).model_digest == "sha256:" + "ef" * 32
    monkeypatch.setenv(MODEL_DIGEST_ENV, "md5:1")
    with pytest.raises(ConfigError, match="the environment variable NLP_MODEL_DIGEST must be empty or sha256:"):
        parse("serve", [])
