"""The two Dockerfiles and the shell scripts beside them: linted, and checked against the repository."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.docker.images import (
    AIRFLOW_DOCKERFILE,
    TASK_DOCKERFILE,
    copy_sources,
    default_arguments,
    in_build_context,
    stages,
)

# hadolint, shellcheck and dumb-init come as wheels into this environment (`make install`).
BIN = Path(sys.executable).parent
DOCKERFILES = [TASK_DOCKERFILE, AIRFLOW_DOCKERFILE]
SHELL_SCRIPTS = [REPO / "docker" / "task" / "entrypoint.sh", REPO / "docker" / "build-and-push.sh"]
# What python:3.11-slim (Debian slim) has of the system libraries a compiled wheel may link against.
_SLIM_LIBRARIES = {
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "libpthread.so.0",
    "librt.so.1",
    "libresolv.so.2",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libz.so.1",
}
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE)", re.IGNORECASE)


def _pip_install(stage) -> str:
    return next(command for command in stage.values("RUN") if "pip install" in command)


def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_hadolint_finds_nothing(dockerfile):
    result = subprocess.run([BIN / "hadolint", "--format", "json", dockerfile], capture_output=True, text=True)
    assert json.loads(result.stdout) == [], result.stdout
    assert result.returncode == 0


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_shellcheck_finds_nothing(script):
    result = subprocess.run([BIN / "shellcheck", "--format", "gcc", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile):
    sources = [source for stage in stages(dockerfile).values() for source in copy_sources(stage)]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"{dockerfile.name} copies {source}, which the repository lacks"
        assert in_build_context(source), f"{dockerfile.name} copies {source}, which .dockerignore leaves out"
    for left_out in (
        ".venv/bin/python",
        "demo-output/dag-run.log",
        ".git/config",
        ".env",
        "tests/conftest.py",
        "tasks/__pycache__/cli.cpython-311.pyc",
    ):
        assert not in_build_context(left_out), f"{left_out} would be sent to the builder"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_images_install_every_package_from_the_committed_constraints_in_one_pip_command(dockerfile):
    for stage in stages(dockerfile).values():
        for command in stage.values("RUN"):
            if "pip install" in command:
                assert "--constraint" in shlex.split(command), f"{stage.name}: {command}"
                assert command.count("pip install") == 1


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_images_carry_source_and_version_labels_and_no_secrets(dockerfile):
    for stage in stages(dockerfile).values():
        for kind, value in stage.instructions:
            if kind in ("ENV", "ARG"):
                names = [word.split("=")[0] for word in shlex.split(value)]
                assert not [name for name in names if _SECRET_NAME.search(name)], f"{stage.name}: {kind} {value}"
    labelled = [stage for stage in stages(dockerfile).values() if stage.values("LABEL")]
    assert labelled, "no stage is labelled"
    labels = " ".join(labelled[0].values("LABEL"))
    for key in ("source", "version", "revision", "title"):
        assert f"org.opencontainers.image.{key}=" in labels


def test_task_image_runs_the_entrypoint_under_dumb_init_as_uid_1000_and_root_only_for_sagemaker():
    task_stages = stages(TASK_DOCKERFILE)
    assert list(task_stages) == ["builder", "task-sagemaker", "task"], "task is the default (last) target"
    runtime, task = task_stages["task-sagemaker"], task_stages["task"]
    assert runtime.exec_form("ENTRYPOINT") == ["dumb-init", "--", "nlp-task-entrypoint"]
    assert runtime.exec_form("CMD") == ["serve"]
    assert "/usr/local/bin/nlp-task-entrypoint" in runtime.values("COPY")[-1]
    assert not runtime.values("USER"), "SageMaker writes /opt/ml only as root"
    # Kubernetes checks runAsNonRoot against a numeric USER only; the pods run as uid 1000.
    assert task.base == "task-sagemaker" and task.values("USER") == ["1000:0"]
    assert "--uid 1000" in " ".join(runtime.values("RUN"))
    healthcheck = runtime.values("HEALTHCHECK")[-1]
    assert json.loads(healthcheck.split(" CMD ", 1)[1]) == ["python", "-m", "tasks", "healthcheck"]
    environment = " ".join(runtime.values("ENV"))
    assert "TF_ENABLE_ONEDNN_OPTS=1" in environment and "TF_USE_LEGACY_KERAS=1" in environment


def test_task_image_final_stages_take_the_environment_from_the_builder_and_build_nothing():
    task_stages = stages(TASK_DOCKERFILE)
    assert task_stages["builder"].base == task_stages["task-sagemaker"].base == "${PYTHON_IMAGE}"
    assert default_arguments(TASK_DOCKERFILE)["PYTHON_IMAGE"].startswith("python:3.11-slim")
    runtime = task_stages["task-sagemaker"]
    assert "--from=builder /opt/venv /opt/venv" in runtime.values("COPY")
    for command in runtime.values("RUN") + task_stages["task"].values("RUN"):
        assert not re.search(r"\b(pip|apt-get|apt|gcc|make|curl|wget)\b", command), command
    # The image installs what `make install` installs here: the container extra is dumb-init.
    assert (BIN / "dumb-init").is_file()


def test_airflow_image_installs_exactly_the_airflow_side_dependencies_of_pyproject():
    import tomllib

    from packaging.requirements import Requirement

    def names(requirements):
        return {(Requirement(text).name, frozenset(Requirement(text).extras)) for text in requirements}

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["airflow"]
    install = shlex.split(_pip_install(stages(AIRFLOW_DOCKERFILE)["airflow"]))
    requested = [word for word in install[install.index("install") + 1 :] if not word.startswith("-")]
    requested = [word.replace("${AIRFLOW_VERSION}", "3.3.2") for word in requested if not word.endswith(".txt")]
    assert names(requested) == names(declared)


def test_airflow_image_is_the_official_one_of_the_pinned_airflow_with_the_providers():
    pins = _pins()
    base = default_arguments(AIRFLOW_DOCKERFILE)["AIRFLOW_IMAGE"]
    assert base == f"apache/airflow:{pins['apache-airflow']}-python3.11"
    airflow_stages = stages(AIRFLOW_DOCKERFILE)
    assert list(airflow_stages) == ["airflow", "airflow-local"]
    install = _pip_install(airflow_stages["airflow"])
    for package in ("apache-airflow-providers-amazon[aiobotocore]", "apache-airflow-providers-cncf-kubernetes"):
        assert package in install
    copies = airflow_stages["airflow"].values("COPY")
    assert "--chown=50000:0 dags/ /opt/airflow/dags/" in copies
    assert "--chown=50000:0 plugins/ /opt/airflow/plugins/" in copies
    # The plugins import the step contract from the tasks package; nlp_sagemaker and nlp_eks need no ML stack.
    assert "--chown=50000:0 tasks/ /opt/nlp/tasks/" in copies
    no_dependencies = "pip install --no-cache-dir --constraint /opt/nlp/constraints.txt --no-deps /opt/nlp"
    assert no_dependencies in airflow_stages["airflow"].values("RUN")
    assert "/opt/nlp" in _pip_install(airflow_stages["airflow-local"]).split()[-1]
    # The official image's user installs, and owns the folder pip builds the tasks package in.
    users = airflow_stages["airflow"].values("USER")
    assert users[-1] == "50000" and not airflow_stages["airflow-local"].values("USER")
    assert "chown 50000:0 /opt/nlp" in " ".join(airflow_stages["airflow"].values("RUN"))


def test_no_compiled_module_needs_a_system_library_the_slim_base_lacks():
    """The task image installs no Debian package: every shared object the pinned wheels bring (this
    environment installs the same ones) links only against libraries python:3.11-slim has, or its own."""
    import sysconfig

    site_packages = Path(sysconfig.get_paths()["purelib"])
    objects = [path for path in site_packages.rglob("*.so*") if path.is_file()]
    assert len(objects) > 100
    needed = set()
    for start in range(0, len(objects), 100):
        listing = subprocess.run(["ldd", *objects[start : start + 100]], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            name, arrow, target = line.strip().partition(" => ")
            if not arrow or str(site_packages) in target:
                continue  # the loader and vDSO lines, or a library the wheel ships
            # auditwheel renames the libraries it vendors with a hash; ldd may not follow their rpath
            if target.startswith("not found") and re.search(r"-[0-9a-f]{8}\.so", name):
                continue
            needed.add(name)
    assert needed - _SLIM_LIBRARIES == set()
