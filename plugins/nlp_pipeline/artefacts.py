"""Where a run's artefacts, the registry and the local endpoint's state live.

    ROOT/DAG_ID/RUN_KEY/STEP/tryN                one folder per try of a step (staged, model, quantized,
                                                 evaluation), written once and never rewritten
    ROOT/DAG_ID/RUN_KEY/STEP/tryN.command.json   the command that try ran (written before it ran)
    ROOT/registry.sqlite                         the model registry (all DAGs)
    ROOT/DAG_ID/endpoint/                        the local endpoint's state folder
    ROOT/capture/DAG_ID/YYYY/MM/DD/HH/*.jsonl    what the endpoint DAG_ID deployed captured of its traffic
                                                 (tasks/monitoring/records.py), which its monitor DAG reads

ROOT is the Airflow Variable ``nlp_artefact_root`` (or ``AIRFLOW_VAR_NLP_ARTEFACT_ROOT``), by default
``$AIRFLOW_HOME/nlp-artefacts``. RUN_KEY is the run's logical date (its run-after time when a manual run
has none), so each backfill interval writes its own folder. Every try of a step writes a new folder, so
re-running an interval never changes the bytes a registry entry (or an XCom result) names: the registry
records the exact try folder and its digest. A try folder whose name is taken (a deleted run re-created
with the same logical date starts at try 1 again) becomes ``tryN.2``, ``tryN.3``, ...

A retried step reuses an earlier try's output of the same run when that try ran the same command (apart
from ``--output``) and its output is complete: sealed with its content digest (``.digest``,
``tasks.runtime.digest``) and still verifying. Old tries are removed only by ``python -m tasks gc``, which
keeps every folder a registry entry names.

ROOT may be remote (``s3://bucket/prefix``): each step then writes into a local workspace of the same
layout (``$AIRFLOW_HOME/nlp-workspace/DAG_ID/RUN_KEY/STEP/tryN``), which is uploaded to ROOT once the step
succeeded; the next steps of the run read the local copy, and the registry points at the uploaded one.
The registry (a SQLite file) and the endpoint's state, which must be on the worker, stay under
``$AIRFLOW_HOME``.

S3 cannot rename a folder, so each upload goes to a new prefix ``STEP/UPLOAD_ID/`` (the time and the try)
and, once complete, the one object ``STEP/LATEST`` is overwritten with its id (a single PUT, atomic). A
reader sees the old upload or the new one, never a mix; a URI handed on by XCom or kept in the registry
names one upload, which no later try writes again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException

from tasks.errors import ModelError
from tasks.runtime import digest, layout
from tasks.runtime.layout import COMMAND_SUFFIX, LATEST

log = logging.getLogger(__name__)


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))


def workspace_root() -> Path:
    """Where the steps of a remote root write before their upload (garbage-collected by the maintenance DAG)."""
    return airflow_home() / "nlp-workspace"


def root() -> str:
    configured = Variable.get("nlp_artefact_root", default=str(airflow_home() / "nlp-artefacts"))
    return configured.rstrip("/") if is_remote(configured) else str(Path(configured).expanduser().absolute())


def is_remote(location: str) -> bool:
    return "://" in location


def run_key(context) -> str:
    moment = context["dag_run"].logical_date or context["dag_run"].run_after
    return layout.run_key(moment)


def run_hash(run_id: str) -> str:
    """6 hex of the run id: what tells apart two runs of one interval (a run deleted and created again)."""
    return hashlib.sha1(run_id.encode()).hexdigest()[:6]


def try_folder(try_number: int, run_id: str) -> str:
    """``tryN-HASH``: the output folder of one try of a run (HASH: ``run_hash``), where a step writes."""
    return f"try{try_number}-{run_hash(run_id)}"


_TRY_FOLDER = re.compile(r"(?<=/)try\d+-(?=[0-9a-f]{6}(?![0-9a-f]))")


def any_try(arguments: list[str]) -> list[str]:
    """``arguments`` with the try of every ``tryN-HASH`` folder left out: two tries of one run that were given
    the same inputs have the same ``any_try`` arguments, so one may take the other's result."""
    return [_TRY_FOLDER.sub("try*-", argument) for argument in arguments]


def run_suffix(run_key: str, run_id: str) -> str:
    """``RUNKEY-HASH``: the run key and the run's hash, what names a run's jobs, models and TFJobs."""
    return f"{run_key.lower()}-{run_hash(run_id)}"


