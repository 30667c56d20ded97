"""The pipeline's Params: the Airflow trigger form, and the contract a CLI or REST trigger is checked against.

Each Param carries a JSON-schema type, range or enum and a description, so the UI renders a typed form and
refuses bad values, and Airflow refuses the same values from ``airflow dags trigger -c`` or the REST API.
A Param that sets a step's flag (commands.PARAM_FLAGS) takes its type, default, range and help from that
flag (tasks/config.py); the form only adds its title and section. The defaults are the production ones (GLUE
MRPC from the hub, bert-base-uncased); ``make demo`` overrides the source and base model with generated data
and the packaged MiniLM.
"""

from __future__ import annotations

import os
import re

from airflow.sdk import Param

from nlp_pipeline import commands
from nlp_pipeline.specs import kubernetes_limits, sagemaker_api
from tasks.config import ServeArguments, describe_range, flag_schema


def anchored(body: str) -> str:
    """A JSON-schema ``pattern`` that matches a whole value: ``body`` between ``^`` and ``$(?!\\n)``.

    A schema's pattern is a search, so it needs both anchors; and Airflow checks it with Python's ``re``
    (jsonschema), whose ``$`` also matches before a final newline: ``(?!\\n)`` refuses that, in Python and in
    the form's ECMAScript alike (where ``$`` is the end already)."""
    return rf"^(?:{body})$(?!\n)"


# The form's sections of the steps' flags.
STEP_SECTIONS = {
    "stage": "Data and model",
    "train": "Training",
    "tune": "Tuning",
    "quantize": "Quantisation",
    "monitor": "Monitoring",
}
# What the form adds to a flag's schema: a source the CLI would only refuse once the step runs.
FORM_RULES = {
    # hf://OWNER/NAME[/CONFIG], s3://..., or a path on the worker (absolute, ./relative or ~).
    "source": {"pattern": anchored(r"hf://[^/\s]+/[^/\s]+(/[^/\s]+)?|s3://\S+|[/.~]\S*")},
    "base_model": {"minLength": 1},
}
TITLES = {
    "source": "Data source",
    "base_model": "Base model",
    "max_seq_length": "Max length",
    "quantization_tolerance": "INT8 tolerance",
    "timing": "Timing runs",
    "tuning_trials": "Tuning trials",
    "learning_rate_range": "Learning rate range",
    "epochs_range": "Epochs range",
    "batch_sizes": "Batch sizes",
    "warmup_ratio_range": "Warm-up ratio range",
    "weight_decay_range": "Weight decay range",
    "tuning_max_steps": "Steps per trial",
    "window_minutes": "Window (minutes)",
    "min_records": "Pairs needed",
    "psi_threshold": "Token-length PSI threshold",
    "label_shift_threshold": "Paraphrase share shift",
    "confidence_drop_threshold": "Confidence drop",
    "low_confidence": "Low confidence below",
    "low_confidence_shift_threshold": "Low-confidence share shift",
    "unknown_rate_threshold": "Unknown-token rate rise",
}
# What the form says beyond the flag's help: what a Param does in the run, and what only the run's start checks
# (a JSON schema cannot compare a range's two ends; the policy task refuses LO > HI before any step).
_RANGE = " [LO, HI]; LO above HI fails the run at its start (the policy task), before any step."
FORM_NOTES = {
    "tuning_trials": " Above 0: the tuning stage trains this many short trials, each scored on the validation split,"
    " and the training stage trains with the best one's learning rate, epochs, batch size, warm-up and weight"
    " decay instead of the form's (Hyperparameter tuning in your platform's doc: docs/local.md, docs/sagemaker.md,"
    " docs/eks.md).",
    "learning_rate_range": _RANGE,
    "epochs_range": _RANGE,
    "warmup_ratio_range": _RANGE,
    "weight_decay_range": _RANGE,
    "tuning_max_steps": " Training steps each trial may take; the chosen setting then trains in full.",
}


