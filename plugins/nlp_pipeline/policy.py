"""The promotion policy: what a candidate must score to be promoted, and who must approve its rollout.

It lives outside the run, in one reviewed place: the Airflow Variable ``nlp_promotion_policy``, a JSON object
checked against ``SCHEMA``; unset, the defaults are the evaluate step's own (tasks/config.py). The first task of
every run (``policy``) reads it once, logs it, and hands it to the rest of the run by XCom, so a Variable edited
while a run waits for approval does not change that run.

Whoever triggers a run cannot loosen it. The gate's thresholds are not Params; a run's conf may only tighten
one (a higher minimum, a lower maximum loss or margin), and a looser value fails the run at its first task.
``require_approval`` on the form can add an approval the policy does not require, never drop one. The approvers
are the policy's; the user who triggered the run is taken off the list, and when nobody is left the approval
fails rather than waits for someone who may not answer. A policy that requires approval must name approvers:
Airflow's approval is otherwise open to every user allowed to act on the DAG, the trigger included (it cannot
name one user who may not). An approval only the run added, with no approvers named, is open that way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowFailException

from nlp_pipeline import commands
from tasks.config import EvaluateArguments, flag_schema
from tasks.errors import ConfigError

log = logging.getLogger(__name__)

VARIABLE = "nlp_promotion_policy"
TASK_ID = "policy"
# The gate's thresholds, flags of the evaluate step; for each, the direction a run may move it.
MINIMUMS = ("min_accuracy", "min_f1")
MAXIMUMS = ("max_int8_loss", "champion_margin")
THRESHOLDS = MINIMUMS + MAXIMUMS


def _threshold_schema(name: str) -> dict:
    schema = flag_schema(EvaluateArguments, name)
    return {key: value for key, value in schema.items() if key != "description"} | {"type": "number"}


SCHEMA = {
    "type": "object",
    "properties": {name: _threshold_schema(name) for name in THRESHOLDS}
    | {
        "require_approval": {"type": "boolean", "default": False},
        "approvers": {"type": "array", "items": {"type": "string", "minLength": 1}, "default": []},
    },
    "additionalProperties": False,
}
DEFAULTS = {name: spec["default"] for name, spec in SCHEMA["properties"].items()}


def validated(policy: object, where: str) -> dict:
    """``policy`` with defaults filled in; AirflowFailException naming ``where`` and the field otherwise."""
    import jsonschema

    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(policy), key=lambda error: list(error.path))
    if errors:
        first = errors[0]
        field = ".".join(map(str, first.path)) or "(the whole policy)"
        raise AirflowFailException(f"{where}: {field}: {first.message}")
    if policy.get("require_approval") and not policy.get("approvers"):
        raise AirflowFailException(
            f"{where}: approvers: required when require_approval is true, or the user who triggered a run could"
            " approve it (Airflow's approval is otherwise open to every user allowed on the DAG)"
        )
    return DEFAULTS | policy


def load() -> tuple[dict, str]:
    """(the policy in force, where it came from)."""
    text = Variable.get(VARIABLE, default=None)
    if text is None:
        return dict(DEFAULTS), "the defaults (the Airflow Variable nlp_promotion_policy is not set)"
    where = f"the Airflow Variable {VARIABLE}"
    try:
        policy = json.loads(text)
    except ValueError as error:
        raise AirflowFailException(f"{where}: not valid JSON: {error}") from None
    return validated(policy, where), where


def tightened(policy: dict, conf: Mapping) -> dict:
    """The run's policy: ``policy`` with the thresholds ``conf`` tightens; a looser one is refused."""
    run = dict(policy)
    for name in THRESHOLDS:
        if name not in conf:
            continue
        value, limit = conf[name], policy[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or (value < limit if name in MINIMUMS else value > limit):
            direction = "at least" if name in MINIMUMS else "at most"
            raise AirflowFailException(
                f"the run's conf sets {name}={value!r}: the promotion policy ({VARIABLE}) sets {name} to {limit};"
                f" a run may only tighten it ({direction} {limit})"
            )
        run[name] = value
    if "approvers" in conf:
        raise AirflowFailException(
            f"the run's conf sets approvers: who approves a rollout is the promotion policy's ({VARIABLE}), not a"
            f" run's ({policy['approvers'] or 'any user allowed on the DAG'})"
        )
    run["require_approval"] = policy["require_approval"] or bool(conf.get("require_approval"))
    return run


def for_run(conf: Mapping) -> dict:
    """The policy of a run triggered with ``conf``, logged where it came from."""
    policy, where = load()
    run = tightened(policy, conf)
    log.info("promotion policy from %s: %s", where, json.dumps(policy, sort_keys=True))
    if run != policy:
        log.info("this run tightens it to: %s", json.dumps(run, sort_keys=True))
    return run


def check_params(params: Mapping) -> None:
    """Refuse, at the run's first task, what the Param schemas let through but the steps refuse: a tuning search
    range whose LO is above its HI (commands.check builds the tune step's arguments from the Params), text capture
    without capture (commands.check_capture). The error
    names the Param; the run fails without retries, since its conf will not change."""
    try:
        commands.check("tune", params)
        commands.check_capture(params)
    except ConfigError as error:
        raise AirflowFailException(f"{error} (the run's Params, checked before any step)") from None


def of_run(context) -> dict:
    """The policy the run's first task fixed for it."""
    policy = context["ti"].xcom_pull(task_ids=TASK_ID)
    if policy is None:
        raise AirflowFailException(f"the run has no promotion policy: its first task, {TASK_ID}, did not run")
    return policy


def thresholds(context) -> dict:
    """The gate's thresholds of the run: the evaluate step's flags."""
    policy = of_run(context)
    return {name: policy[name] for name in THRESHOLDS}


def requires_approval(context) -> bool:
    return of_run(context)["require_approval"]


def approvers(policy: dict, triggered_by: str | None) -> list[dict] | None:
    """The users who may approve this run's rollout (Airflow's ``assigned_users``), or None for anyone allowed
    on the DAG when the policy names nobody; AirflowFailException when the trigger was the only approver."""
    if not policy["approvers"]:
        return None
    allowed = [user for user in policy["approvers"] if user != triggered_by]
    if not allowed:
        raise AirflowFailException(
            f"nobody may approve this run: the policy's approvers are {policy['approvers']} and {triggered_by}"
            " triggered it; a rollout is never approved by the person who asked for it"
        )
    return [{"id": user, "name": user} for user in allowed]
