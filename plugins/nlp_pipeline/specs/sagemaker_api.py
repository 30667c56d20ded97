"""What SageMaker's API accepts, read from botocore's service model and the AWS docs: the instance types of each
use, a KMS key id, the limits of a hyperparameter tuning job and the rules of a blue/green rollout.

Pure data and functions, imported by the trigger form (nlp_pipeline.params, shared by every platform) and by the
request builders (specs/sagemaker.py), so both check one definition. botocore is imported only when an instance
type list or a KMS key's limits are first asked for.
"""

from __future__ import annotations

import functools
import math
import re

# What each use's request calls its instance type in botocore's service model.
INSTANCE_SHAPES = {
    "processing": "ProcessingInstanceType",  # CreateProcessingJob
    "training": "TrainingInstanceType",  # CreateTrainingJob
    "endpoint": "ProductionVariantInstanceType",  # CreateEndpointConfig
}


@functools.cache
def _service_shapes() -> dict:
    """botocore's SageMaker shapes, read once: ~0.05 s to load the model, ~0.15 s more where botocore is not yet
    imported (the nlp_sagemaker DAG imports it anyway, through the amazon provider)."""
    import botocore.loaders

    return botocore.loaders.Loader().load_service_model("sagemaker", "service-2")["shapes"]


@functools.cache
def instance_types(use: str) -> frozenset[str]:
    """The instance types SageMaker accepts for ``use`` (processing, training or endpoint), from botocore."""
    if use not in INSTANCE_SHAPES:
        raise ValueError(f"no SageMaker instance use {use!r}: one of {', '.join(INSTANCE_SHAPES)}")
    return frozenset(_service_shapes()[INSTANCE_SHAPES[use]]["enum"])


def kms_key_id_refusal(key: str) -> str | None:
    """Why SageMaker refuses ``key`` as a KmsKeyId (botocore's shape: its pattern and length; a key id, alias or
    ARN), or None when it takes it."""
    limits = _service_shapes()["KmsKeyId"]
    if not limits.get("min", 0) <= len(key) <= limits["max"]:
        return f"{limits.get('min', 0)} to {limits['max']} characters, got {len(key)}"
    if not re.fullmatch(limits["pattern"], key):
        return f"only characters of {limits['pattern']}"
    return None


# ---- hyperparameter tuning ----------------------------------------------------------------------------------------
# "Resource limits for automatic model tuning" (SageMaker developer guide): 10 parallel training jobs per tuning job
# by default (a quota that can be raised to 100; botocore only says at least 1), at most 30 searched
# hyperparameters, each categorical one at most 30 values (botocore ParameterValues), and 30 days of run time.
MAX_PARALLEL_TRAINING_JOBS = 10
MAX_SEARCHED_HYPERPARAMETERS = 30


def max_categorical_values() -> int:
    """How many values a categorical range may hold (botocore's ParameterValues: at most 30)."""
    return _service_shapes()["ParameterValues"]["max"]


MAX_TUNING_SECONDS = 30 * 24 * 3600


# ---- blue/green ---------------------------------------------------------------------------------------------------
TRAFFIC = ("all_at_once", "canary", "linear")
# Step sizes in percent of capacity SageMaker takes (TrafficRoutingConfig): a canary at most 50 %, a linear step
# 10-50 %; all at once ignores the step.
_STEPS = {"all_at_once": (1, 100), "canary": (1, 50), "linear": (10, 50)}
MAX_BAKING_MINUTES = 60  # WaitIntervalInSeconds and TerminationWaitInSeconds: at most 3600
MAX_ALARMS = 10  # botocore's AlarmList
MAX_EXECUTION_SECONDS = 28800  # MaximumExecutionTimeoutInSeconds: 600-28800
# Allowed in the timeout for SageMaker to provision the new fleet before the first traffic step.
PROVISIONING_SECONDS = 1800
BLUE_GREEN_DEFAULT = {"traffic": "all_at_once", "step_percent": 10, "baking_minutes": 0, "alarms": []}


def bakes(traffic: str, step_percent: int) -> int:
    """Baking periods of a rollout: after all traffic; after the canary and after the rest; after each step."""
    return {"all_at_once": 1, "canary": 2, "linear": math.ceil(100 / step_percent)}[traffic]


def execution_timeout(traffic: str, step_percent: int, baking_seconds: int) -> int:
    """Provisioning, every bake, then the wait before the old fleet goes (TerminationWaitInSeconds)."""
    return PROVISIONING_SECONDS + bakes(traffic, step_percent) * baking_seconds + baking_seconds


def _baking_limits() -> list[dict]:
    """``if``/``then`` rules: the longest bake whose waits fit MAX_EXECUTION_SECONDS, per mode and step range."""
    rules = []
    for traffic, (low, high) in _STEPS.items():
        steps = range(low, high + 1)
        longest = {
            step: min(
                MAX_BAKING_MINUTES,
                (MAX_EXECUTION_SECONDS - PROVISIONING_SECONDS) // (60 * (bakes(traffic, step) + 1)),
            )
            for step in steps
        }
        for limit in sorted(set(longest.values()) - {MAX_BAKING_MINUTES}):
            within = [step for step in steps if longest[step] == limit]
            rules.append(
                {
                    "if": {
                        "properties": {
                            "traffic": {"const": traffic},
                            "step_percent": {"minimum": within[0], "maximum": within[-1]},
                        }
                    },
                    "then": {"properties": {"baking_minutes": {"maximum": limit}}},
                }
            )
    return rules


def _when_traffic(traffic: list[str], then: dict) -> dict:
    return {"if": {"properties": {"traffic": {"enum": traffic}}}, "then": {"properties": then}}


# The one definition of a valid rollout: the Param's JSON schema (Airflow validates each Param alone, so the rules
# between fields live in this one object's schema) and what deployment_config checks. Sources: TrafficRoutingConfig,
# BlueGreenUpdatePolicy and AutoRollbackConfig in the API reference and botocore; "Auto-Rollback Configuration and
# Monitoring": CloudWatch alarms are a prerequisite for baking periods.
BLUE_GREEN_SCHEMA = {
    "type": "object",
    "properties": {
        "traffic": {"type": "string", "enum": list(TRAFFIC)},
        "step_percent": {"type": "integer", "minimum": 1, "maximum": 100},
        "baking_minutes": {"type": "integer", "minimum": 0, "maximum": MAX_BAKING_MINUTES},
        "alarms": {
            "type": "array",
            "maxItems": MAX_ALARMS,
            # CloudWatch alarm names: 1-255 characters, not only blanks (botocore), no ASCII control characters.
            "items": {
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": r"\S",
                "not": {"pattern": r"[\x00-\x1f\x7f]"},
            },
        },
    },
    "required": ["traffic", "step_percent", "baking_minutes", "alarms"],
    "additionalProperties": False,
    "allOf": [
        _when_traffic(["canary"], {"step_percent": {"maximum": _STEPS["canary"][1]}}),
        _when_traffic(["linear"], {"step_percent": {"minimum": _STEPS["linear"][0], "maximum": _STEPS["linear"][1]}}),
        # A canary or linear rollout no alarm watches only delays the update: it bakes, and alarms watch the bake.
        _when_traffic(["canary", "linear"], {"baking_minutes": {"minimum": 1}}),
        {"if": {"properties": {"baking_minutes": {"minimum": 1}}}, "then": {"properties": {"alarms": {"minItems": 1}}}},
        *_baking_limits(),
    ],
}
