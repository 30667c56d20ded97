"""docker-compose.yaml: valid against the Compose specification, every service's image, command, health
check and mounts checked against the repository and the installed Airflow (the running stack's health checks:
stack/test_compose_stack.py)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest
import yaml

from tests.conftest import REPO
from tests.docker import compose
from tests.docker.compose import AIRFLOW_COMMANDS
from tests.docker.images import AIRFLOW_DOCKERFILE, stages


@pytest.fixture(scope="module")
def services() -> dict:
    return compose.load()["services"]


def _validator():
    import jsonschema

    assert compose.COMPOSE_SCHEMA.is_file(), f"{compose.COMPOSE_SCHEMA} is missing: run `make compose-schema`"
    # The schema names draft 2019-09 in a form jsonschema no longer recognises by itself.
    return jsonschema.Draft201909Validator(json.loads(compose.COMPOSE_SCHEMA.read_text()))


def test_compose_file_follows_the_compose_specification():
    validator = _validator()
    for document in (yaml.safe_load(compose.COMPOSE_FILE.read_text()), compose.load()):
        errors = [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]
        assert errors == []
    mistyped = compose.load()
    mistyped["services"]["postgres"]["healthcheck"]["intervall"] = "10s"
    assert not validator.is_valid(mistyped), "the schema refuses unknown keys"


def test_every_variable_is_documented_in_env_example_and_required_ones_have_a_value():
    assert compose.referenced_variables() <= compose.documented_variables()
    with pytest.raises(ValueError, match="_AIRFLOW_WWW_USER_PASSWORD: set _AIRFLOW_WWW_USER_PASSWORD in .env"):
        compose.load(compose.env_file())  # .env.example as it is: no default password
    compose.load()  # once the password is chosen, every ${NAME:?...} is set
    assert ".env" in (REPO / ".gitignore").read_text().splitlines(), "a filled-in .env must never be committed"
    example = compose.env_file()
    assert not [name for name in example if name.startswith("AWS_") and name != "AWS_CONFIG_DIR"], (
        "AWS credentials are shown commented out only"
    )


def test_airflow_services_run_the_local_airflow_image_with_the_local_executor(services):
    assert set(AIRFLOW_COMMANDS) | {"airflow-init", "airflow-cli"} <= set(services)
    targets = stages(AIRFLOW_DOCKERFILE)
    for name in [*AIRFLOW_COMMANDS, "airflow-init"]:
        service = services[name]
        assert service["image"] == "nlp-airflow:local"
        build = service["build"]
        assert (REPO / build["context"] / build["dockerfile"]) == AIRFLOW_DOCKERFILE
        assert build["target"] in targets and build["target"] == "airflow-local", "nlp_local runs in the worker"
        environment = service["environment"]
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
        assert environment["AIRFLOW_CONFIG"] == "/opt/airflow/config/airflow.cfg"
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image} is not pinned"


def test_every_airflow_setting_is_an_option_of_the_installed_airflow(services):
    """Airflow ignores an AIRFLOW__SECTION__KEY it does not know: a misspelt one would silently do nothing."""
    from airflow.configuration import retrieve_configuration_description

    options = retrieve_configuration_description(include_providers=True)
    for name in [*AIRFLOW_COMMANDS, "airflow-init"]:
        for variable in services[name]["environment"]:
            if variable.startswith("AIRFLOW__"):
                section, key = variable.removeprefix("AIRFLOW__").lower().split("__")
                assert key in options.get(section, {}).get("options", {}), f"{name}: {variable} is no Airflow option"


def test_airflow_commands_exist_in_the_installed_airflow(services):
    from airflow.cli.cli_parser import get_parser

    subcommands = next(action for action in get_parser()._actions if action.dest == "subcommand").choices
    for name, command in AIRFLOW_COMMANDS.items():
        assert services[name]["command"] == command and command in subcommands
    jobs = subcommands["jobs"]._actions
    check = next(action for action in jobs if action.dest == "subcommand").choices["check"]
    job_types = next(action for action in check._actions if action.dest == "job_type").choices
    for name in ("airflow-dag-processor", "airflow-triggerer"):
        words = shlex.split(services[name]["healthcheck"]["test"][1])
        assert words[:4] == ["airflow", "jobs", "check", "--job-type"] and words[4] in job_types


def test_services_start_in_order_and_only_once_their_dependencies_are_healthy(services):
    for name in AIRFLOW_COMMANDS:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"] == {"condition": "service_healthy"}
        assert depends_on["airflow-init"] == {"condition": "service_completed_successfully"}
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an unknown service {dependency}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no health check"
        if name not in ("airflow-init", "airflow-cli", "minio-init"):
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert set(services["minio"]["profiles"]) == set(services["minio-init"]["profiles"]) == {"minio"}


def test_bind_mounts_exist_and_land_where_the_images_expect_them(services):
    copied = {value.split()[-1].rstrip("/") for value in stages(AIRFLOW_DOCKERFILE)["airflow"].values("COPY")}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (REPO / source).is_dir(), f"{name} mounts {source}, which the repository lacks"
                if source in ("./dags", "./plugins"):
                    assert target in copied, f"{name} mounts {source} at {target}, not where the image has it"
    scheduler = services["airflow-scheduler"]
    assert scheduler["ports"] == ["127.0.0.1:8090:8080"], "the nlp_local endpoint (endpoint_port 8080) is published"
    assert scheduler["environment"]["AIRFLOW_VAR_NLP_ENDPOINT_PUBLIC_URL"] == "http://127.0.0.1:8090", "its link"
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    # The mounted tasks/ shadows the installed copy: PYTHONPATH is its parent.
    assert "./tasks:/opt/nlp/tasks:ro" in scheduler["volumes"] and scheduler["environment"]["PYTHONPATH"] == "/opt/nlp"


def test_airflow_init_migrates_and_writes_the_admin_password_as_json(services, tmp_path):
    init = services["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true" and init["user"] == "0:0"
    script = init["command"][1]
    line = next(line for line in script.splitlines() if "json.dump" in line)
    writer = shlex.split(line.rstrip("\\"))
    password = 'pa"ss\\word'
    result = subprocess.run(
        writer,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"], "_AIRFLOW_WWW_USER_USERNAME": "admin", "_AIRFLOW_WWW_USER_PASSWORD": password},
    )
    assert json.loads(result.stdout) == {"admin": password}
    lines = script.splitlines()
    chmod = lines.index("chmod 600 /opt/airflow/config/passwords.json")
    assert lines.index(line) < chmod < next(i for i, text in enumerate(lines) if text.startswith("chown")), (
        "the password file is made private once written, before the services' user gets it"
    )
    assert "airflow config list" in script, "the shared airflow.cfg (JWT secret) is written once"


# What each secret may reach: the services that use it, and no other.
SECRET_USERS = {
    "_AIRFLOW_WWW_USER_PASSWORD": {"airflow-init"},  # it writes the password file the api-server reads
    "POSTGRES_PASSWORD": {"postgres", "airflow-init", "airflow-cli", *AIRFLOW_COMMANDS},  # the metadata database
    "MINIO_ROOT_PASSWORD": {"minio", "minio-init"},
    # AWS is called by tasks (the LocalExecutor runs them in the scheduler) and by deferred operators' triggers.
    **dict.fromkeys(
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_DIR"],
        {"airflow-scheduler", "airflow-triggerer"},
    ),
}


def test_published_ports_listen_on_localhost_unless_env_says_otherwise():
    for variables in (None, dict(compose.FILLED_IN)):  # .env.example as shipped, and an .env holding passwords only
        published = {name: service.get("ports") for name, service in compose.load(variables)["services"].items()}
        published = {name: ports for name, ports in published.items() if ports}
        assert set(published) == {"airflow-apiserver", "airflow-scheduler", "minio"}
        for name, ports in published.items():
            assert all(port.startswith("127.0.0.1:") for port in ports), f"{name} publishes {ports} on every interface"
    opened = compose.load(compose.env_file() | compose.FILLED_IN | {"NLP_BIND_ADDRESS": "0.0.0.0"})["services"]
    assert opened["airflow-apiserver"]["ports"] == ["0.0.0.0:8080:8080"], "NLP_BIND_ADDRESS in .env opens them"


def test_no_service_is_handed_the_whole_env_file():
    for name, service in yaml.safe_load(compose.COMPOSE_FILE.read_text())["services"].items():
        assert "env_file" not in service, f"{name} gets every secret in .env: list what it uses under environment"


def test_each_secret_reaches_only_the_services_that_use_it():
    secrets = {name: f"secret-of-{name.lower()}" for name in SECRET_USERS}
    services = compose.load(compose.env_file() | compose.FILLED_IN | secrets)["services"]
    for name, value in secrets.items():
        reached = {service for service, definition in services.items() if value in json.dumps(definition)}
        assert reached == SECRET_USERS[name], f"{name} reaches {sorted(reached)}"
    unset = compose.load()["services"]["airflow-scheduler"]["environment"]
    assert "AWS_ACCESS_KEY_ID" not in unset, "a credential .env does not set stays unset, not empty"


def test_retraining_runs_keep_the_endpoints_capture_by_default(monkeypatch):
    """Scheduled and drift-triggered runs take the Params' defaults: shipped as is, the compose stack leaves the
    endpoint's capture as it is (capture_sample_rate null), rather than turning it off."""
    monkeypatch.syspath_prepend(str(REPO / "plugins"))
    from nlp_pipeline import params

    for variables in (compose.env_file() | compose.FILLED_IN, dict(compose.FILLED_IN)):
        environment = compose.load(variables)["services"]["airflow-scheduler"]["environment"]
        monkeypatch.setenv(params.DEFAULT_CAPTURE_RATE_ENV, environment[params.DEFAULT_CAPTURE_RATE_ENV])
        assert params.default_capture_rate() is None
