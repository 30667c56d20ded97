"""Server-side apply for the fake cluster: field ownership in ``metadata.managedFields``.

Written from the Server-Side Apply page (kubernetes.io/docs/reference/using-api/server-side-apply):

- an apply makes its field manager the owner of exactly the fields it sent (its "fields set");
- a field the manager applied before and no longer sends is removed from the object, or reset to its default
  (a Deployment's ``spec.replicas``: 1), unless another manager owns it too; then it stays, with that owner;
- a field another manager owns with a different value is a conflict (409) unless the apply is forced, which
  moves the field to the applier; managers that set a field to the same value share it;
- an update (a non-apply write, e.g. the HorizontalPodAutoscaler controller setting ``replicas`` through the
  ``scale`` subresource) takes every field it changes from the other managers;
- a manager left owning nothing is dropped from ``managedFields``.

Simplification: lists are atomic (one field each), where Kubernetes merges associative lists (containers by
name) item by item. The pipeline is the only manager of its lists, so this does not change what it sees.
"""

from __future__ import annotations

import copy
import datetime

import kmock

Path = tuple[str, ...]
_UNOWNED = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace"), ("metadata", "managedFields")}
# (apiVersion, kind) -> the defaults a removed field returns to
DEFAULTS = {("apps/v1", "Deployment"): {("spec", "replicas"): 1}}


def field_paths(obj: dict, prefix: Path = ()) -> set[Path]:
    """The fields (leaves; a list is one) an object or an applied configuration sets."""
    paths: set[Path] = set()
    for key, value in obj.items():
        path = (*prefix, key)
        if path in _UNOWNED or path[0] == "status":
            continue
        if isinstance(value, dict) and value:
            paths |= field_paths(value, path)
        else:
            paths.add(path)
    return paths


def _get(obj: dict, path: Path):
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _set(obj: dict, path: Path, value) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = copy.deepcopy(value)


def _remove(obj: dict, path: Path) -> None:
    """Remove the field, and the maps it leaves empty."""
    parents = [obj]
    for key in path[:-1]:
        if not isinstance(parents[-1].get(key), dict):
            return
        parents.append(parents[-1][key])
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1])


def _fields_v1(paths: set[Path]) -> dict:
    tree: dict = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def _paths_of(fields_v1: dict, prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in fields_v1.items():
        if not key.startswith("f:"):
            continue
        path = (*prefix, key[2:])
        paths |= _paths_of(child, path) if child else {path}
    return paths


def owners(obj: dict) -> list[dict]:
    """``managedFields`` as [{manager, operation, subresource, fields: set of paths, apiVersion}]."""
    return [
        {
            "manager": entry["manager"],
            "operation": entry["operation"],
            "subresource": entry.get("subresource"),
            "apiVersion": entry.get("apiVersion"),
            "fields": _paths_of(entry.get("fieldsV1") or {}),
        }
        for entry in (obj.get("metadata") or {}).get("managedFields") or []
    ]


def _managed_fields(entries: list[dict]) -> list[dict]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {
            "manager": entry["manager"],
            "operation": entry["operation"],
            "apiVersion": entry["apiVersion"],
            "time": now,
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields_v1(entry["fields"]),
        }
        | ({"subresource": entry["subresource"]} if entry.get("subresource") else {})
        for entry in entries
        if entry["fields"]
    ]


def _same_manager(entry: dict, manager: str, operation: str, subresource: str | None) -> bool:
    return (entry["manager"], entry["operation"], entry.get("subresource")) == (manager, operation, subresource)


def _conflict(conflicts: list[tuple[Path, dict]]) -> kmock.KubernetesError:
    """The 409 an apply gets for fields other managers own with other values (the API server's wording)."""

    def who(entry: dict) -> str:
        text = f'conflict with "{entry["manager"]}"'
        if entry.get("subresource"):
            text += f' with subresource "{entry["subresource"]}"'
        return text + (f" using {entry['apiVersion']}" if entry["operation"] == "Update" else "")

    causes = [
        {"type": "FieldManagerConflict", "message": who(entry), "field": "." + ".".join(path)}
        for path, entry in conflicts
    ]
    listed = "\n".join(f"- {cause['message']}: {cause['field']}" for cause in causes)
    return kmock.KubernetesError(
        status=409,
        reason="Conflict",
        message=f"Apply failed with {len(causes)} conflict{'s' if len(causes) > 1 else ''}: {listed}",
        details={"causes": causes},
    )


def apply(live: dict, applied: dict, manager: str, *, force: bool) -> dict:
    """The object after ``manager`` applies ``applied`` to ``live`` (``{}`` when there is none yet)."""
    entries = owners(live)
    sent = field_paths(applied)
    conflicts = [
        (path, entry)
        for entry in entries
        if not _same_manager(entry, manager, "Apply", None)
        for path in sorted(sent & entry["fields"])
        if _get(live, path) != _get(applied, path)
    ]
    if conflicts and not force:
        raise _conflict(conflicts)
    for path, entry in conflicts:
        entry["fields"].discard(path)
    result = copy.deepcopy(live)
    for path in sent | {path for path in _UNOWNED if path != ("metadata", "managedFields")}:
        if _get(applied, path) is not None:
            _set(result, path, _get(applied, path))
    mine = next((entry for entry in entries if _same_manager(entry, manager, "Apply", None)), None)
    others = set().union(*(entry["fields"] for entry in entries if entry is not mine))
    defaults = DEFAULTS.get((applied.get("apiVersion"), applied.get("kind")), {})
    for path in (mine["fields"] if mine else set()) - sent - others:
        _remove(result, path)
        if path in defaults:
            _set(result, path, defaults[path])
    if mine is None:
        mine = {"manager": manager, "operation": "Apply", "subresource": None}
        entries.append(mine)
    mine.update(fields=sent, apiVersion=applied.get("apiVersion"))
    result.setdefault("metadata", {})["managedFields"] = _managed_fields(entries)
    return result


def update(live: dict, changes: dict[Path, object], manager: str, *, subresource: str | None = None) -> dict:
    """The object after ``manager`` writes ``changes`` (path -> value) with an update: it owns what it changed."""
    entries = owners(live)
    result = copy.deepcopy(live)
    changed = {path for path, value in changes.items() if _get(live, path) != value}
    for path, value in changes.items():
        _set(result, path, value)
    for entry in entries:
        entry["fields"] -= changed
    mine = next((entry for entry in entries if _same_manager(entry, manager, "Update", subresource)), None)
    if mine is None:
        mine = {"manager": manager, "operation": "Update", "subresource": subresource, "fields": set()}
        entries.append(mine)
    mine.update(fields=mine["fields"] | changed, apiVersion=live.get("apiVersion"))
    result.setdefault("metadata", {})["managedFields"] = _managed_fields(entries)
    return result
