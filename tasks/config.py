"""The arguments of each step, as typed dataclasses.

The same classes back the command line (through transformers' ``HfArgumentParser``), the
SageMaker hyper-parameters file and the Airflow trigger form (``flag_schema``), so every flag has one
type, one default, one range and one help text. A field's ``range`` (JSON-schema bounds) is checked by
``check_ranges`` in ``__post_init__``, with the other checks, so a bad flag fails before any work starts.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal

from tasks.data.sources import parse_prefixes
from tasks.errors import ConfigError
from tasks.runtime.digest import PREFIX as DIGEST_PREFIX
from tasks.runtime.remote_paths import CONDITIONAL_WRITES

DEFAULT_SOURCE = "hf://nyu-mll/glue/mrpc"
# A content digest as tasks.runtime.digest writes it and the registry records it.
MODEL_DIGEST = re.compile(re.escape(DIGEST_PREFIX) + "[0-9a-f]{64}")
# A DAG id as Airflow allows it (letters, digits, '_', '-', '.'), not starting with '.': one folder under a root.
_DAG_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
# Where a server started without flags (a SageMaker endpoint's container) finds the expected digest instead.
MODEL_DIGEST_ENV = "NLP_MODEL_DIGEST"
# Where a server started without flags (a SageMaker endpoint's container) finds its capture settings instead: each
# variable is read when its flag keeps its default.
CAPTURE_ENV = {
    "capture_dir": "NLP_CAPTURE_DIR",
    "capture_sample_rate": "NLP_CAPTURE_SAMPLE_RATE",
    "capture_text": "NLP_CAPTURE_TEXT",
}
# Each capture setting's value when neither its flag nor its CAPTURE_ENV variable gives one (the fields default to
# None, "not given", so a flag given at this value still wins over the environment).
CAPTURE_DEFAULTS = {"capture_dir": "", "capture_sample_rate": 1.0, "capture_text": False}
# The capture locations the server writes to: a local folder, or this prefix (uploaded through fsspec).
CAPTURE_REMOTE = "s3://"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
# The registry `python -m tasks registry` reads when given no --registry (a person's shell, `make registry`).
REGISTRY_ENV = "NLP_REGISTRY"
# What `python -m tasks registry` does; the first word after `registry` may name it (`registry show VERSION`).
REGISTRY_ACTIONS = ("list", "show", "register", "promote", "production")
# The registry actions that take a model version (--version, or the word after the action).
REGISTRY_VERSION_ACTIONS = ("show",)
# What `python -m tasks tune` does; the word after `tune` names it (`tune plan`).
TUNE_ACTIONS = ("plan", "select", "run")
# The most trials one search may run: the trigger form, the CLI and every platform's tuning refuse more.
MAX_TUNING_TRIALS = 32
DEFAULT_BASE_MODEL = "bert-base-uncased"
# How ``quantize`` and ``evaluate`` time models: each workload in its own fresh process over every timed pair
# (full), or both in one process over fewer pairs (quick: smoke runs of the pipeline, such as the tests').
TIMINGS = ("full", "quick")
# The precisions the compression step can ship, in ladder order; FP32 is the baseline every other is measured against.
PRECISIONS = ("fp32", "bf16", "int8")
# A request body's default size limit per pair it may hold: two sentences of about 2,000 characters, as JSON.
BODY_BYTES_PER_PAIR = 4096
_TIMING_HELP = (
    "full: batch-32 throughput and batch-1 latency each in a fresh process with its own threads; quick: both in "
    "one fresh process, batch 1 over fewer pairs (for smoke runs: fewer TensorFlow start-ups, noisier figures)."
)


def _require(condition: bool, flag: str, allowed: str, given: object) -> None:
    if not condition:
        raise ConfigError(f"--{flag.replace('_', '-')} must be {allowed}, got {given!r}")


def _flag(help_text: str, bounds: dict | None = None, **kwargs):
    """A field with its help and, for a number, its JSON-schema bounds (minimum, maximum, exclusiveMinimum,
    exclusiveMaximum)."""
    return field(metadata={"help": help_text} | ({"range": bounds} if bounds else {}), **kwargs)


def _within(value: float, bounds: dict) -> bool:
    return (
        value >= bounds.get("minimum", value)
        and value <= bounds.get("maximum", value)
        and value > bounds.get("exclusiveMinimum", value - 1)
        and value < bounds.get("exclusiveMaximum", value + 1)
    )


def _number(value: float) -> str:
    return f"{value:g}"


def describe_range(bounds: dict, integer: bool) -> str:
    """The bounds in words, as an error message says them: "a positive integer", "between 8 and 512",
    "in (0, 0.5)"."""
    low = bounds.get("minimum", bounds.get("exclusiveMinimum"))
    high = bounds.get("maximum", bounds.get("exclusiveMaximum"))
    if high is None:
        if "exclusiveMinimum" in bounds:
            return "positive" if low == 0 else f"more than {_number(low)}"
        if integer and low in (0, 1):
            return "0 or a positive integer" if low == 0 else "a positive integer"
        return f"{_number(low)} or more"
    if integer and "minimum" in bounds and "maximum" in bounds:
        return f"between {low} and {high}"
    opening = "(" if "exclusiveMinimum" in bounds else "["
    closing = ")" if "exclusiveMaximum" in bounds else "]"
    return f"in {opening}{_number(low)}, {_number(high)}{closing}"


def _list_flag(help_text: str, bounds: dict, items: tuple[int, int], default: list):
    """A list field (``--batch-sizes 16 32``): the bounds of each item, and how many items it takes (min, max)."""
    metadata = {"help": help_text, "range": bounds, "items": items}
    return field(metadata=metadata, default_factory=lambda: list(default))


def _describe_count(items: tuple[int, int]) -> str:
    low, high = items
    return f"exactly {low} values" if low == high else f"{low} to {high} values"


def check_ranges(arguments) -> None:
    """Refuse a value outside its field's ``range``: a ConfigError naming the flag, its range and the value.
    None (an optional flag not given) has no range; a list's items each have the range, and the list its count."""
    for spec in dataclasses.fields(arguments):
        bounds, value = spec.metadata.get("range"), getattr(arguments, spec.name)
        if not bounds or value is None:
            continue
        if items := spec.metadata.get("items"):
            _require(items[0] <= len(value) <= items[1], spec.name, _describe_count(items), value)
            if not all(_within(item, bounds) for item in value):
                allowed = describe_range(bounds, all(isinstance(item, int) for item in value))
                raise ConfigError(f"--{spec.name.replace('_', '-')} values must each be {allowed}, got {value!r}")
        else:
            _require(_within(value, bounds), spec.name, describe_range(bounds, isinstance(value, int)), value)


