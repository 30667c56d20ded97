import tasks
from tasks.cli import STEPS, main
from tests.conftest import run_tasks


def test_help_lists_every_step():
    result = run_tasks("--help")
    for step in STEPS:
        assert f"  {step} " in result.stdout


def test_step_help_lists_flags_with_defaults():
    result = run_tasks("train", "--help")
    assert "--learning-rate" in result.stdout and "(default: 3e-05)" in result.stdout


def test_no_step_and_unknown_step_exit_2(capsys):
    assert main([]) == 2
    assert main(["deploy"]) == 2
    assert "unknown step 'deploy'; choose one of sample, stage, train, quantize, evaluate" in capsys.readouterr().err


def test_exported_names_are_sorted_and_real():
    assert tasks.__all__ == sorted(tasks.__all__)
    assert all(hasattr(tasks, name) for name in tasks.__all__)


def test_the_package_never_imports_airflow():
    import pathlib
    import re

    sources = pathlib.Path(tasks.__file__).parent.glob("*.py")
    offenders = [path.name for path in sources if re.search(r"^\s*(import|from)\s+airflow\b", path.read_text(), re.M)]
    assert offenders == []


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