def flag_param(spec: commands.ParamFlag) -> Param:
    """The Param setting a step's flag: the flag's type, default, range and help (tasks/config.py), in the form."""
    schema = flag_schema(commands.STEP_ARGUMENTS[spec.step], spec.field) | FORM_RULES.get(spec.param, {})
    schema["description"] += FORM_NOTES.get(spec.param, "")
    section = "Data and model" if spec.param == "base_model" else STEP_SECTIONS[spec.step]
    title = TITLES.get(spec.param, spec.param.replace("_", " ").capitalize())
    return Param(schema.pop("default"), title=title, section=section, **schema)


# The default of the Param capture_sample_rate, which scheduled and drift-triggered runs take: unset or empty, null
# (keep the endpoint's capture as it is: off for a new endpoint); 0, capture off; a share, capture on.
DEFAULT_CAPTURE_RATE_ENV = "NLP_DEFAULT_CAPTURE_SAMPLE_RATE"


def default_capture_rate() -> float | None:
    """The environment's ``DEFAULT_CAPTURE_RATE_ENV``, None (keep) when unset or empty; a ValueError naming it when
    it is not a share the server takes (0 or the serve flag's range), which fails the DAG's parse."""
    given = os.environ.get(DEFAULT_CAPTURE_RATE_ENV, "").strip()
    if not given:
        return None
    bounds = flag_schema(ServeArguments, "capture_sample_rate")
    try:
        rate = float(given)
    except ValueError:
        rate = -1.0
    if rate != 0 and not bounds["exclusiveMinimum"] < rate <= bounds["maximum"]:
        allowed = describe_range({key: bounds[key] for key in ("exclusiveMinimum", "maximum")}, integer=False)
        raise ValueError(
            f"{DEFAULT_CAPTURE_RATE_ENV} must be empty (keep the endpoint's capture), 0 (capture off) or {allowed},"
            f" got {given!r}"
        )
    return rate


def capture_params() -> dict[str, Param]:
    """What the rollout's endpoint captures of its traffic for the monitor DAG (docs/monitoring.md): the serve flags'
    range and help, with 0 for "off" and null for "as the endpoint captures now"."""
    rate = flag_schema(ServeArguments, "capture_sample_rate")
    return {
        "capture_sample_rate": Param(
            default_capture_rate(),
            type=["null", "number"],
            minimum=0,
            maximum=rate["maximum"],
            title="Capture sample rate",
            description="Share of the endpoint's requests captured for drift monitoring (the monitor DAG); 0: capture"
            " off; null: keep the endpoint's capture as it is (off for a new endpoint). Default: the environment"
            f" variable {DEFAULT_CAPTURE_RATE_ENV}'s, else null. Applies to the endpoint this run deploys.",
            section="Monitoring",
        ),
        "capture_text": Param(
            False,
            type="boolean",
            title="Capture text",
            description="Also capture the raw sentences of text requests; off, a record keeps only token counts,"
            " the label and its probability (privacy: docs/monitoring.md). Needs a capture sample rate above 0.",
            section="Monitoring",
        ),
    }


def step_params(steps: tuple[str, ...]) -> dict[str, Param]:
    """The Params that set a flag of one of ``steps``; one setting several flags takes its schema from the first,
    in PARAM_FLAGS' order."""
    first = {}
    for spec in commands.PARAM_FLAGS:
        if spec.step in steps:
            first.setdefault(spec.param, spec)
    return {name: flag_param(spec) for name, spec in first.items()}


def monitor_params() -> dict[str, Param]:
    """The monitor DAGs' Params: the window and the drift thresholds of the monitor step (docs/monitoring.md)."""
    return step_params(commands.MONITOR_STEPS)


def pipeline_params() -> dict[str, Param]:
    return (
        step_params(commands.PIPELINE_STEPS)
        | {
            "quantize": Param(
                True,
                type="boolean",
                title="Quantise to INT8",
                description="Quantise with Intel Neural Compressor; off: the FP32 model is the candidate.",
                section="Quantisation",
            ),
            "deploy": Param(
                True,
                type="boolean",
                title="Deploy",
                description="Roll a promoted model out to the endpoint (never in backfills).",
                section="Rollout",
            ),
            "require_approval": Param(
                False,
                type="boolean",
                title="Require approval",
                description="Wait for a person to approve the rollout in the Airflow UI.",
                section="Rollout",
            ),
        }
        | capture_params()
    )


