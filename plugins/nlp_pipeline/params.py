"""The pipeline's Params: the Airflow trigger form, and the contract a CLI or REST trigger is checked against.

Each Param carries a JSON-schema type, range or enum and a description, so the UI renders a typed form and
refuses bad values, and Airflow refuses the same values from ``airflow dags trigger -c`` or the REST API.
The defaults are the production ones (GLUE MRPC from the hub, bert-base-uncased); ``make demo`` overrides
the source and base model with generated data and the packaged MiniLM.
"""

from __future__ import annotations

from airflow.sdk import Param

DEFAULT_SOURCE = "hf://nyu-mll/glue/mrpc"
DEFAULT_BASE_MODEL = "bert-base-uncased"
# hf://OWNER/NAME[/CONFIG], s3://..., or a path on the worker (absolute, ./relative or ~).
SOURCE_PATTERN = r"^(hf://[^/\s]+/[^/\s]+(/[^/\s]+)?|s3://\S+|[/.~]\S*)$"
# The Params that decide which model training produces: equal values on equal data give the cached model.
TRAINING_CONFIG = ("base_model", "epochs", "batch_size", "learning_rate", "max_seq_length", "precision", "seed",
                   "quantize", "quantization_tolerance")  # fmt: skip


def training_config(params) -> dict:
    """What the registry keeps of a run's Params: the ones that decide which model training produces."""
    return {name: params[name] for name in TRAINING_CONFIG}


def _threshold(default: float, title: str, description: str) -> Param:
    return Param(default, type="number", minimum=0, maximum=1, title=title, description=description,
                 section="Promotion gate")  # fmt: skip


def pipeline_params() -> dict[str, Param]:
    return {
        "source": Param(
            DEFAULT_SOURCE,
            type="string",
            pattern=SOURCE_PATTERN,
            title="Data source",
            description="hf://OWNER/NAME/CONFIG, a folder or file on the worker, or s3://bucket/prefix.",
            section="Data and model",
        ),
        "base_model": Param(
            DEFAULT_BASE_MODEL,
            type="string",
            minLength=1,
            title="Base model",
            description="A Hugging Face hub id, a folder on the worker, or s3://; also the tokenizer.",
            section="Data and model",
        ),
        "max_seq_length": Param(
            128,
            type="integer",
            minimum=16,
            maximum=512,
            title="Max length",
            description="Tokens per sentence pair; longer pairs are truncated.",
            section="Data and model",
        ),  # fmt: skip
        "epochs": Param(
            3, type="integer", minimum=1, maximum=50, description="Passes over the training split.", section="Training"
        ),  # fmt: skip
        "batch_size": Param(
            32, type="integer", minimum=1, maximum=512, description="Pairs per training step.", section="Training"
        ),  # fmt: skip
        "learning_rate": Param(
            3e-5,
            type="number",
            exclusiveMinimum=0,
            maximum=0.01,
            title="Learning rate",
            description="Peak AdamW learning rate.",
            section="Training",
        ),  # fmt: skip
        "precision": Param(
            "auto",
            type="string",
            enum=["auto", "fp32", "bf16"],
            description="auto: bf16 where the CPU has AVX512-BF16 or AMX, else fp32.",
            section="Training",
        ),  # fmt: skip
        "seed": Param(
            42, type="integer", minimum=0, description="Seed for initialisation and shuffling.", section="Training"
        ),  # fmt: skip
        "quantize": Param(
            True,
            type="boolean",
            title="Quantise to INT8",
            description="Quantise with Intel Neural Compressor; off ships the FP32 model.",
            section="Quantisation",
        ),  # fmt: skip
        "quantization_tolerance": Param(
            0.01,
            type="number",
            minimum=0,
            maximum=0.2,
            title="INT8 tolerance",
            description="Largest relative accuracy loss INT8 may cost.",
            section="Quantisation",
        ),  # fmt: skip
        "timing": Param(
            "full",
            type="string",
            enum=["full", "quick"],
            title="Timing runs",
            description="How quantize and evaluate time models. full: throughput and latency each in a fresh "
            "process; quick: both in one, batch 1 over fewer pairs (smoke runs: faster, noisier figures).",
            section="Quantisation",
        ),
        "min_accuracy": _threshold(0.75, "Minimum accuracy", "Reject a candidate below this validation accuracy."),
        "min_f1": _threshold(0.80, "Minimum F1", "Reject a candidate below this validation F1."),
        "max_int8_loss": _threshold(
            0.01, "Maximum INT8 loss", "Reject an INT8 candidate losing more accuracy than this (relative)."
        ),
        "champion_margin": _threshold(
            0.01, "Champion margin", "Reject a candidate this much less accurate than production."
        ),
        "deploy": Param(
            True,
            type="boolean",
            title="Deploy",
            description="Roll a promoted model out to the endpoint (never in backfills).",
            section="Rollout",
        ),  # fmt: skip
        "require_approval": Param(
            False,
            type="boolean",
            title="Require approval",
            description="Wait for a person to approve the rollout in the Airflow UI.",
            section="Rollout",
        ),  # fmt: skip
    }


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
        ),  # fmt: skip
    }