_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _value_schema(annotation, bounds: dict) -> dict:
    if typing.get_origin(annotation) is Literal:
        return {"type": "string", "enum": list(typing.get_args(annotation))}
    return {"type": _JSON_TYPES[annotation]} | bounds


def flag_schema(arguments: type, name: str) -> dict:
    """A step's flag as JSON schema: ``type``, ``default``, its bounds or ``enum``, and its help as
    ``description``; what a form (the Airflow trigger form) needs to offer exactly what the CLI accepts.

    An optional flag (``float | None``, None: decided by the step) is ``{"type": ["null", "number"], ...}``; a list
    flag is ``{"type": "array", "items": {bounds}, "minItems", "maxItems"}``."""
    spec = next(spec for spec in dataclasses.fields(arguments) if spec.name == name)
    annotation = typing.get_type_hints(arguments)[name]
    bounds = spec.metadata.get("range", {})
    arguments_of = typing.get_args(annotation)
    if typing.get_origin(annotation) is list:
        low, high = spec.metadata.get("items", (0, None))
        schema = {"type": "array", "items": _value_schema(arguments_of[0], bounds), "minItems": low}
        schema |= {"maxItems": high} if high is not None else {}
    elif type(None) in arguments_of:
        (given,) = (argument for argument in arguments_of if argument is not type(None))
        schema = _value_schema(given, bounds)
        schema["type"] = ["null", schema["type"]]
    else:
        schema = _value_schema(annotation, bounds)
    default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
    # argparse needs a literal % doubled in help texts; a form shows it once.
    return schema | {"default": default, "description": spec.metadata["help"].replace("%%", "%")}


@dataclass
class SampleArguments:
    output: str = field(metadata={"help": "Folder to write train.tsv, dev.tsv and test.tsv into."})
    seed: int = field(default=42, metadata={"help": "Random seed; the same seed gives the same files."})
    train_size: int = _flag("Pairs in train.tsv.", {"minimum": 1}, default=2000)
    dev_size: int = _flag("Pairs in dev.tsv.", {"minimum": 1}, default=300)
    test_size: int = _flag("Pairs in test.tsv.", {"minimum": 1}, default=300)
    label_noise: float = _flag(
        "Fraction of labels flipped, modelling annotator disagreement as in MRPC.",
        {"minimum": 0, "exclusiveMaximum": 0.5},
        default=0.04,
    )

    def __post_init__(self):
        check_ranges(self)


@dataclass
class StageArguments:
    output: str = field(metadata={"help": "Folder to write the staged data set into (replaced atomically)."})
    source: str = field(
        default=DEFAULT_SOURCE,
        metadata={
            "help": "hf://OWNER/NAME/CONFIG (Hugging Face hub), a local folder or file, or an s3:// URI. "
            "Formats: GLUE TSV, MSR paraphrase .txt, CSV, JSONL, Parquet."
        },
    )
    tokenizer: str = field(
        default=DEFAULT_BASE_MODEL, metadata={"help": "Tokenizer: a hub id, a local folder, or an s3:// URI."}
    )
    max_seq_length: int = _flag("Pairs longer than this are truncated.", {"minimum": 8, "maximum": 512}, default=128)
    on_bad_rows: Literal["fail", "skip"] = field(
        default="fail", metadata={"help": "fail: stop on any bad row; skip: drop bad rows and list them."}
    )
    validation_fraction: float = _flag(
        "Share of train carved off as validation when the source has no validation split.",
        {"exclusiveMinimum": 0, "exclusiveMaximum": 0.5},
        default=0.1,
    )
    allowed_sources: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Prefixes --source must lie under (hf://, hf://OWNER/NAME, s3://BUCKET/PREFIX/, an absolute "
            "folder), by whole path segments, local paths with symlinks and '..' resolved; each file found in a "
            "source folder is checked too. None given: any source (the pipeline always gives its allow-list)."
        },
    )

    def __post_init__(self):
        check_ranges(self)
        self.allowed_sources = parse_prefixes(self.allowed_sources)


# The bounds of the training hyper-parameters, shared by train's flags and tune's search ranges.
_LEARNING_RATE = {"exclusiveMinimum": 0, "exclusiveMaximum": 1}
_EPOCHS = {"minimum": 1}
_BATCH_SIZE = {"minimum": 1}
_RATIO = {"minimum": 0, "exclusiveMaximum": 1}
# tune's --early-stopping: the trials stop by the median rule (auto) or each runs its budget (off).
EARLY_STOPPING_AUTO = "auto"
EARLY_STOPPING = (EARLY_STOPPING_AUTO, "off")
# What train writes for the pipeline and a search: its scores and per-epoch history.
TRAINING_METRICS = "metrics.json"
_BY_MODEL_SIZE = "default: by the base model's size (tasks/training/defaults.py)"
_DEFAULT_TABLE = "default: train's defaults (tasks/training/defaults.py), or the best setting under --tuning"


