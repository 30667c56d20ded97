"""The body of ``POST /invocations``: parsing and checking it, with a message that names what is wrong.

Two forms, never mixed in one request::

    {"instances": [{"sentence1": "...", "sentence2": "..."}, ...]}                       raw text
    {"instances": [{"input_ids": [...], "attention_mask": [...], "token_type_ids": [...]}]}  TF Serving clients

``attention_mask`` and ``token_type_ids`` are optional in the pre-tokenised form (all ones, all zeros).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from tasks.serving.served_model import Encoded

TEXT_FIELDS = ("sentence1", "sentence2")
TOKEN_FIELDS = ("input_ids", "attention_mask", "token_type_ids")

_TEXT_PAIR = {
    "type": "object",
    "properties": {name: {"type": "string", "minLength": 1} for name in TEXT_FIELDS},
    "required": list(TEXT_FIELDS),
    "additionalProperties": False,
}
_TOKEN_IDS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
_TOKENISED_PAIR = {
    "type": "object",
    "properties": {name: _TOKEN_IDS for name in TOKEN_FIELDS},
    "required": ["input_ids"],
    "additionalProperties": False,
}
REQUEST_SCHEMA = {
    "type": "object",
    "properties": {"instances": {"type": "array", "minItems": 1, "items": {"oneOf": [_TEXT_PAIR, _TOKENISED_PAIR]}}},
    "required": ["instances"],
}


# The contract nests 4 deep ({"instances": [{"input_ids": [...]}]}); Python's JSON parser recurses once per level
# and gives up with RecursionError near a thousand, so depth is checked before parsing, in linear time.
MAX_JSON_DEPTH = 8
# A JSON string, or the rest of the body after an unclosed quote: possessive, so a match never backtracks and
# the scan stays linear whatever the body (a plain pattern restarts at every quote of an unclosed string).
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_OPENING, _CLOSING = b"[{", b"]}"
_NON_BRACKETS = bytes(sorted(set(range(256)) - set(_OPENING + _CLOSING)))


class InvalidRequest(ValueError):
    """The client sent something the contract does not allow; the message is safe to return."""


@dataclass(frozen=True)
class Limits:
    max_instances: int
    max_seq_length: int
    vocab_size: int
    max_sentence_chars: int


def json_depth(body: bytes) -> int:
    """How deep UTF-8 JSON text's arrays and objects nest (brackets inside strings do not count); linear. (In
    UTF-8 no byte of a multi-byte character is a quote, backslash or bracket.)"""
    brackets = np.frombuffer(_JSON_STRING.sub(b"", body).translate(None, delete=_NON_BRACKETS), dtype=np.uint8)
    if not brackets.size:
        return 0
    opening = (brackets == _OPENING[0]) | (brackets == _OPENING[1])
    return int(np.cumsum(opening.astype(np.int32) * 2 - 1).max())


def load_json(body: bytes) -> object:
    """The body as JSON; InvalidRequest when it is not UTF-8 JSON (RFC 8259) or nests deeper than MAX_JSON_DEPTH."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise InvalidRequest(f"the body is not UTF-8: {failure}") from None
    too_deep = f"the body nests JSON arrays and objects more than {MAX_JSON_DEPTH} levels deep"
    if json_depth(body) > MAX_JSON_DEPTH:
        raise InvalidRequest(too_deep)
    try:
        return json.loads(text)
    except ValueError as failure:
        raise InvalidRequest(f"the body is not valid JSON: {failure}") from None
    except RecursionError:  # cannot happen past the depth check; a 400 all the same
        raise InvalidRequest(too_deep) from None


def read(body: bytes, limits: Limits) -> list[tuple[str, str]] | list[Encoded]:
    """A request body's pairs: ``parse(load_json(body))``."""
    return parse(load_json(body), limits)


def parse(payload: object, limits: Limits) -> list[tuple[str, str]] | list[Encoded]:
    """Text pairs to tokenise, or pre-tokenised pairs; raises InvalidRequest naming the field at fault."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidRequest('the body must be a JSON object with "instances": a list of sentence pairs')
    unknown = sorted(set(payload) - {"instances"})
    if unknown:
        raise InvalidRequest(f'unknown top-level field(s) {unknown}; only "instances" is accepted')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidRequest(f'"instances" must be a list, got {_type(instances)}')
    if not instances:
        raise InvalidRequest('"instances" is empty; send at least one pair')
    if len(instances) > limits.max_instances:
        raise InvalidRequest(f'"instances" has {len(instances)} pairs; at most {limits.max_instances} per request')
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InvalidRequest(f"instances[{index}] must be an object, got {_type(instance)}")
    tokenised = "input_ids" in instances[0]
    if tokenised:
        return [_tokenised(index, instance, limits) for index, instance in enumerate(instances)]
    return [_text(index, instance, limits) for index, instance in enumerate(instances)]


def _type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _check_fields(index: int, instance: dict, allowed: tuple[str, ...], form: str) -> None:
    unknown = sorted(set(instance) - set(allowed))
    if unknown:
        other = "text pairs" if form == "pre-tokenised" else "pre-tokenised pairs"
        raise InvalidRequest(
            f"instances[{index}]: unknown field(s) {unknown} for a {form} pair (fields: {', '.join(allowed)}); "
            f"one request cannot mix {form} and {other}"
        )


def _text(index: int, instance: dict, limits: Limits) -> tuple[str, str]:
    _check_fields(index, instance, TEXT_FIELDS, "text")
    values = []
    for name in TEXT_FIELDS:
        if name not in instance:
            raise InvalidRequest(f"instances[{index}].{name} is missing")
        value = instance[name]
        if not isinstance(value, str):
            raise InvalidRequest(f"instances[{index}].{name} must be a string, got {_type(value)}")
        if not value.strip():
            raise InvalidRequest(f"instances[{index}].{name} is empty")
        if len(value) > limits.max_sentence_chars:
            raise InvalidRequest(
                f"instances[{index}].{name} has {len(value)} characters; at most {limits.max_sentence_chars}"
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"instances[{index}].{name} is not Unicode text (a lone surrogate escape)") from None
        values.append(value)
    return values[0], values[1]


def _tokenised(index: int, instance: dict, limits: Limits) -> Encoded:
    _check_fields(index, instance, TOKEN_FIELDS, "pre-tokenised")
    if "input_ids" not in instance:
        raise InvalidRequest(f"instances[{index}].input_ids is missing")
    ids = _int_list(index, "input_ids", instance["input_ids"], limits.vocab_size)
    if len(ids) > limits.max_seq_length:
        raise InvalidRequest(
            f"instances[{index}].input_ids has {len(ids)} tokens; the model takes at most {limits.max_seq_length}"
        )
    mask = _int_list(index, "attention_mask", instance.get("attention_mask", [1] * len(ids)), 2)
    types = _int_list(index, "token_type_ids", instance.get("token_type_ids", [0] * len(ids)), 2)
    for name, values in (("attention_mask", mask), ("token_type_ids", types)):
        if len(values) != len(ids):
            raise InvalidRequest(f"instances[{index}].{name} has {len(values)} values for {len(ids)} input_ids")
    return Encoded(ids, types, mask)


def _int_list(index: int, name: str, values: object, bound: int) -> list[int]:
    where = f"instances[{index}].{name}"
    if not isinstance(values, list) or not values:
        raise InvalidRequest(f"{where} must be a non-empty list of integers, got {_type(values)}")
    for position, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{where}[{position}] must be an integer, got {_type(value)}")
        if not 0 <= value < bound:
            raise InvalidRequest(f"{where}[{position}] is {value}; allowed: 0 to {bound - 1}")
    return values
