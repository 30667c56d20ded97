"""`make airflow` is private by default: the UI listens on 127.0.0.1 only, and its admin password is generated
once, kept in a file only its owner reads, and never admin/admin. Checked on what make would run (`make -n`) and
on the password script it runs, not on a started server."""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PASSWORD_SCRIPT = REPO / "docker" / "airflow" / "admin_password.py"


def dry_run(target: str, demo: Path) -> list[str]:
    """The shell lines `make TARGET` would run for a fresh demo folder, unexecuted."""
    result = subprocess.run(
        ["make", "-n", target, f"DEMO={demo}"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return result.stdout.replace("\\\n", " ").splitlines()  # a recipe line continued with a backslash is one


def assignments(line: str) -> dict[str, str]:
    """The ``NAME=value`` words a shell line sets for its command."""
    return dict(word.split("=", 1) for word in shlex.split(line) if "=" in word and word.split("=")[0].isidentifier())


def generate(passwords: Path, user: str = "admin") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PASSWORD_SCRIPT), str(passwords), user], capture_output=True, text=True, check=False
    )


def test_make_airflow_listens_on_localhost_only(tmp_path):
    from airflow.configuration import retrieve_configuration_description

    standalone = next(line for line in dry_run("airflow", tmp_path) if line.endswith("airflow standalone"))
    settings = assignments(standalone)
    assert settings["AIRFLOW__API__HOST"] == "127.0.0.1", "the UI and REST API would listen on every interface"
    assert "0.0.0.0" not in standalone
    options = retrieve_configuration_description()
    for name in settings:
        if name.startswith("AIRFLOW__"):
            section, key = name.removeprefix("AIRFLOW__").lower().split("__")
            assert key in options[section]["options"], f"{name} is no Airflow option: Airflow would ignore it"


def test_the_airflow_home_gets_a_generated_password_not_admin(tmp_path):
    lines = dry_run("airflow", tmp_path)
    standalone = next(line for line in lines if line.endswith("airflow standalone"))
    passwords = assignments(standalone)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert not [line for line in lines if '"admin": "admin"' in line], "the home setup writes admin/admin"
    writers = [shlex.split(line) for line in lines if str(PASSWORD_SCRIPT.relative_to(REPO)) in line]
    assert writers, "no recipe line runs docker/airflow/admin_password.py"
    for words in writers:
        assert words[-2] == passwords, "the script writes another file than the one Airflow reads"
    assert any("airflow db migrate" in line for line in lines), "the Airflow home is set up by the same recipe"


def test_the_password_is_generated_once_printed_once_and_kept_private(tmp_path):
    passwords = tmp_path / "airflow" / "passwords.json"
    passwords.parent.mkdir()
    first = generate(passwords)
    assert first.returncode == 0, first.stderr
    password = json.loads(passwords.read_text())["admin"]
    assert password != "admin" and len(password) >= 16
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert password in first.stdout and str(passwords) in first.stdout
    second = generate(passwords)
    assert second.returncode == 0, second.stderr
    assert json.loads(passwords.read_text()) == {"admin": password}, "a second run keeps the password"
    assert password not in second.stdout and str(passwords) in second.stdout, "printed once; then where it is"
    assert [path.name for path in passwords.parent.iterdir()] == ["passwords.json"], "no temporary file is left"


def test_an_old_admin_admin_file_gets_a_new_password_and_other_users_are_kept(tmp_path):
    passwords = tmp_path / "passwords.json"
    passwords.write_text('{"admin": "admin", "viewer": "chosen-by-them"}')
    passwords.chmod(0o644)
    result = generate(passwords)
    assert result.returncode == 0, result.stderr
    written = json.loads(passwords.read_text())
    assert written["admin"] != "admin" and written["admin"] in result.stdout
    assert written["viewer"] == "chosen-by-them"
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600


def test_a_readable_password_file_is_made_private_and_kept(tmp_path):
    passwords = tmp_path / "passwords.json"
    passwords.write_text('{"admin": "a-password-they-chose"}')
    passwords.chmod(0o644)
    result = generate(passwords)
    assert result.returncode == 0, result.stderr
    assert json.loads(passwords.read_text()) == {"admin": "a-password-they-chose"}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert "a-password-they-chose" not in result.stdout


@pytest.mark.parametrize("content", ["{not json", '["admin"]', '{"admin": 7}'])
def test_a_malformed_password_file_is_one_clear_error_and_left_alone(tmp_path, content):
    passwords = tmp_path / "passwords.json"
    passwords.write_text(content)
    result = generate(passwords)
    assert result.returncode != 0
    assert str(passwords) in result.stderr and "delete it" in result.stderr
    assert "Traceback" not in result.stderr
    assert passwords.read_text() == content