@dataclass
class TrainArguments:
    data: str = field(metadata={"help": "Staged data folder (the output of `stage`)."})
    output: str = field(metadata={"help": "Folder to write the model into (replaced atomically)."})
    model: str = field(
        default=DEFAULT_BASE_MODEL,
        metadata={"help": "Base model: a hub id, a local folder, or an s3:// URI."},
    )
    epochs: int | None = _flag(f"Passes over the training split; {_BY_MODEL_SIZE}.", _EPOCHS, default=None)
    batch_size: int | None = _flag(f"Pairs per step on each worker; {_DEFAULT_TABLE}.", _BATCH_SIZE, default=None)
    learning_rate: float | None = _flag(f"Peak learning rate of AdamW; {_BY_MODEL_SIZE}.", _LEARNING_RATE, default=None)
    warmup_ratio: float | None = _flag(f"Share of steps with linear warm-up; {_DEFAULT_TABLE}.", _RATIO, default=None)
    weight_decay: float | None = _flag(f"AdamW weight decay; {_DEFAULT_TABLE}.", _RATIO, default=None)
    max_seq_length: int = field(default=0, metadata={"help": "Truncate longer pairs; 0 keeps the staged max length."})
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto",
        metadata={"help": "auto: bf16 mixed precision where the CPU has avx512_bf16 or amx_bf16, else fp32."},
    )
    padding: Literal["longest", "max_length"] = field(
        default="longest",
        metadata={"help": "longest: pad each batch to its longest pair (bucketed); max_length: always pad."},
    )
    seed: int = _flag("Seed for initialisation and shuffling.", {"minimum": 0}, default=42)
    log_every: int = _flag("Log loss, learning rate, samples/s and ETA every N steps.", {"minimum": 1}, default=10)
    checkpoint_every: int = _flag(
        "Also checkpoint every N steps (0: only at each epoch end).", {"minimum": 0}, default=0
    )
    checkpoint_dir: str = field(
        default="", metadata={"help": "Where checkpoints live; default: checkpoints/ in the output."}
    )
    tensorboard_dir: str = field(
        default="",
        metadata={
            "help": "Where TensorBoard events are written while training (copied into tensorboard/ in the "
            "output); default: tensorboard/ in the output."
        },
    )
    max_steps: int = _flag(
        "Stop after this many steps in all (0: run every epoch); the learning-rate schedule (warm-up, decay) still"
        " spans every epoch, so a capped run is the start of the full one (a tuning trial's budget).",
        {"minimum": 0},
        default=0,
    )
    score_only: bool = field(
        default=False,
        metadata={
            "help": "A tuning trial: train and score, write metrics.json and tensorboard/, export no saved_model."
        },
    )
    early_stopping_dir: str = field(
        default="",
        metadata={
            "help": "A folder (or s3:// prefix) the trials of one search share: record this run's validation"
            " accuracy there after each epoch, and stop after an epoch but the last when it is below the median of at"
            " least 2 other runs' running averages of accuracy up to the same epoch (SageMaker's Auto rule). Empty:"
            " no early stopping."
        },
    )
    tuning: str = field(
        default="",
        metadata={
            "help": "The search's tuning.json (a local path or s3://), recorded in the model card: the learning"
            " rate and epochs default to its best setting, and hyper-parameters other than its best are refused."
        },
    )

    def __post_init__(self):
        check_ranges(self)
        _require(
            self.max_seq_length == 0 or 8 <= self.max_seq_length <= 512,
            "max_seq_length",
            "0 or between 8 and 512",
            self.max_seq_length,
        )
        _require(self.precision in ("auto", "fp32", "bf16"), "precision", "auto, fp32 or bf16", self.precision)
        _require(self.padding in ("longest", "max_length"), "padding", "longest or max_length", self.padding)