def local_params() -> dict[str, Param]:
    """What only the local platform needs: where its endpoint listens."""
    return {
        "endpoint_port": Param(
            8080,
            type="integer",
            minimum=1024,
            maximum=65535,
            title="Endpoint port",
            description="Port of the local endpoint on 127.0.0.1 (when it starts).",
            section="Rollout",
        ),
    }


# Intel Xeon instance families: c6i/m6i/r6i (Ice Lake, AVX-512 VNNI) and c7i/m7i/r7i (Sapphire Rapids, AMX).
INTEL_XEON = re.compile(r"ml\.[cmr][67]i\.[0-9]*x?large")
# The uses (sagemaker_api.INSTANCE_SHAPES) each instance Param's type must serve. The quantize job runs on the
# endpoint's instance type, or compression_instance_type, and keeps the precision it measured fastest there: both
# are processing types AND endpoint types (ml.c6i.large serves but runs no job, so it is not offered).
INSTANCE_USES = {
    "processing_instance_type": ("processing",),
    "training_instance_type": ("training",),
    "endpoint_instance_type": ("endpoint", "processing"),
    "compression_instance_type": ("endpoint", "processing"),
}


# The longest training a run may ask for: the task limits read it here, without building the Params (which reads
# botocore's service model, ~0.1 s a DAG parse).
MAX_RUNTIME_HOURS = 120


def _size(instance_type: str) -> tuple[str, int]:
    """Family, then size: large < xlarge < 2xlarge < ... < 48xlarge."""
    _, family, size = instance_type.split(".")
    return family, 0 if size == "large" else int(size.removesuffix("xlarge") or 1)


def intel_instance_types(*uses: str) -> list[str]:
    """The Intel Xeon instance types SageMaker accepts for every one of ``uses`` (botocore's enums), by size."""
    accepted = frozenset.intersection(*(sagemaker_api.instance_types(use) for use in uses))
    return sorted((name for name in accepted if INTEL_XEON.fullmatch(name)), key=_size)


def _instance(name: str, default: str | None, title: str, description: str) -> Param:
    offered = intel_instance_types(*INSTANCE_USES[name])
    if default is None:  # another Param decides, as described
        return Param(
            None,
            type=["null", "string"],
            enum=[*offered, None],
            values_display={None: "(the endpoint's instance type)"},
            title=title,
            description=description,
            section="SageMaker",
        )
    return Param(default, type="string", enum=offered, title=title, description=description, section="SageMaker")


