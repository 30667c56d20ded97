"""What a run of nlp_eks may ask of the cluster: pod sizes, tolerations and node labels, in two layers.

- **Static bounds**, in the Params' JSON schema, which Airflow checks at trigger time (form, REST and CLI alike):
  a CPU of at most ``STATIC_MAX["cpu"]``, a memory of at most ``STATIC_MAX["memory"]`` (``CPU_BODY``,
  ``MEMORY_BODY``: patterns whose digits are bounded, since a schema cannot compare quantities), a toleration
  key in Kubernetes' label-key syntax (``LABEL_KEY_BODY``; an empty key with ``Exists`` would tolerate every
  taint), a value in label-value syntax (``LABEL_VALUE_BODY``) and none with ``Exists``.
- **The cluster's limits**, the Airflow Variable ``nlp_k8s_limits`` (``VARIABLE``): a JSON object with the keys
  of ``DEFAULTS``, each missing key taking its default. A Param schema cannot read a Variable at trigger time,
  so ``check`` runs in the run's first pod's task (eks.py ``stage_dataset``), before any pod exists, and every
  refusal names the Param, its value and the limit. The Variable only tightens: the static bounds still hold.

Quantities are compared as numbers (``parse_quantity``: Kubernetes' grammar, ``500m``, ``0.5``, ``16Gi``,
``16G``, ``1e3``), never as text. No airflow import: eks.py turns a ``LimitError`` into a failed task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

VARIABLE = "nlp_k8s_limits"
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")  # a taint's effects (core/v1 Taint)
# The Params each limit applies to.
CPU_PARAMS = ("step_cpu", "server_cpu")
MEMORY_PARAMS = ("step_memory", "server_memory")
NODE_LABEL_PARAMS = ("node_features", "compression_node_features")  # None: another Param's labels
TOLERATION_PARAMS = ("tolerations",)
# The most any run may ask, whatever the Variable says: the Params' schema holds these.
STATIC_MAX = {"cpu": "64", "memory": "512Gi"}
# The Variable's keys and what a missing key means.
DEFAULTS = {
    "max_cpu": "16",  # per pod: step_cpu and server_cpu
    "max_memory": "64Gi",  # per pod: step_memory and server_memory
    "toleration_keys": [],  # taint keys the tolerations Param may name; none: the pods tolerate no taint
    "toleration_effects": ["NoSchedule", "PreferNoSchedule"],  # ... and the effects it may name
    "node_labels": ["feature.node.kubernetes.io/"],  # node labels node_features may require; "PREFIX/": all of it
}

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"m": -1, "": 0, "k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
# <quantity> ::= <signedNumber><suffix>, <suffix> ::= <binarySI> | <decimalExponent> | <decimalSI>
# (Kubernetes API reference, Quantity; kilo is k, 1000, while Ki is 1024).
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<binary>[KMGTPE]i)|[eE](?P<exponent>[+-]?[0-9]+)|(?P<decimal>[mkMGTPE]?))"
)


class LimitError(ValueError):
    """A run's Params ask more of the cluster than ``nlp_k8s_limits`` allows, or the Variable is malformed."""


def parse_quantity(text: str) -> Fraction:
    """The number a Kubernetes quantity stands for (``500m`` is 1/2, ``1Ki`` 1024, ``1k`` 1000)."""
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 500m, 2, 0.5, 512Mi, 16Gi)")
    number = Fraction(match["number"])
    if match["binary"]:
        return number * 1024 ** _BINARY[match["binary"]]
    if match["exponent"] is not None:
        return number * Fraction(10) ** int(match["exponent"])
    return number * Fraction(1000) ** _DECIMAL[match["decimal"]]


def digits_up_to(maximum: int) -> str:
    """A regular expression of the whole numbers 1 to ``maximum`` written without leading zeros.

    Shorter numbers take any digits; numbers as long as ``maximum`` take, at the first digit where they differ
    from it, a smaller one and then any digits (512: ``[1-9][0-9]?``, ``[1-4][0-9]{2}``, ``50[0-9]``, ``51[01]``,
    ``512``)."""
    top = str(maximum)
    shorter = len(top) - 1  # the digits of the longest shorter number
    branches = {0: [], 1: ["[1-9]"], 2: ["[1-9][0-9]?"]}.get(shorter, [rf"[1-9][0-9]{{0,{shorter - 1}}}"])
    for position, digit in enumerate(top):
        lowest, highest = (1 if position == 0 else 0), int(digit) - 1
        if highest >= lowest:
            branches.append(top[:position] + _digit_range(lowest, highest) + _any_digits(len(top) - position - 1))
    return "|".join([*branches, top])


def _digit_range(lowest: int, highest: int) -> str:
    if lowest == highest:
        return str(lowest)
    return f"[{lowest}{highest}]" if highest == lowest + 1 else f"[{lowest}-{highest}]"


def _any_digits(count: int) -> str:
    return {0: "", 1: "[0-9]"}.get(count, f"[0-9]{{{count}}}")


def _bounded(maximum: Fraction, suffix: str, unit: int) -> str:
    return f"(?:{digits_up_to(int(maximum // unit))}){suffix}"