@dataclass
class TuneArguments:
    """``python -m tasks tune ACTION``: plan a random search over train's hyper-parameters, select its best trial,
    or run a whole search here (plan, every trial as ``python -m tasks train``, select)."""

    # The output folder is the search's, shared with its trials: plan and select read and write it where it is,
    # an s3:// prefix included (tasks/tuning/files.py), rather than in a scratch folder uploaded at the end.
    OUTPUT_IN_PLACE: ClassVar[bool] = True

    output: str = field(
        metadata={"help": "The search's folder: plan.json, trials/<name>/, scores/ (early stopping), tuning.json."}
    )
    action: Literal[TUNE_ACTIONS] = field(
        default="plan",
        metadata={
            "help": "Also the word after `tune`. plan: write plan.json; select: summarise the trials into"
            " tuning.json; run: plan, train every trial one after another, select."
        },
    )
    data: str = field(default="", metadata={"help": "run: the staged data folder (the output of `stage`)."})
    model: str = field(
        default=DEFAULT_BASE_MODEL, metadata={"help": "run: the base model: a hub id, a local folder, or an s3:// URI."}
    )
    trials: int = _flag(
        f"Trials to plan, at most {MAX_TUNING_TRIALS}; 0: no tuning.",
        {"minimum": 0, "maximum": MAX_TUNING_TRIALS},
        default=0,
    )
    seed: int = _flag("Seed of the search: the same seed plans the same trials.", {"minimum": 0}, default=42)
    learning_rate_range: list[float] = _list_flag(
        "Learning rates to search, LO HI (log scale).", _LEARNING_RATE, (2, 2), [1e-5, 3e-4]
    )
    epochs_range: list[int] = _list_flag("Epochs to search, LO HI.", _EPOCHS, (2, 2), [2, 5])
    batch_sizes: list[int] = _list_flag("Batch sizes to choose from.", _BATCH_SIZE, (1, 8), [16, 32])
    warmup_ratio_range: list[float] = _list_flag("Warm-up ratios to search, LO HI.", _RATIO, (2, 2), [0.0, 0.2])
    weight_decay_range: list[float] = _list_flag("Weight decays to search, LO HI.", _RATIO, (2, 2), [0.0, 0.1])
    max_steps: int = _flag(
        "Steps per trial at most, within its own schedule (train's --max-steps); 0: every epoch. A capped trial"
        " keeps its full schedule (warm-up and decay span all its epochs), so a short budget favours slow schedules"
        " (many epochs, long warm-up); early stopping needs at least one whole epoch inside the budget.",
        {"minimum": 0},
        default=0,
    )
    early_stopping: Literal["auto", "off"] = field(
        default="auto",
        metadata={
            "help": "auto: stop a trial whose validation accuracy after an epoch is below the median of the other"
            " trials' running averages up to that epoch (at least 2 others); off: every trial runs its budget."
        },
    )

    def __post_init__(self):
        _require(self.action in TUNE_ACTIONS, "action", f"one of {', '.join(TUNE_ACTIONS)}", self.action)
        _require(self.early_stopping in EARLY_STOPPING, "early_stopping", "auto or off", self.early_stopping)
        check_ranges(self)
        for name in ("learning_rate_range", "epochs_range", "warmup_ratio_range", "weight_decay_range"):
            low, high = getattr(self, name)
            _require(low <= high, name, "LO HI with LO no more than HI", getattr(self, name))
        _require(bool(self.output), "output", "the search's folder", self.output)
        if self.action == "run":
            _require(bool(self.data), "data", "a staged data folder for `tune run`", self.data)
            _require(self.trials >= 1, "trials", "at least 1 for `tune run`", self.trials)


@dataclass
class QuantizeArguments:
    model: str = field(
        metadata={"help": "Trained FP32 model folder (the output of `train`), an s3:// URI or model.tar.gz."}
    )
    data: str = field(metadata={"help": "Staged data folder; its train split calibrates, its validation split scores."})
    output: str = field(metadata={"help": "Folder to write the chosen model into (replaced atomically)."})
    precision: str = field(
        default=",".join(PRECISIONS),
        metadata={
            "help": f"Comma-separated candidates to measure, from {', '.join(PRECISIONS)}. FP32 is always measured as "
            "the baseline; bf16 only where the CPU has AVX512_BF16 or AMX."
        },
    )
    tolerance: float = _flag(
        "Largest accepted relative accuracy loss of a candidate against FP32 on the validation split "
        "(0.01 = 1%%). A negative value demands a candidate beat FP32, which in effect keeps FP32.",
        {"exclusiveMinimum": -1, "exclusiveMaximum": 1},
        default=0.01,
    )
    min_speedup: float = _flag(
        "Keep FP32 unless a candidate is at least this many times as fast at batch 32 (unrounded) and no slower "
        "at batch 1 (p50). 0 waives both speed rules.",
        {"minimum": 0},
        default=1.1,
    )
    target_hardware: str = field(
        default="",
        metadata={
            "help": "Where the chosen model will serve, recorded with the decision (e.g. the endpoint's instance "
            "type); the step measures on the CPU it runs on."
        },
    )
    calibration_size: int = _flag("Train pairs sampled to calibrate INT8 ranges.", {"minimum": 1}, default=300)
    max_trials: int = _flag("INT8 recipes tried at most before keeping FP32.", {"minimum": 1}, default=4)
    recipes: str = field(
        default="",
        metadata={
            "help": "Comma-separated INT8 recipes to try, in this order (default: the whole ladder, fastest first); "
            "e.g. the recipe an earlier quantization.json chose for this model."
        },
    )
    batch_size: int = _flag("Pairs per batch in calibration and scoring.", {"minimum": 1}, default=32)
    seed: int = _flag("Seed of the calibration sample.", {"minimum": 0}, default=42)
    timing: Literal["full", "quick"] = field(default="full", metadata={"help": _TIMING_HELP})

    def __post_init__(self):
        _require(self.timing in TIMINGS, "timing", " or ".join(TIMINGS), self.timing)
        unknown = [name for name in self.candidates() if name not in PRECISIONS]
        _require(not unknown and self.candidates(), "precision", f"a list of {', '.join(PRECISIONS)}", self.precision)
        check_ranges(self)

    def candidates(self) -> tuple[str, ...]:
        """The ``--precision`` names, in ladder order, without repeats."""
        names = {name.strip() for name in self.precision.split(",") if name.strip()}
        return tuple(name for name in PRECISIONS if name in names) + tuple(sorted(names - set(PRECISIONS)))


_FRACTION = {"minimum": 0, "maximum": 1}


@dataclass
class EvaluateArguments:
    model: str = field(metadata={"help": "Candidate model folder (FP32 or INT8, the output of `train` or `quantize`)."})
    data: str = field(metadata={"help": "Staged data folder."})
    output: str = field(metadata={"help": "Folder to write evaluation.json, report.md and report.png into."})
    champion: str = field(default="", metadata={"help": "The model now in production, scored on the same data."})
    split: Literal["validation", "test"] = field(default="validation", metadata={"help": "Split to score on."})
    min_accuracy: float = _flag("Reject a candidate below this accuracy.", _FRACTION, default=0.75)
    min_f1: float = _flag("Reject a candidate below this F1.", _FRACTION, default=0.80)
    max_int8_loss: float = _flag(
        "Reject an INT8 candidate whose relative accuracy loss to FP32 is above this.", _FRACTION, default=0.01
    )
    champion_margin: float = _flag(
        "Reject a candidate whose accuracy is below the champion's by more than this (absolute).",
        _FRACTION,
        default=0.01,
    )
    latency_samples: int = _flag("Single pairs timed for the batch-1 latency.", {"minimum": 1}, default=100)
    timing: Literal["full", "quick"] = field(default="full", metadata={"help": _TIMING_HELP})

    def __post_init__(self):
        _require(self.timing in TIMINGS, "timing", " or ".join(TIMINGS), self.timing)
        _require(self.split in ("validation", "test"), "split", "validation or test", self.split)
        check_ranges(self)