# Intel Xeon instance families: c6i/m6i/r6i (Ice Lake, AVX-512 VNNI), c7i/m7i/r7i (Sapphire Rapids, AMX).
INTEL_INSTANCE = r"^ml\.(c|m|r)(6i|7i)\.(large|[0-9]*xlarge)$"


def _instance(default: str, title: str, description: str) -> Param:
    return Param(default, type="string", pattern=INTEL_INSTANCE, title=title, description=description,
                 section="SageMaker")  # fmt: skip


def sagemaker_params() -> dict[str, Param]:
    """What only the SageMaker platform needs: instances, Spot, the rollout policy, the model registry."""
    return {
        "processing_instance_type": _instance("ml.c6i.2xlarge", "Processing instance", "Stage, quantise, evaluate."),
        "training_instance_type": _instance("ml.c7i.4xlarge", "Training instance", "Intel Xeon; AMX on c7i/m7i."),
        "training_instance_count": Param(
            1,
            type="integer",
            minimum=1,
            maximum=16,
            title="Training instances",
            description="More than 1 trains multi-worker (one TensorFlow worker per instance).",
            section="SageMaker",
        ),  # fmt: skip
        "spot_training": Param(
            False,
            type="boolean",
            title="Managed Spot training",
            description="Train on Spot capacity; checkpoints on S3 let an interrupted job resume.",
            section="SageMaker",
        ),  # fmt: skip
        "max_runtime_hours": Param(
            6,
            type="integer",
            minimum=1,
            maximum=120,
            title="Max training hours",
            description="MaxRuntimeInSeconds; with Spot, MaxWaitTimeInSeconds is twice this.",
            section="SageMaker",
        ),  # fmt: skip
        "endpoint_instance_type": _instance("ml.c6i.xlarge", "Endpoint instance", "Serves the INT8 model."),
        "endpoint_instance_count": Param(
            1,
            type="integer",
            minimum=1,
            maximum=20,
            title="Endpoint instances",
            section="SageMaker",
            description="Instances behind the endpoint.",
        ),  # fmt: skip
        "traffic_shifting": Param(
            "canary",
            type="string",
            enum=["canary", "linear", "all_at_once"],
            title="Traffic shifting",
            description="How an update moves traffic to the new fleet (blue/green).",
            section="SageMaker",
        ),  # fmt: skip
        "traffic_step_percent": Param(
            10,
            type="integer",
            minimum=1,
            maximum=100,
            title="Traffic step %",
            description="Canary size, or each linear step, in percent of capacity.",
            section="SageMaker",
        ),  # fmt: skip
        "baking_minutes": Param(
            10,
            type="integer",
            minimum=0,
            maximum=60,
            title="Baking minutes",
            description="Watch the alarms this long after each traffic step.",
            section="SageMaker",
        ),  # fmt: skip
        "rollback_alarms": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            title="Rollback alarms",
            description="CloudWatch alarm names; one in ALARM while baking rolls the update back.",
            section="SageMaker",
        ),  # fmt: skip
        "model_approval": Param(
            "Approved",
            type="string",
            enum=["Approved", "PendingManualApproval"],
            title="Model approval",
            description="PendingManualApproval: the rollout waits until the package is approved in SageMaker.",
            section="SageMaker",
        ),  # fmt: skip
    }