_MAX_CORES = parse_quantity(STATIC_MAX["cpu"])
_MAX_BYTES = parse_quantity(STATIC_MAX["memory"])
# CPU: whole cores, millicores, or cores with up to three decimals (Kubernetes' precision is 1m), above 0.
CPU_BODY = "|".join(
    [
        _bounded(_MAX_CORES, "", 1),
        _bounded(_MAX_CORES * 1000, "m", 1),
        rf"(?:{digits_up_to(int(_MAX_CORES) - 1)})\.[0-9]{{1,3}}",
        rf"{int(_MAX_CORES)}\.0{{1,3}}",
        r"0\.(?:[1-9][0-9]{0,2}|0[1-9][0-9]?|00[1-9])",
    ]
)
# Memory: a whole number of Gi, Mi, G or M (the units a pod is sized in).
MEMORY_UNITS = {"Gi": 1024**3, "Mi": 1024**2, "G": 1000**3, "M": 1000**2}
MEMORY_BODY = "|".join(_bounded(_MAX_BYTES, suffix, unit) for suffix, unit in MEMORY_UNITS.items())
# A label key (a taint's key): an optional DNS-subdomain prefix and "/", then a name of at most 63 characters.
LABEL_KEY_BODY = (
    r"(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
LABEL_KEY_MAX_LENGTH = 253 + 1 + 63
LABEL_VALUE_BODY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"


@dataclass(frozen=True)
class Limits:
    """The cluster's limits (``DEFAULTS`` documents each key)."""

    max_cpu: str = DEFAULTS["max_cpu"]
    max_memory: str = DEFAULTS["max_memory"]
    toleration_keys: tuple[str, ...] = tuple(DEFAULTS["toleration_keys"])
    toleration_effects: tuple[str, ...] = tuple(DEFAULTS["toleration_effects"])
    node_labels: tuple[str, ...] = tuple(DEFAULTS["node_labels"])

    @classmethod
    def from_variable(cls, text: str | None) -> Limits:
        """The limits the Variable's JSON sets (None or blank: the defaults); ``LimitError`` names what is wrong."""
        if text is None or not text.strip():
            return cls()
        try:
            given = json.loads(text)
        except json.JSONDecodeError as error:
            raise LimitError(
                f"Variable {VARIABLE} is not JSON ({error}): give an object with keys of {_keys()}"
            ) from None
        if not isinstance(given, dict):
            raise LimitError(f"Variable {VARIABLE} is {given!r}, not a JSON object with keys of {_keys()}")
        if unknown := sorted(set(given) - set(DEFAULTS)):
            raise LimitError(f"Variable {VARIABLE} has unknown keys {unknown}: it takes {_keys()}")
        values = {}
        for key, value in given.items():
            if key.startswith("max_"):
                values[key] = _check_quantity(key, value)
            else:
                values[key] = _check_names(key, value)
        return cls(**values)


def _keys() -> str:
    return ", ".join(DEFAULTS)


def _check_quantity(key: str, value) -> str:
    """``value`` as a quantity above 0 (a JSON number such as 16 is read as "16")."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    try:
        if parse_quantity(value) <= 0:
            raise ValueError(f"{value!r} is not above 0")
    except ValueError as error:
        raise LimitError(f"Variable {VARIABLE} {key}: {error}") from None
    return value


def _check_names(key: str, value) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise LimitError(f"Variable {VARIABLE} {key} is {value!r}, not a list of non-empty strings")
    if key == "toleration_effects" and (wrong := [name for name in value if name not in EFFECTS]):
        raise LimitError(f"Variable {VARIABLE} toleration_effects has {wrong}: effects are {list(EFFECTS)}")
    return tuple(value)


def _label_allowed(label: str, allowed: tuple[str, ...]) -> bool:
    return any(label == entry or (entry.endswith("/") and label.startswith(entry)) for entry in allowed)


def problems(params: Mapping, limits: Limits) -> list[str]:
    """What in ``params`` the limits refuse, one line each naming the Param, its value and the limit."""
    found = []
    for names, key in ((CPU_PARAMS, "max_cpu"), (MEMORY_PARAMS, "max_memory")):
        limit = getattr(limits, key)
        for name in names:
            if parse_quantity(params[name]) > parse_quantity(limit):
                found.append(f"{name} {params[name]} is over {key} {limit}")
    for name in NODE_LABEL_PARAMS:
        for label in params.get(name) or ():
            if not _label_allowed(label, limits.node_labels):
                found.append(f"{name} label {label} is not in node_labels {list(limits.node_labels)}")
    for name in TOLERATION_PARAMS:
        for index, toleration in enumerate(params[name]):
            key, effect = toleration["key"], toleration.get("effect")
            if key not in limits.toleration_keys:
                found.append(f"{name}[{index}] key {key} is not in toleration_keys {list(limits.toleration_keys)}")
            if effect is None and set(limits.toleration_effects) != set(EFFECTS):
                found.append(
                    f"{name}[{index}] has no effect, so it tolerates every effect of {key}: "
                    f"name one of toleration_effects {list(limits.toleration_effects)}"
                )
            elif effect is not None and effect not in limits.toleration_effects:
                found.append(
                    f"{name}[{index}] effect {effect} is not in toleration_effects {list(limits.toleration_effects)}"
                )
    return found


def check(params: Mapping, limits: Limits) -> None:
    """Raise ``LimitError`` listing everything in ``params`` the limits refuse, and how to allow it."""
    if found := problems(params, limits):
        raise LimitError(
            f"this run asks more of the cluster than the Variable {VARIABLE} allows: {'; '.join(found)} "
            f"(lower the Params, or have an admin widen {VARIABLE}; docs/eks.md, Cluster limits)"
        )
