"""Each step's ``python -m tasks`` command, built from a run's Params: the one place the Airflow side names a flag.

``PARAM_FLAGS`` says which Param sets which flag of which step; every platform builds its commands with
``command`` (local argv, a SageMaker job's ``ContainerArguments``, a pod's args) or ``values`` (SageMaker
hyper-parameters), adding only where its files are. The Params themselves take their type, default, range
and help from the step's argument dataclass in ``tasks/config.py`` (params.py), so a new flag of a step is its
dataclass field plus one line here; tests/airflow/test_commands.py parses what each platform builds with the
real CLI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields

from nlp_pipeline import artefacts, sources
from tasks.config import (
    EvaluateArguments,
    MonitorArguments,
    QuantizeArguments,
    StageArguments,
    TrainArguments,
    TuneArguments,
)
from tasks.errors import ConfigError

# The steps whose flags Params set, and their argument dataclasses (as tasks.cli.STEPS has them).
STEP_ARGUMENTS = {
    "stage": StageArguments,
    "train": TrainArguments,
    "tune": TuneArguments,
    "quantize": QuantizeArguments,
    "evaluate": EvaluateArguments,
    "monitor": MonitorArguments,
}
# The steps of the training DAGs (pipeline.py), whose Params their form offers; the monitor DAGs' (monitoring.py)
# offer the monitor step's.
PIPELINE_STEPS = ("stage", "train", "tune", "quantize", "evaluate")
MONITOR_STEPS = ("monitor",)


@dataclass(frozen=True)
class ParamFlag:
    param: str  # the run's Param
    step: str  # the step it is a flag of
    field: str  # the step's argument: the flag --field-in-kebab-case


# In the trigger form's order; a Param setting several flags (base_model, timing) takes its schema from the first.
PARAM_FLAGS = (
    ParamFlag("source", "stage", "source"),
    ParamFlag("base_model", "train", "model"),
    ParamFlag("base_model", "stage", "tokenizer"),
    ParamFlag("max_seq_length", "stage", "max_seq_length"),
    ParamFlag("epochs", "train", "epochs"),
    ParamFlag("batch_size", "train", "batch_size"),
    ParamFlag("learning_rate", "train", "learning_rate"),
    ParamFlag("precision", "train", "precision"),
    ParamFlag("warmup_ratio", "train", "warmup_ratio"),
    ParamFlag("weight_decay", "train", "weight_decay"),
    ParamFlag("seed", "train", "seed"),
    ParamFlag("seed", "tune", "seed"),
    ParamFlag("tuning_trials", "tune", "trials"),
    ParamFlag("learning_rate_range", "tune", "learning_rate_range"),
    ParamFlag("epochs_range", "tune", "epochs_range"),
    ParamFlag("batch_sizes", "tune", "batch_sizes"),
    ParamFlag("warmup_ratio_range", "tune", "warmup_ratio_range"),
    ParamFlag("weight_decay_range", "tune", "weight_decay_range"),
    ParamFlag("tuning_max_steps", "tune", "max_steps"),
    ParamFlag("quantization_tolerance", "quantize", "tolerance"),
    ParamFlag("timing", "quantize", "timing"),
    ParamFlag("timing", "evaluate", "timing"),
    ParamFlag("window_minutes", "monitor", "window_minutes"),
    ParamFlag("min_records", "monitor", "min_records"),
    ParamFlag("psi_threshold", "monitor", "psi_threshold"),
    ParamFlag("label_shift_threshold", "monitor", "label_shift_threshold"),
    ParamFlag("confidence_drop_threshold", "monitor", "confidence_drop_threshold"),
    ParamFlag("low_confidence", "monitor", "low_confidence"),
    ParamFlag("low_confidence_shift_threshold", "monitor", "low_confidence_shift_threshold"),
    ParamFlag("unknown_rate_threshold", "monitor", "unknown_rate_threshold"),
)


def flag(field: str) -> str:
    return f"--{field.replace('_', '-')}"


def values(step: str, params: Mapping, **given) -> dict:
    """The step's arguments from the run's Params, then ``given`` (a path, an input); None leaves one out.

    ``stage`` is where every platform's stage step is built, so its source is checked here: one outside the
    allow-list fails the task before any step starts (sources.checked), and the allow-list goes along as
    ``--allowed-sources``, unless ``given`` names what the step may read instead (a SageMaker job: its input).
    """
    chosen = {spec.field: params[spec.param] for spec in PARAM_FLAGS if spec.step == step}
    if step == "stage":
        chosen["allowed_sources"] = sources.checked(params["source"])
    chosen |= given
    return {name: value for name, value in chosen.items() if value is not None}


def check(step: str, params: Mapping) -> None:
    """Refuse the run's Params the step's own checks refuse, one Param at a time, before any step runs: what their
    JSON schemas cannot say (a search range whose LO is above its HI). A ConfigError names the Param."""
    arguments = STEP_ARGUMENTS[step]
    required = {
        spec.name: "." for spec in fields(arguments) if spec.default is MISSING and spec.default_factory is MISSING
    }
    for spec in PARAM_FLAGS:
        if spec.step == step:
            try:
                arguments(**required | {spec.field: params[spec.param]})
            except ConfigError as error:
                raise ConfigError(f"{spec.param}: {error}") from None


def _arguments(name: str, value) -> list[str]:
    """A flag and its value; a list's items as arguments of their own (``--allowed-sources hf:// /srv/data``); a
    bool is a switch (tasks/cli.py): its flag alone when on, nothing when off."""
    if isinstance(value, bool):
        return [flag(name)] if value else []
    return [flag(name), *map(str, value if isinstance(value, list | tuple) else [value])]


def command(step: str, params: Mapping, **given) -> list[str]:
    """``[step, --flag, value, ...]``: what follows ``python -m tasks`` to run ``step`` for this run."""
    return [step] + [part for name, value in values(step, params, **given).items() for part in _arguments(name, value)]


def with_setting(params: Mapping, setting: Mapping) -> dict:
    """The run's Params with a tuning ``setting`` (train's flags: ``learning_rate``, ``epochs``, ...) in place of
    the Params that set those flags."""
    param_of = {spec.field: spec.param for spec in PARAM_FLAGS if spec.step == "train"}
    unknown = sorted(set(setting) - set(param_of))
    if unknown:
        raise ValueError(f"a tuning setting names {unknown}, which no Param sets as a flag of train")
    return {**params, **{param_of[name]: value for name, value in setting.items()}}


def trial_command(params: Mapping, trial: Mapping, **given) -> list[str]:
    """The train command of one planned trial (``{"name", "setting"}`` of ``tune plan``'s plan.json): the run's
    Params with the trial's setting, scoring only (no saved model); ``given`` adds where its files are, and its
    step budget and early stopping."""
    return command("train", with_setting(params, trial["setting"]), score_only=True, **given)


def capture_flags(params: Mapping, capture_uri: str, current: Mapping | None = None) -> dict:
    """The server's capture settings for a run (``serve``'s flags: ``capture_dir``, ``capture_sample_rate``,
    ``capture_text``), from its Params ``capture_sample_rate`` and ``capture_text``; {} when capture is off.

    ``capture_sample_rate`` null (the default: what a run started by drift or the schedule takes) keeps ``current``,
    the flags the live endpoint runs with (each platform reads them: local its capture.json), {} when none; 0 turns
    capture off; a share turns it on at ``capture_uri``. The one place every platform takes them from: local passes
    them to ``deploy-local``, SageMaker into the model's environment (tasks.config.CAPTURE_ENV) and its
    DataCaptureConfig, EKS into the server's args. ``capture_uri`` is where the platform's endpoint writes
    (artefacts.capture_uri)."""
    check_capture(params)
    rate = params["capture_sample_rate"]
    if rate is None:
        return dict(current or {})
    if not rate:
        return {}
    return {"capture_dir": capture_uri, "capture_sample_rate": rate, "capture_text": params["capture_text"]}


def check_capture(params: Mapping) -> None:
    """Refuse raw text capture without a capture rate: ``capture_text`` on with ``capture_sample_rate`` 0 would
    capture nothing, and with null (keep the endpoint's capture) it would either be ignored or turn text capture on
    at a rate nobody chose; both are not what was asked."""
    if params["capture_text"] and not params["capture_sample_rate"]:
        raise ConfigError(
            "capture_text: capturing text needs capture_sample_rate above 0 (0 turns capture off, null keeps the"
            " endpoint's capture as it is)"
        )


def registration(registry: str, evaluation: dict, status: str, config: dict, context) -> list[str]:
    """The registry entry of this run's evaluated candidate, with its training ``config`` and lineage."""
    return command(
        "registry",
        {},
        registry=registry,
        action="register",
        model=evaluation["model"],
        evaluation=evaluation["evaluation"],
        status=status,
        config=json.dumps(config),
        dag_id=context["dag"].dag_id,
        run_id=context["run_id"],
        logical_date=artefacts.run_key(context),
    )