def run_folder(context) -> str:
    return f"{root()}/{context['dag'].dag_id}/{run_key(context)}"


def step_folder(context, step: str) -> Path:
    """The local folder holding the step's try folders: under ROOT, or the workspace when ROOT is remote."""
    if is_remote(root()):
        return workspace_root() / context["dag"].dag_id / run_key(context) / step
    return Path(run_folder(context)) / step


def _command_record(context, command: list[str]) -> dict:
    return {"run_id": context["run_id"], "command": [str(part) for part in command]}


def _tries(folder: Path) -> list[Path]:
    """The try folders recorded in ``folder``, newest first."""
    records = sorted(folder.glob(f"try*{COMMAND_SUFFIX}"), key=lambda record: record.stat().st_mtime, reverse=True)
    return [record.with_name(record.name.removesuffix(COMMAND_SUFFIX)) for record in records]


def _check_layout(folder: Path) -> None:
    """A step folder of the old layout (one folder per run) is itself an artefact a registry entry may name:
    writing try folders into it would change its bytes."""
    if (folder / digest.DIGEST_FILE).exists() or (folder / "saved_model").exists():
        raise AirflowFailException(
            f"{folder} is an artefact of the one-folder-per-run layout, which a registry entry may name; a try"
            " folder written into it would change its bytes: move it out of the way or point nlp_artefact_root"
            " at a new root"
        )


def reusable_output(context, step: str, command: list[str]) -> Path | None:
    """An earlier try's complete output of this run and ``command`` (its flags without ``--output``): sealed,
    and still verifying against its seal. None when no try qualifies.

    Reusing a try touches its command record: ``python -m tasks gc`` dates a try by its newest file, the record
    included, so a try reused now is not removed as old while the rest of the run reads it."""
    wanted = _command_record(context, command)
    for output in _tries(step_folder(context, step)):
        try:
            recorded = json.loads(output.with_name(output.name + COMMAND_SUFFIX).read_text())
        except (OSError, ValueError):
            continue
        if recorded != wanted or not (expected := digest.sealed(output)):
            continue
        try:
            digest.verify(output, expected)
        except ModelError as error:
            log.warning("not reusing %s's output: %s", output.name, error)
            continue
        output.with_name(output.name + COMMAND_SUFFIX).touch()
        log.info("reusing %s's output (digest %s): %s", output.name, expected, output)
        return output
    return None


def claim_try(context, step: str, command: list[str]) -> Path:
    """This try's new output folder (``STEP/tryN``), claimed by writing its command beside it first; a name
    another run already took gets a suffix, so no try ever writes into a folder an earlier one wrote."""
    folder = step_folder(context, step)
    _check_layout(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = json.dumps(_command_record(context, command), indent=2) + "\n"
    base, suffix = f"try{context['ti'].try_number}", 1
    while True:
        name = base if suffix == 1 else f"{base}.{suffix}"
        suffix += 1
        if (folder / name).exists():
            continue
        try:
            with (folder / f"{name}{COMMAND_SUFFIX}").open("x") as handle:
                handle.write(record)
        except FileExistsError:
            continue
        return folder / name


def publish(context, step: str, local: Path) -> str:
    """The artefact's location under ROOT: ``local`` itself when ROOT is local (a try folder), or ``local``
    uploaded as the step's latest upload when ROOT is remote."""
    target = f"{run_folder(context)}/{step}"
    if not is_remote(target):
        return str(local)
    import fsspec

    fs, path = fsspec.core.url_to_fs(target)
    upload = f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-try{context['ti'].try_number}"
    fs.put(f"{local}/", f"{path}/{upload}/", recursive=True)
    fs.pipe_file(f"{path}/{LATEST}", upload.encode())
    log.info("uploaded %s to %s/%s (now %s/%s)", local, target, upload, target, LATEST)
    return f"{target}/{upload}"


def _local_root() -> Path:
    location = root()
    return airflow_home() / "nlp-artefacts" if is_remote(location) else Path(location)


def registry_file() -> Path:
    return _local_root() / layout.REGISTRY_FILE


def capture_uri(root: str, dag_id: str) -> str:
    """Where the endpoint a training DAG (``dag_id``) deploys writes its capture, under the artefact ``root``: the one
    place the capture location is named (the server's ``--capture-dir``, the monitor step's ``--capture``)."""
    return f"{root.rstrip('/')}/capture/{dag_id}"


def endpoint_state(context) -> Path:
    return _local_root() / context["dag"].dag_id / "endpoint"