@dataclass
class MeasureArguments:
    """``quantize`` and ``evaluate`` run ``measure`` in fresh processes, one per workload (``--timing``)."""

    models: list[str] = field(metadata={"help": "Model folders to score (outputs of `train` or `quantize`)."})
    data: str = field(metadata={"help": "Staged data folder."})
    report: str = field(metadata={"help": "JSON file to write each model's figures (or the error) into."})
    workload: Literal["throughput", "latency", "both"] = field(
        default="both",
        metadata={
            "help": "throughput: accuracy, F1, predictions and batch-32 throughput, a thread per core for each op; "
            "latency: batch-1 latency, one thread per op; both: both, with the throughput threads (quick timing)."
        },
    )
    split: Literal["validation", "test"] = field(default="validation", metadata={"help": "Split to score on."})
    latency_samples: int = field(default=100, metadata={"help": "Single pairs timed for the batch-1 latency."})
    padding: Literal["longest", "max_length"] = field(
        default="longest", metadata={"help": "longest: pad each batch to its length bucket; max_length: always pad."}
    )

    def __post_init__(self):
        _require(bool(self.models), "models", "one or more model folders", self.models)
        workloads = ("throughput", "latency", "both")
        _require(self.workload in workloads, "workload", "throughput, latency or both", self.workload)
        _require(self.split in ("validation", "test"), "split", "validation or test", self.split)
        _require(self.latency_samples >= 1, "latency_samples", "a positive integer", self.latency_samples)
        _require(self.padding in ("longest", "max_length"), "padding", "longest or max_length", self.padding)


@dataclass
class HealthcheckArguments:
    """The task image's ``HEALTHCHECK`` runs ``healthcheck`` without flags."""

    cmdline: str = field(
        default="/proc/1/cmdline",
        metadata={"help": "The container's command line, NUL-separated: what its main process (PID 1) runs."},
    )


@dataclass
class CpuThreadsArguments:
    """``cpu-threads`` takes no flags: the task image's entrypoint evaluates what it prints."""