CPU_PATTERN = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"  # Kubernetes CPU quantities: 2, 0.5, 500m
MEMORY_PATTERN = r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$"  # Kubernetes memory quantities: 8Gi, 512Mi


def _quantity(default: str, pattern: str, title: str, description: str, section: str = "Kubernetes") -> Param:
    return Param(default, type="string", pattern=pattern, title=title, description=description, section=section)


def eks_params() -> dict[str, Param]:
    """What only the Kubernetes platform needs: pod sizes, Intel node placement, workers, the server's rollout."""
    return {
        "step_cpu": _quantity(
            "4", CPU_PATTERN, "Step CPU", "CPU request and limit of each step's pod; the step runs as many threads."
        ),  # fmt: skip
        "step_memory": _quantity("16Gi", MEMORY_PATTERN, "Step memory", "Memory request and limit of each step."),
        "training_workers": Param(
            1,
            type="integer",
            minimum=1,
            maximum=16,
            title="Training workers",
            description="1: one pod. More: a Kubeflow TFJob, one TensorFlow worker per pod (training operator).",
            section="Kubernetes",
        ),  # fmt: skip
        "node_features": Param(
            ["feature.node.kubernetes.io/cpu-cpuid.AVX512VNNI"],
            type="array",
            items={"type": "string", "pattern": r"^[a-z0-9.-]+/[A-Za-z0-9._-]+$"},
            title="Required CPU features",
            description="Node Feature Discovery labels a node must have (value true), e.g. "
            "feature.node.kubernetes.io/cpu-cpuid.AMXBF16 for Sapphire Rapids. Empty: any node.",
            section="Kubernetes",
        ),  # fmt: skip
        "tolerations": Param(
            [],
            type="array",
            items={
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"type": "string", "enum": ["Equal", "Exists"]},
                    "value": {"type": "string"},
                    "effect": {"type": "string", "enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
                },
                "required": ["key"],
                "additionalProperties": False,
            },
            title="Tolerations",
            description='Taints of a dedicated node group the pods tolerate, e.g. [{"key": "intel", '
            '"operator": "Exists", "effect": "NoSchedule"}].',
            section="Kubernetes",
        ),  # fmt: skip
        "server_replicas": Param(
            2,
            type="integer",
            minimum=1,
            maximum=50,
            title="Server replicas",
            description="Inference pods (the autoscaler's minimum when it is on).",
            section="Kubernetes",
        ),  # fmt: skip
        "server_cpu": _quantity("2", CPU_PATTERN, "Server CPU", "CPU request and limit of each inference pod."),
        "server_memory": _quantity("4Gi", MEMORY_PATTERN, "Server memory", "Memory of each inference pod."),
        "autoscale_max_replicas": Param(
            0,
            type="integer",
            minimum=0,
            maximum=100,
            title="Autoscale up to",
            description="0: a fixed number of replicas. More: a HorizontalPodAutoscaler on CPU, up to this many.",
            section="Kubernetes",
        ),  # fmt: skip
        "rollout_timeout_minutes": Param(
            15,
            type="integer",
            minimum=1,
            maximum=120,
            title="Rollout timeout (minutes)",
            description="A rollout not complete by then is undone: the previous revision is applied again.",
            section="Kubernetes",
        ),  # fmt: skip
    }