def sagemaker_params() -> dict[str, Param]:
    """What only the SageMaker platform needs: instances, Spot, the tuning job's parallelism, the rollout policy, the
    model registry."""
    return {
        "processing_instance_type": _instance(
            "processing_instance_type",
            "ml.c6i.2xlarge",
            "Processing instance",
            "Stage and evaluate (quantise runs on the endpoint's type).",
        ),
        "training_instance_type": _instance(
            "training_instance_type", "ml.c7i.4xlarge", "Training instance", "Intel Xeon; AMX on c7i/m7i."
        ),
        "training_instance_count": Param(
            1,
            type="integer",
            minimum=1,
            maximum=16,
            title="Training instances",
            description="More than 1 trains multi-worker (one TensorFlow worker per instance).",
            section="SageMaker",
        ),
        "spot_training": Param(
            False,
            type="boolean",
            title="Managed Spot training",
            description="Train on Spot capacity; checkpoints on S3 let an interrupted job resume.",
            section="SageMaker",
        ),
        "max_runtime_hours": Param(
            6,
            type="integer",
            minimum=1,
            maximum=MAX_RUNTIME_HOURS,
            title="Max training hours",
            description="MaxRuntimeInSeconds; with Spot, MaxWaitTimeInSeconds is twice this.",
            section="SageMaker",
        ),
        "endpoint_instance_type": _instance(
            "endpoint_instance_type",
            "ml.c6i.xlarge",
            "Endpoint instance",
            "Serves the model; quantise measures on it too by default.",
        ),
        "compression_instance_type": _instance(
            "compression_instance_type",
            None,
            "Compression instance",
            "Where quantise measures FP32, BF16 and INT8 and keeps the fastest. Empty: the endpoint's instance "
            "type, so the choice holds where the model serves.",
        ),
        "endpoint_instance_count": Param(
            1,
            type="integer",
            minimum=1,
            maximum=20,
            title="Endpoint instances",
            section="SageMaker",
            description="Instances behind the endpoint.",
        ),
        "blue_green": Param(
            dict(sagemaker_api.BLUE_GREEN_DEFAULT),
            title="Blue/green rollout",
            description=(
                "How an endpoint update moves traffic from the old fleet to the new one. traffic: all_at_once "
                "(everything at once), canary (step_percent, 1-50, first, then the rest) or linear (step_percent, "
                "10-50, per step). baking_minutes: how long CloudWatch alarms watch after each step and before the "
                "old fleet goes; alarms (at most 10 names): one in ALARM rolls the update back. Auto-rollback "
                "needs alarms: a bake needs at least one, and canary and linear need a bake. The whole rollout "
                "must fit SageMaker's 8 hours (linear 10 %: at most 40 minutes per bake). Without alarms "
                "(the default, all at once) the smoke test and the rollback task decide."
            ),
            section="SageMaker",
            **sagemaker_api.BLUE_GREEN_SCHEMA,
        ),
        "tuning_parallel_jobs": Param(
            2,
            type="integer",
            minimum=1,
            maximum=sagemaker_api.MAX_PARALLEL_TRAINING_JOBS,
            title="Trials at a time",
            description="Training jobs the tuning job runs at once (MaxParallelTrainingJobs), each on a training "
            f"instance; at most {sagemaker_api.MAX_PARALLEL_TRAINING_JOBS}, SageMaker's default quota. Fewer at "
            "once: a longer search whose later trials learn from more finished ones.",
            section="Tuning",
        ),
        "model_approval": Param(
            "Approved",
            type="string",
            enum=["Approved", "PendingManualApproval"],
            title="Model approval",
            description="PendingManualApproval: the rollout waits until the package is approved in SageMaker.",
            section="SageMaker",
        ),
    }


# Kubernetes quantities with bounded digits (specs/kubernetes_limits.py): CPU 2, 0.5 or 500m; memory 16Gi or 512Mi.
CPU_PATTERN = anchored(kubernetes_limits.CPU_BODY)
MEMORY_PATTERN = anchored(kubernetes_limits.MEMORY_BODY)
_QUANTITIES = {"cpu": (CPU_PATTERN, "2, 0.5 or 500m"), "memory": (MEMORY_PATTERN, "16Gi, 512Mi or 16G")}
# A node label name: feature.node.kubernetes.io/cpu-cpuid.AMXBF16
# How nlp_eks runs a multi-worker training: the Param and its values.
TRAINING_BACKEND, INDEXED_JOB, TFJOB = "training_backend", "indexed-job", "tfjob"
NODE_FEATURE = anchored(r"[a-z0-9.-]+/[A-Za-z0-9._-]+")
TOLERATION_KEY = anchored(kubernetes_limits.LABEL_KEY_BODY)  # a taint's key: intel, example.com/dedicated
TOLERATION_VALUE = anchored(kubernetes_limits.LABEL_VALUE_BODY)
# What the Param schemas cannot check: a schema cannot read a Variable when the run is triggered.
_RUN_START = f"fails the run before its first pod (Variable {kubernetes_limits.VARIABLE}, docs/eks.md)"


def _quantity(default: str, kind: str, title: str, description: str) -> Param:
    """A CPU or memory (``kind``) Param: bounded here, and by the Variable's ``max_KIND`` when the run starts."""
    pattern, examples = _QUANTITIES[kind]
    limit = f"max_{kind}"
    description += (
        f" {examples}, at most {kubernetes_limits.STATIC_MAX[kind]}; over {limit} "
        f"(default {kubernetes_limits.DEFAULTS[limit]}) {_RUN_START}."
    )
    return Param(default, type="string", pattern=pattern, title=title, description=description, section="Kubernetes")


def _node_labels(description: str) -> str:
    allowed = ", ".join(kubernetes_limits.DEFAULTS["node_labels"])
    return f"{description} A label outside node_labels (default: {allowed}*) {_RUN_START}."


