"""docker/build-and-push.sh run for real against recording stand-ins for the `docker` and `aws` CLIs (there is
no Docker engine or AWS account here): what it builds, how it logs in, what it pushes, and what it refuses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, flags

SCRIPT = REPO / "docker" / "build-and-push.sh"
ACCOUNT, REGION = "123456789012", "eu-west-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
TOKEN = "ecr-login-token-from-sts"

# Each stand-in appends one line per call: its name and arguments separated by tabs, then what it read on stdin.
_STAND_IN = """#!/bin/sh
stdin=""
if [ "$1 $2" = "login --username" ]; then stdin="$(cat)"; fi
printf '%s' "$(basename "$0")" >> "$CALLS"
for argument in "$@"; do printf '\\t%s' "$argument" >> "$CALLS"; done
printf '\\tstdin=%s\\n' "$stdin" >> "$CALLS"
case "$(basename "$0") $1 $2" in
    "aws ecr get-login-password") echo "$FAKE_TOKEN" ;;
    "aws ecr describe-repositories") case " $* " in *" $FAKE_EXISTING "*) exit 0 ;; *) exit 254 ;; esac ;;
    "docker build "*) case " $* " in *" --target $FAKE_FAILING_TARGET "*) echo "build failed" >&2; exit 1 ;; esac ;;
esac
exit 0
"""


def run_script(tmp_path: Path, *args: str, existing: str = "nlp/airflow", failing_target: str = "none"):
    """Run the script with `docker` and `aws` stand-ins first on PATH; returns (result, calls)."""
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir(exist_ok=True)
    for name in ("docker", "aws"):
        (stand_ins / name).write_text(_STAND_IN)
        (stand_ins / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    calls.write_text("")
    env = {
        **os.environ,
        "PATH": f"{stand_ins}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(calls),
        "FAKE_TOKEN": TOKEN,
        "FAKE_EXISTING": existing,
        "FAKE_FAILING_TARGET": failing_target,
    }
    result = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)
    return result, [line.split("\t") for line in calls.read_text().splitlines()]


def _option(call: list[str], name: str) -> list[str]:
    return [call[index + 1] for index, word in enumerate(call) if word == name]


def _revision() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def test_builds_every_image_then_logs_in_with_the_token_on_stdin_and_pushes(tmp_path):
    result, calls = run_script(tmp_path, *flags(account=ACCOUNT, region=REGION, repository="nlp", tag="1.2.3"))
    assert result.returncode == 0, result.stderr
    builds = [call for call in calls if call[:2] == ["docker", "build"]]
    built = [tuple(_option(call, name)[0] for name in ("--file", "--target", "--tag")) for call in builds]
    assert built == [
        ("docker/task/Dockerfile", "task", f"{REGISTRY}/nlp/tasks:1.2.3"),
        ("docker/task/Dockerfile", "task-sagemaker", f"{REGISTRY}/nlp/tasks:1.2.3-sagemaker"),
        ("docker/airflow/Dockerfile", "airflow", f"{REGISTRY}/nlp/airflow:1.2.3"),
    ]
    for call in builds:
        assert _option(call, "--platform") == ["linux/amd64"] and call[-2] == "."
        assert {"VERSION=0.1.0", f"REVISION={_revision()}"} <= set(_option(call, "--build-arg"))
    created = [call for call in calls if call[:3] == ["aws", "ecr", "create-repository"]]
    assert len(created) == 1 and _option(created[0], "--repository-name") == ["nlp/tasks"], "airflow exists already"
    assert "scanOnPush=true" in created[0]
    login = next(call for call in calls if call[:2] == ["docker", "login"])
    assert login[1:-1] == ["login", "--username", "AWS", "--password-stdin", REGISTRY]
    assert login[-1] == f"stdin={TOKEN}"
    assert not [call for call in calls if TOKEN in call[:-1]], "the token never appears on a command line"
    pushes = [call[2] for call in calls if call[:2] == ["docker", "push"]]
    assert pushes == [_option(call, "--tag")[0] for call in builds]
    order = [call[1] for call in calls if call[0] == "docker"]
    assert order == ["build"] * 3 + ["login"] + ["push"] * 3
    assert f"  {REGISTRY}/nlp/tasks:1.2.3-sagemaker" in result.stdout.splitlines()


def test_the_default_tag_is_version_and_commit_and_no_push_builds_only(tmp_path):
    china = flags(account=ACCOUNT, region="cn-north-1", repository="ml/nlp")
    result, calls = run_script(tmp_path, *china, "--with-local", "--no-push")
    assert result.returncode == 0, result.stderr
    tags = [_option(call, "--tag")[0] for call in calls if call[:2] == ["docker", "build"]]
    registry, tag = f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn", f"0.1.0-{_revision()[:12]}"
    assert tags[-1] == f"{registry}/ml/nlp/airflow:{tag}-local" and len(tags) == 4
    assert [call[0] for call in calls] == ["docker"] * 4, "nothing logs in or pushes"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--region", REGION, "--repository", "nlp"], "--account must be a 12-digit AWS account id, got ''"),
        (["--account", "12345", "--region", REGION, "--repository", "nlp"], "got '12345'"),
        (["--account", ACCOUNT, "--region", "Europe", "--repository", "nlp"], "--region must be an AWS region"),
        (["--account", ACCOUNT, "--region", REGION, "--repository", "NLP"], "--repository must be an ECR repository"),
        (
            ["--account", ACCOUNT, "--region", REGION, "--repository", "nlp", "--tag", "a:b"],
            "--tag must be a Docker tag",
        ),
        (["--account", ACCOUNT, "--region", REGION, "--repository", "nlp", "--push"], "unknown argument '--push'"),
        (["--account"], "--account needs a value"),
    ],
)
def test_bad_arguments_are_named_before_anything_is_built(tmp_path, arguments, message):
    result, calls = run_script(tmp_path, *arguments)
    assert result.returncode == 2 and message in result.stderr
    assert calls == []


def test_a_failed_build_pushes_nothing(tmp_path):
    target = flags(account=ACCOUNT, region=REGION, repository="nlp")
    result, calls = run_script(tmp_path, *target, failing_target="airflow")
    assert result.returncode == 1 and "build failed" in result.stderr
    assert [call[1] for call in calls] == ["build", "build", "build"], "no login, no push after a failed build"