@dataclass
class ServeArguments:
    model: str = field(
        default="/opt/ml/model",
        metadata={"help": "Model folder (output of `train` or `quantize`), a folder holding model.tar.gz, or s3://."},
    )
    model_digest: str = field(
        default="",
        metadata={
            "help": "The model folder's content digest, `sha256:...` as the registry records it; the model is refused"
            " unless its files have it. Empty: the environment variable NLP_MODEL_DIGEST's, else checked against the"
            " digest sealed in the folder only."
        },
    )
    host: str = field(default="0.0.0.0", metadata={"help": "Address to listen on (127.0.0.1: this machine only)."})
    port: int = field(default=0, metadata={"help": "Port; 0 means $SAGEMAKER_BIND_TO_PORT, else 8080."})
    max_batch_size: int = field(default=32, metadata={"help": "Pairs per model call at most (dynamic batching)."})
    max_wait_ms: float = field(default=5.0, metadata={"help": "How long the first request of a batch waits for more."})
    max_instances: int = field(default=64, metadata={"help": "Pairs per request at most."})
    max_body_bytes: int = field(
        default=0,
        metadata={
            "help": f"Request bodies above this get 413; 0: --max-instances pairs of {BODY_BYTES_PER_PAIR} bytes"
            " (two long sentences, as JSON)."
        },
    )
    max_sentence_chars: int = _flag(
        "Characters per sentence at most (400 beyond); within it, text is truncated to --max-seq-length tokens.",
        {"minimum": 16},
        default=10_000,
    )
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per pair; longer text pairs are truncated."})
    max_queued_pairs: int = _flag(
        "Pairs admitted but not yet in a model call at most; a request beyond it gets 503 with Retry-After.",
        {"minimum": 1},
        default=128,
    )
    request_timeout: float = _flag(
        "Seconds a request may wait for its answer (503 after; SageMaker allows 60; below --graceful-timeout, so"
        " requests in flight at SIGTERM get their 503 too); a model call running longer means the model worker"
        " is stuck, and /ping answers 503.",
        {"exclusiveMinimum": 0, "maximum": 600},
        default=20.0,
    )
    header_timeout: float = _flag(
        "Seconds a client may take to send a request's headers once it started; the connection is closed after.",
        {"exclusiveMinimum": 0},
        default=10.0,
    )
    body_timeout: float = _flag(
        "Seconds a client may take to send a request's body; 408 and the connection closed after.",
        {"exclusiveMinimum": 0},
        default=10.0,
    )
    keep_alive_timeout: float = _flag(
        "Seconds an idle connection is kept open; longer than a load balancer's idle timeout (ALB: 60 s).",
        {"exclusiveMinimum": 0},
        default=75.0,
    )
    padding: Literal["longest", "max_length"] = field(
        default="longest",
        metadata={"help": "longest: pad each batch to its length bucket (multiple of 16); max_length: always pad."},
    )
    graceful_timeout: float = field(
        default=25.0, metadata={"help": "Seconds to finish in-flight requests after SIGTERM (SageMaker kills at 30)."}
    )
    state: str = field(
        default="",
        metadata={
            "help": "State folder of a local endpoint: record what is served there and take rollouts on its"
            " owner-only control socket (set by deploy-local)."
        },
    )
    capture_dir: str | None = field(
        default=None,
        metadata={
            "help": "Capture a record of each sampled request (docs/monitoring.md) as JSON Lines under this local"
            f" folder or {CAPTURE_REMOTE} URI; empty: no capture. Default: the environment variable"
            f" {CAPTURE_ENV['capture_dir']}'s, else none."
        },
    )
    capture_sample_rate: float | None = _flag(
        "Share of requests captured, each with all its pairs; default: the environment variable"
        f" {CAPTURE_ENV['capture_sample_rate']}'s, else 1.",
        {"exclusiveMinimum": 0, "maximum": 1},
        default=None,
    )
    capture_text: bool | None = field(
        default=None,
        metadata={
            "help": "Also capture the raw sentences of text requests (privacy: off unless asked;"
            " --no-capture-text says off whatever the environment says); default: the environment variable"
            f" {CAPTURE_ENV['capture_text']}'s (true/false), else off."
        },
    )
    capture_file_bytes: int = _flag(
        "A capture file is closed (and uploaded) once it holds this many bytes.",
        {"minimum": 1024},
        default=16 * 1024 * 1024,
    )
    capture_file_seconds: int = _flag(
        "A capture file is closed (and uploaded) this many seconds after its first record; also at its hour's end.",
        {"minimum": 1, "maximum": 3600},
        default=300,
    )
    capture_buffer_records: int = _flag(
        "Capture records held in memory for the writer at most; beyond it records are dropped (and counted), never"
        " requests.",
        {"minimum": 1},
        default=10_000,
    )

    def __post_init__(self):
        _require(0 <= self.port <= 65535, "port", "between 0 and 65535", self.port)
        self._capture_from_environment()
        digest_form = f"empty or {DIGEST_PREFIX} and 64 lowercase hex digits"
        if not self.model_digest and (given := os.environ.get(MODEL_DIGEST_ENV, "")):
            if MODEL_DIGEST.fullmatch(given) is None:
                raise ConfigError(f"the environment variable {MODEL_DIGEST_ENV} must be {digest_form}, got {given!r}")
            self.model_digest = given
        _require(
            not self.model_digest or MODEL_DIGEST.fullmatch(self.model_digest) is not None,
            "model_digest",
            digest_form,
            self.model_digest,
        )
        _require(self.max_batch_size >= 1, "max_batch_size", "a positive integer", self.max_batch_size)
        _require(0 <= self.max_wait_ms <= 1000, "max_wait_ms", "between 0 and 1000", self.max_wait_ms)
        _require(self.max_instances >= 1, "max_instances", "a positive integer", self.max_instances)
        _require(
            self.max_body_bytes == 0 or self.max_body_bytes >= 1024,
            "max_body_bytes",
            "0 or at least 1024",
            self.max_body_bytes,
        )
        self.max_body_bytes = self.max_body_bytes or self.max_instances * BODY_BYTES_PER_PAIR
        check_ranges(self)
        _require(
            self.max_queued_pairs >= self.max_instances,
            "max_queued_pairs",
            f"at least --max-instances ({self.max_instances}), or a full request waits for an empty queue",
            self.max_queued_pairs,
        )
        _require(8 <= self.max_seq_length <= 512, "max_seq_length", "between 8 and 512", self.max_seq_length)
        _require(self.padding in ("longest", "max_length"), "padding", "longest or max_length", self.padding)
        _require(self.graceful_timeout >= 0, "graceful_timeout", "0 or more", self.graceful_timeout)
        _require(
            not self.capture_dir or "://" not in self.capture_dir or self.capture_dir.startswith(CAPTURE_REMOTE),
            "capture_dir",
            f"empty, a local folder or {CAPTURE_REMOTE}bucket/prefix",
            self.capture_dir,
        )

    def _capture_from_environment(self) -> None:
        """Each capture setting not given (None) takes its CAPTURE_ENV variable's value if set, else
        CAPTURE_DEFAULTS'; a setting given, even at that default, keeps its value."""
        specs = {spec.name: spec for spec in dataclasses.fields(self)}
        for name, variable in CAPTURE_ENV.items():
            if getattr(self, name) is not None:
                continue
            given = os.environ.get(variable)
            fallback = CAPTURE_DEFAULTS[name]
            value = (
                fallback if given is None else _environment_value(variable, given.strip(), specs[name], type(fallback))
            )
            setattr(self, name, value)


def _environment_value(variable: str, given: str, spec: dataclasses.Field, kind: type):
    """``given``, the text of the environment variable ``variable``, as a ``kind`` within the field ``spec``'s
    range; a ConfigError naming the variable if not."""
    if kind is bool:
        if given.lower() not in _TRUE + _FALSE:
            raise ConfigError(f"the environment variable {variable} must be true or false, got {given!r}")
        return given.lower() in _TRUE
    if kind is str:
        return given
    bounds = spec.metadata.get("range", {})
    allowed = describe_range(bounds, kind is int)
    try:
        value = kind(given)
    except ValueError:
        raise ConfigError(f"the environment variable {variable} must be {allowed}, got {given!r}") from None
    if not _within(value, bounds):
        raise ConfigError(f"the environment variable {variable} must be {allowed}, got {given!r}")
    return value