def eks_params() -> dict[str, Param]:
    """What only the Kubernetes platform needs: pod sizes, Intel node placement, workers, the server's rollout."""
    return {
        "step_cpu": _quantity(
            "4", "cpu", "Step CPU", "CPU request and limit of each step's pod; the step runs as many threads."
        ),
        "step_memory": _quantity("16Gi", "memory", "Step memory", "Memory request and limit of each step."),
        "training_workers": Param(
            1,
            type="integer",
            minimum=1,
            maximum=16,
            title="Training workers",
            description="1: one pod. More: one TensorFlow worker per pod, as training_backend says.",
            section="Kubernetes",
        ),
        TRAINING_BACKEND: Param(
            INDEXED_JOB,
            type="string",
            enum=[INDEXED_JOB, TFJOB],
            title="Multi-worker training as",
            description=f"{INDEXED_JOB}: a Kubernetes Indexed Job and a headless Service, nothing to install. "
            f"{TFJOB}: a Kubeflow TFJob, which needs the Training Operator v1.9 (docs/eks.md).",
            section="Kubernetes",
        ),
        "node_features": Param(
            ["feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI"],
            type="array",
            items={"type": "string", "pattern": NODE_FEATURE},
            title="Required CPU features",
            description=_node_labels(
                "Node Feature Discovery labels a node must have (value true), e.g. "
                "feature.node.kubernetes.io/cpu-cpuid.AMXBF16 for Sapphire Rapids. Empty: any node."
            ),
            section="Kubernetes",
        ),
        "compression_node_features": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": NODE_FEATURE},
            title="Compression CPU features",
            description=_node_labels(
                "Node Feature Discovery labels the quantize pod's node must have, in place of node_features (the "
                "server's). Unset: the server's, so quantise measures on the CPU the model serves on; []: any node."
            ),
            section="Kubernetes",
        ),
        "tolerations": Param(
            [],
            type="array",
            items={
                "type": "object",
                "properties": {
                    "key": {
                        "type": "string",
                        "pattern": TOLERATION_KEY,
                        "maxLength": kubernetes_limits.LABEL_KEY_MAX_LENGTH,
                    },
                    "operator": {"type": "string", "enum": ["Equal", "Exists"]},
                    "value": {"type": "string", "pattern": TOLERATION_VALUE},
                    "effect": {"type": "string", "enum": list(kubernetes_limits.EFFECTS)},
                },
                "required": ["key"],
                "additionalProperties": False,
                # Exists matches the key whatever its value: a value would say otherwise.
                "if": {"properties": {"operator": {"const": "Exists"}}, "required": ["operator"]},
                "then": {"not": {"required": ["value"]}},
            },
            title="Tolerations",
            description='Taints of a dedicated node group the pods tolerate, e.g. [{"key": "intel", '
            '"operator": "Exists", "effect": "NoSchedule"}]. Each names a key (an empty key with Exists would '
            "tolerate every taint); Exists takes no value. A key outside toleration_keys (default: none) or an "
            "effect outside toleration_effects (default: NoSchedule, PreferNoSchedule; no effect means all) "
            f"{_RUN_START}.",
            section="Kubernetes",
        ),
        "server_replicas": Param(
            2,
            type="integer",
            minimum=1,
            maximum=50,
            title="Server replicas",
            description="Inference pods (the autoscaler's minimum when it is on).",
            section="Kubernetes",
        ),
        "server_cpu": _quantity("2", "cpu", "Server CPU", "CPU request and limit of each inference pod."),
        "server_memory": _quantity("4Gi", "memory", "Server memory", "Memory of each inference pod."),
        "autoscale_max_replicas": Param(
            0,
            type="integer",
            minimum=0,
            maximum=100,
            title="Autoscale up to",
            description="0: a fixed number of replicas. More: a HorizontalPodAutoscaler on CPU, up to this many.",
            section="Kubernetes",
        ),
        "rollout_timeout_minutes": Param(
            15,
            type="integer",
            minimum=1,
            maximum=120,
            title="Rollout timeout (minutes)",
            description="A rollout not complete by then is undone: the previous revision is applied again.",
            section="Kubernetes",
        ),
    }
