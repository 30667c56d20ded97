"""Finding the traffic baseline ``--baseline`` names: in a model's card, or computed from a staged data folder.

A model is a folder or URI with ``model_card.json``, or a SageMaker model artefact (``model.tar.gz``, or a
folder holding one): the card is then read out of the archive as it streams past, and nothing of it is kept; the
bytes before the card in the archive (for ``train``'s archives, the weights) are still transferred. A staged data folder (``manifest.json``) is downloaded when remote and its train split measured.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import DataError, SourceError
from tasks.monitoring import baseline as traffic_baseline
from tasks.runtime import model_card

log = logging.getLogger(__name__)

ARCHIVE = "model.tar.gz"
_ARCHIVES = (".tar.gz", ".tgz")
_MANIFESTS = ("manifest.json", "manifest/manifest.json")
MODEL_CARD, STAGED_DATA = "model card", "staged data"


@dataclass(frozen=True)
class Reference:
    """The baseline, and where it came from: ``kind`` (MODEL_CARD or STAGED_DATA) of ``uri``."""

    baseline: dict
    kind: str
    uri: str


def load(uri: str) -> Reference:
    """The traffic baseline at ``uri`` (the monitor step's --baseline)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    path = path.rstrip("/")
    try:
        if path.endswith(_ARCHIVES):
            return _from_card(uri, _card_in_archive(fs, path, uri))
        if fs.isfile(f"{path}/{model_card.JSON_CARD}"):
            return _from_card(uri, _read_card(fs, f"{path}/{model_card.JSON_CARD}", uri))
        if fs.isfile(f"{path}/{ARCHIVE}"):
            return _from_card(uri, _card_in_archive(fs, f"{path}/{ARCHIVE}", uri))
        if any(fs.isfile(f"{path}/{manifest}") for manifest in _MANIFESTS):
            return Reference(traffic_baseline.of_staged_data(_local(uri)), STAGED_DATA, uri)
    except FileNotFoundError as error:
        raise DataError(f"--baseline {uri}: no such file: {error}") from error
    except OSError as error:
        raise SourceError(f"--baseline {uri}: cannot read: {error}") from error
    raise DataError(
        f"--baseline {uri}: neither a model (a folder with {model_card.JSON_CARD}, or {ARCHIVE}) nor a staged data"
        " folder (manifest.json)"
    )


def _from_card(uri: str, card: dict) -> Reference:
    found = card.get(model_card.TRAFFIC_BASELINE)
    if not isinstance(found, dict):
        raise DataError(
            f"--baseline {uri}: its model card has no {model_card.TRAFFIC_BASELINE} (a model trained before"
            " train wrote one): pass the staged data folder it was trained on as --baseline, or train it again"
        )
    _check(found, uri)
    return Reference(found, MODEL_CARD, uri)


def _check(baseline: dict, uri: str) -> None:
    """Refuse a baseline without the figures every comparison needs, naming the first missing one."""
    token_length = baseline.get("token_length")
    edges, shares = (
        (token_length.get("edges"), token_length.get("shares")) if isinstance(token_length, dict) else ((), ())
    )
    problems = {
        "token_length.edges and .shares (one share more than edges)": not (
            isinstance(edges, list) and isinstance(shares, list) and len(shares) == len(edges) + 1
        ),
        "positive_share": not isinstance(baseline.get("positive_share"), int | float),
        "unknown_token_rate": not isinstance(baseline.get("unknown_token_rate"), int | float),
    }
    for name, missing in problems.items():
        if missing:
            raise DataError(f"--baseline {uri}: the model card's {model_card.TRAFFIC_BASELINE} has no valid {name}")


def _read_card(fs, path: str, uri: str) -> dict:
    with fs.open(path, "rb") as handle:
        return _parse_card(handle.read(), f"{uri.rstrip('/')}/{model_card.JSON_CARD}")


def _card_in_archive(fs, path: str, uri: str) -> dict:
    """The card at the top of the gzipped tar ``path``, read as the archive streams past."""
    try:
        with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|gz") as archive:
            for member in archive:
                if member.isfile() and posixpath.normpath(member.name) == model_card.JSON_CARD:
                    return _parse_card(archive.extractfile(member).read(), f"{uri} ({member.name})")
    except (tarfile.TarError, EOFError) as error:
        raise DataError(f"--baseline {uri}: not a gzipped tar archive: {error}") from error
    raise DataError(f"--baseline {uri}: the archive holds no {model_card.JSON_CARD}; is it a model of `train`?")


def _parse_card(content: bytes, shown: str) -> dict:
    try:
        card = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"--baseline {shown}: not JSON: {error}") from error
    if not isinstance(card, dict):
        raise DataError(f"--baseline {shown}: a model card is a JSON object, got a {type(card).__name__}")
    return card


def _local(uri: str) -> Path:
    from tasks.runtime.models import resolve
    from tasks.runtime.remote_paths import is_remote

    return resolve(uri) if is_remote(uri) else Path(uri)