@dataclass
class DeployLocalArguments(ServeArguments):
    """``serve``'s flags, for the endpoint this command starts; a running endpoint keeps its own settings."""

    model: str = field(default="", metadata={"help": "Model folder to serve (output of `train` or `quantize`) or URI."})
    state: str = field(
        default="", metadata={"help": "State folder of the local endpoint (pid, port, models, history)."}
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on when starting the endpoint."})
    port: int = field(default=8080, metadata={"help": "Port to listen on when starting the endpoint."})
    timeout: float = field(
        default=600.0, metadata={"help": "Seconds to wait for the model to load, warm up and pass its smoke check."}
    )

    def __post_init__(self):
        super().__post_init__()
        _require(bool(self.model), "model", "a model folder or URI", self.model)
        _require(bool(self.state), "state", "a state folder", self.state)
        _require(1 <= self.port <= 65535, "port", "between 1 and 65535", self.port)
        _require(self.timeout > 0, "timeout", "positive", self.timeout)


@dataclass
class EndpointArguments:
    state: str = field(metadata={"help": "State folder of the local endpoint (as given to deploy-local)."})
    timeout: float = field(
        default=600.0, metadata={"help": "Seconds to wait for the endpoint (a rollback loads and checks a model)."}
    )
    json: bool = field(default=False, metadata={"help": "status: print the endpoint's state as JSON."})
    expect_version: str = field(
        default="",
        metadata={
            "help": "rollback: roll back only while this version is served (a deploy that never switched"
            " leaves nothing to undo)."
        },
    )

    def __post_init__(self):
        _require(self.timeout > 0, "timeout", "positive", self.timeout)


@dataclass
class RegistryArguments:
    registry: str = field(
        default="",
        metadata={
            "help": "The registry's SQLite file, a local path or s3://bucket/key (created when missing, except by"
            f" list and show). Empty: the environment variable {REGISTRY_ENV}'s (`make registry` sets it to the demo's)."
        },
    )
    action: Literal[REGISTRY_ACTIONS] = field(
        default="list",
        metadata={
            "help": "Also the first word after `registry`. list: a table of every entry, newest first; show: every"
            " entry of --version; register: record --model with --evaluation and --status; promote: make entry"
            " --id the production model; production: print it (or null)."
        },
    )
    version: str = field(
        default="",
        metadata={"help": "show: the model version (or registry entry id) to show; also the word after `show`."},
    )
    json: bool = field(
        default=False,
        metadata={"help": "list, show: print JSON instead of text (the other actions always print JSON)."},
    )
    model: str = field(default="", metadata={"help": "register: the candidate model folder or URI."})
    evaluation: str = field(default="", metadata={"help": "register: the evaluate step's output folder."})
    status: Literal["candidate", "approved", "production", "archived"] = field(
        default="candidate", metadata={"help": "register: the status to record."}
    )
    config: str = field(default="{}", metadata={"help": "register: the training configuration, a JSON object."})
    dag_id: str = field(default="", metadata={"help": "register: lineage, the DAG that produced the model."})
    run_id: str = field(default="", metadata={"help": "register: lineage, the DAG run."})
    logical_date: str = field(default="", metadata={"help": "register: lineage, the run's logical date."})
    id: int = field(default=0, metadata={"help": "promote: the registry entry."})

    def __post_init__(self):
        self.registry = self.registry or os.environ.get(REGISTRY_ENV, "")
        _require(
            bool(self.registry),
            "registry",
            f"the registry file or URI (or set the environment variable {REGISTRY_ENV}; `make registry` lists the"
            " demo's)",
            self.registry,
        )
        _require(
            "://" not in self.registry or self.registry.startswith(CONDITIONAL_WRITES),
            "registry",
            f"a local file or {CONDITIONAL_WRITES}bucket/key (concurrent updates need conditional writes)",
            self.registry,
        )
        _require(self.action in REGISTRY_ACTIONS, "action", f"one of {', '.join(REGISTRY_ACTIONS)}", self.action)
        _require(
            self.action in REGISTRY_VERSION_ACTIONS or not self.version,
            "version",
            f"given only to {', '.join(REGISTRY_VERSION_ACTIONS)}",
            f"{self.action} {self.version}",
        )
        if self.action == "show":
            _require(bool(self.version), "version", "the model version to show (`registry show VERSION`)", self.version)
        if self.action == "register":
            _require(bool(self.model), "model", "a model folder or URI when registering", self.model)
            _require(bool(self.evaluation), "evaluation", "an evaluate output folder when registering", self.evaluation)
        if self.action == "promote":
            _require(self.id >= 1, "id", "a registry entry id when promoting", self.id)


@dataclass
class SmokeTestArguments:
    url: str = field(metadata={"help": "The endpoint's base URL, e.g. http://127.0.0.1:8080."})
    expect_version: str = field(
        default="", metadata={"help": "Fail unless the endpoint answers with this model_version."}
    )
    timeout: float = field(default=30.0, metadata={"help": "Seconds per request."})

    def __post_init__(self):
        _require(self.url.startswith(("http://", "https://")), "url", "an http(s) URL", self.url)
        _require(self.timeout > 0, "timeout", "positive", self.timeout)


# The monitor step's report in its output folder; the step result and the DAGs read it.
MONITORING_REPORT = "monitoring.json"
# Its verdicts (``status``): a DAG branches on them. Too few pairs in the window is never drift.
MONITOR_OK, MONITOR_DRIFT, MONITOR_NOT_ENOUGH_DATA = "ok", "drift", "not_enough_data"
MONITOR_STATUSES = (MONITOR_OK, MONITOR_DRIFT, MONITOR_NOT_ENOUGH_DATA)
# The longest window `monitor` compares: a week of hours (each hour's folder is listed).
MAX_WINDOW_MINUTES = 7 * 24 * 60
_SHARE_CHANGE = {"exclusiveMinimum": 0, "maximum": 1}
# A prediction whose label's probability is below this is low confidence: monitor's default, and the threshold
# train measures the validation predictions' low-confidence share at for the traffic baseline.
LOW_CONFIDENCE = 0.6


@dataclass
class MonitorArguments:
    """``python -m tasks monitor``: compare a window of captured traffic with the traffic baseline of the model
    that served it (docs/monitoring.md)."""

    capture: str = field(
        metadata={"help": "The capture root the server writes to (its --capture-dir): a local folder or s3:// URI."}
    )
    baseline: str = field(
        metadata={
            "help": "What the traffic is compared with: a model folder or URI whose model card holds the traffic"
            " baseline (train writes it; a SageMaker model.tar.gz too), or a staged data folder (then mean"
            " confidence and the low-confidence share have no reference)."
        }
    )
    output: str = field(metadata={"help": "Folder to write monitoring.json and monitoring.png into (or s3://)."})
    window_end: str = field(
        default="",
        metadata={
            "help": "The window's end, ISO 8601 (2026-12-03T17:00:00Z; no zone: UTC), excluded; empty: now. The"
            " window holds the records with end - --window-minutes <= time < end."
        },
    )
    window_minutes: int = _flag(
        "The window's length in minutes (a week at most).", {"minimum": 1, "maximum": MAX_WINDOW_MINUTES}, default=60
    )
    min_records: int = _flag(
        "Pairs the window needs at least; with fewer its status is not_enough_data, never drift. At 200 the"
        " token-length PSI of traffic like the baseline stays below the default --psi-threshold (at 100 about one"
        " window in 25 drifted).",
        {"minimum": 1},
        default=200,
    )
    psi_threshold: float = _flag(
        "Drift when the population stability index of the pairs' token lengths (over the baseline's decile bins)"
        " is above this; 0.1 is a small shift, 0.25 a large one.",
        {"exclusiveMinimum": 0},
        default=0.2,
    )
    label_shift_threshold: float = _flag(
        "Drift when the share of pairs predicted paraphrase differs from the baseline's by more than this"
        " (absolute: 0.15 = 15 points).",
        _SHARE_CHANGE,
        default=0.15,
    )
    confidence_drop_threshold: float = _flag(
        "Drift when the mean confidence (the predicted label's probability) is below the baseline's by more"
        " than this (absolute).",
        _SHARE_CHANGE,
        default=0.1,
    )
    low_confidence: float = _flag(
        "A pair whose predicted label's probability is below this is low confidence (the baseline's share is"
        f" measured at the default, {LOW_CONFIDENCE:g}).",
        {"exclusiveMinimum": 0.5, "maximum": 1},
        default=LOW_CONFIDENCE,
    )
    low_confidence_shift_threshold: float = _flag(
        "Drift when the share of low-confidence pairs is above the baseline's by more than this (absolute).",
        _SHARE_CHANGE,
        default=0.15,
    )
    unknown_rate_threshold: float = _flag(
        "Drift when the share of unknown tokens ([UNK]) among the pairs' tokens is above the baseline's by more"
        " than this (absolute).",
        _SHARE_CHANGE,
        default=0.02,
    )

    def __post_init__(self):
        for name in ("capture", "baseline", "output"):
            _require(bool(getattr(self, name)), name, "a local folder or URI", getattr(self, name))
        check_ranges(self)
        self.window()  # refuses a --window-end that is not ISO 8601

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The window's (start, end) in UTC, start included, end excluded; ``now`` (default: the clock) when
        --window-end is empty."""
        if self.window_end:
            try:
                end = datetime.fromisoformat(self.window_end.strip())
            except ValueError:
                raise ConfigError(
                    f"--window-end must be an ISO 8601 time such as 2026-12-03T17:00:00Z, got {self.window_end!r}"
                ) from None
            end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
        else:
            end = now or datetime.now(UTC)
        return end - timedelta(minutes=self.window_minutes), end


@dataclass
class SummaryArguments:
    run_folder: str = field(metadata={"help": "A pipeline run's artefact folder (staged/, model/, quantized/, ...)."})
    state: str = field(default="", metadata={"help": "The local endpoint's state folder."})


@dataclass
class GcArguments:
    root: str = field(
        metadata={"help": "The artefact root (a local folder or s3://bucket/prefix): DAG_ID/RUN_KEY/STEP/... under it."}
    )
    dags: str = field(
        metadata={
            "help": "Comma-separated DAG ids whose folders (ROOT/DAG_ID) gc collects: the DAGs whose models the"
            " registries given name. Other DAGs' folders under the root are never touched."
        }
    )
    registries: str = field(
        default="",
        metadata={
            "help": "Comma-separated registry files (local or s3://) whose entries keep their models; default:"
            " ROOT/registry.sqlite. One that cannot be read stops gc before it removes anything."
        },
    )
    workspace: str = field(
        default="", metadata={"help": "The local workspace of a remote root ($AIRFLOW_HOME/nlp-workspace)."}
    )
    cache: str = field(
        default="", metadata={"help": "The model cache; default: $TASKS_CACHE_DIR, else ~/.cache/nlp-workflow."}
    )
    older_than_days: int = _flag(
        "Remove only what was last written (a cache entry: last used) more than this many days ago.",
        {"minimum": 1},
        default=14,
    )
    dry_run: bool = field(default=False, metadata={"help": "List what would be removed, with sizes; remove nothing."})

    def __post_init__(self):
        check_ranges(self)
        _require(bool(self.root.strip()), "root", "an artefact root folder or URI", self.root)
        _require(
            bool(self.dag_ids()) and all(_DAG_ID.match(dag) for dag in self.dag_ids()),
            "dags",
            "comma-separated DAG ids (letters, digits, '_', '-', '.')",
            self.dags,
        )

    def dag_ids(self) -> list[str]:
        return [dag.strip() for dag in self.dags.split(",") if dag.strip()]
