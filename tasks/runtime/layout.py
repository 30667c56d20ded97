"""The names of the artefact layout, defined once: the writers (plugins/nlp_pipeline/artefacts.py,
``tasks.runtime.outputs``, ``tasks.runtime.models``) and the one who cleans up after them
(``tasks.runtime.housekeeping``) must agree on every one, or gc would remove what is in use or keep what is not.

    ROOT/registry.sqlite                        a platform's model registry
    ROOT/DAG_ID/RUN_KEY/STEP/tryN               a try's output, beside it tryN.command.json
    ROOT/DAG_ID/RUN_KEY/STEP/LATEST             on S3: the id of the step's newest upload
    FOLDER/.NAME.tmp-XXXXXXXX, .NAME.old-XXXXXXXX, .NAME.partial
                                                temporary siblings of FOLDER/NAME while it is written or replaced
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path

REGISTRY_FILE = "registry.sqlite"
# Beside each try folder: the command that wrote it, written before the try ran.
COMMAND_SUFFIX = ".command.json"
# In an S3 step folder: the id of the newest complete upload.
LATEST = "LATEST"
# A run folder's name: the run's logical date (UTC).
RUN_KEY_FORMAT = "%Y%m%dT%H%M%SZ"

_TMP, _OLD, _PARTIAL = "tmp", "old", "partial"
_TEMPORARY = re.compile(rf"^\.(?P<name>.+)\.(?:{_TMP}-[0-9a-z]+|{_OLD}-[0-9a-z]+|{_PARTIAL})$")


def run_key(moment: datetime) -> str:
    return moment.strftime(RUN_KEY_FORMAT)


def is_run_key(name: str) -> bool:
    try:
        return run_key(datetime.strptime(name, RUN_KEY_FORMAT)) == name
    except ValueError:
        return False


def work_sibling(final: Path) -> Path:
    """A fresh temporary sibling of ``final`` to write into before it is renamed into place."""
    return final.parent / f".{final.name}.{_TMP}-{uuid.uuid4().hex[:8]}"


def old_sibling(final: Path) -> Path:
    """A fresh temporary sibling to move ``final`` aside to before it is removed."""
    return final.parent / f".{final.name}.{_OLD}-{uuid.uuid4().hex[:8]}"


def partial_sibling(final: Path) -> Path:
    """The fixed work folder beside ``final`` that a resumable step reuses across attempts."""
    return final.parent / f".{final.name}.{_PARTIAL}"


def temporary_target(name: str) -> str | None:
    """The name of what a temporary sibling called ``name`` stands in for; None when it is none."""
    match = _TEMPORARY.match(name)
    return match["name"] if match else None
