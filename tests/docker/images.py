"""What the Dockerfiles declare, read with dockerfile-parse, and what the build context holds (.dockerignore).

There is no Docker engine here: the tests check each image's recipe against the repository and against the
environment the tests themselves run in, which installs from the same constraints file.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.conftest import REPO

TASK_DOCKERFILE = REPO / "docker" / "task" / "Dockerfile"
AIRFLOW_DOCKERFILE = REPO / "docker" / "airflow" / "Dockerfile"


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]

    def exec_form(self, instruction: str) -> list[str]:
        """The JSON list of the stage's last ``instruction`` (ENTRYPOINT, CMD), which must be exec form."""
        return json.loads(self.values(instruction)[-1])


def stages(dockerfile: Path) -> dict[str, Stage]:
    """The build stages by name, each with its instructions (comments left out), in file order."""
    parsed, found, current = DockerfileParser(path=str(dockerfile)), {}, None
    for instruction in parsed.structure:
        kind, value = instruction["instruction"], instruction["value"]
        if kind == "FROM":
            base, _, name = value.partition(" AS ")
            current = found[name.strip()] = Stage(name.strip(), base.strip())
        elif kind != "COMMENT" and current is not None:
            current.instructions.append((kind, value))
    return found


def default_arguments(dockerfile: Path) -> dict[str, str]:
    """The ``ARG NAME=default`` lines before the first FROM (the ones FROM may use)."""
    parsed = DockerfileParser(path=str(dockerfile))
    arguments = {}
    for instruction in parsed.structure:
        if instruction["instruction"] == "FROM":
            break
        if instruction["instruction"] == "ARG":
            name, _, value = instruction["value"].partition("=")
            arguments[name] = value
    return arguments


def copy_sources(stage: Stage) -> list[str]:
    """The build-context paths a stage's COPY instructions read (``--from`` copies read another stage)."""
    sources = []
    for value in stage.values("COPY"):
        words = shlex.split(value)
        if any(word.startswith("--from=") for word in words):
            continue
        paths = [word for word in words if not word.startswith("--")]
        sources.extend(paths[:-1])
    return sources


def _ignore_pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**`` for any number of folders) as a regex."""
    text = re.escape(pattern.strip("/"))
    text = text.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
    return re.compile(text)


def in_build_context(path: str, dockerignore: Path = REPO / ".dockerignore") -> bool:
    """Whether ``path`` (relative to the repository root) is sent to the builder, as Docker decides: the last
    pattern matching the path or one of its parent folders wins, and ``!`` patterns put paths back."""
    patterns = [line.strip() for line in dockerignore.read_text().splitlines()]
    patterns = [line for line in patterns if line and not line.startswith("#")]
    parts = Path(path.rstrip("/")).parts
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _ignore_pattern(pattern.lstrip("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = negated
    return included
