"""The SageMaker container contract (training and processing jobs), translated into a step's flags.

SageMaker starts a training container with the single argument ``train`` and describes the job in files:
hyper-parameters (all values are strings) in ``input/config/hyperparameters.json``, the hosts of a
multi-instance job in ``input/config/resourceconfig.json``, one folder per data channel under
``input/data/``. The model must land in ``model/``; on failure the reason goes to ``output/failure``. TensorBoard
events are written to ``output/tensorboard``, which the job's ``TensorBoardOutputConfig`` uploads while it runs.
A processing container gets the step and its flags as arguments, its inputs under ``PROCESSING_INPUT`` and
its output folder ``PROCESSING_OUTPUT`` (``ProcessingJob``). The root is ``/opt/ml``, or
``$TASKS_SAGEMAKER_ROOT`` so tests can point it at a temporary folder.

Only the standard library and ``tasks.errors`` are imported: the Airflow side's request builder imports the
layout constants.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import ConfigError, failure_reason

log = logging.getLogger(__name__)

ROOT_ENV = "TASKS_SAGEMAKER_ROOT"
DEFAULT_ROOT = "/opt/ml"
# Where SageMaker mounts a processing job's inputs (PROCESSING_INPUT/NAME, one folder per ProcessingInput) and
# collects its output (PROCESSING_OUTPUT, uploaded to S3 when the job ends).
PROCESSING = f"{DEFAULT_ROOT}/processing"
PROCESSING_INPUT = f"{PROCESSING}/input"
PROCESSING_OUTPUT = f"{PROCESSING}/output"
# Where a training job's TensorBoardOutputConfig (LocalPath) uploads TensorBoard events from while it runs.
TENSORBOARD_OUTPUT = f"{DEFAULT_ROOT}/output/tensorboard"
# SageMaker's TensorFlow containers use this port for the workers of a MultiWorkerMirroredStrategy job.
WORKER_PORT = int(os.environ.get("TASKS_WORKER_PORT", "8890"))
# The hyper-parameters file also carries keys the SageMaker Python SDK adds for its own containers, and a tuning job
# adds keys SageMaker reserves for itself (``_tuning_objective_metric``).
_IGNORED_KEY_PREFIXES = ("sagemaker_", "_")
# How a switch's hyper-parameter value says on or off (SageMaker hands every value over as a string).
_SWITCH_VALUES = {"true": True, "false": False}
# SageMaker keeps the first 1024 characters of output/failure as the job's FailureReason.
_FAILURE_REASON_LIMIT = 1024


def write_failure(path: Path, error: BaseException) -> None:
    """The ``failure_reason`` (``Class (exit N): message``) SageMaker shows as the job's reason. The exit code
    tells the caller whether a retry can help: 2 (bad flag) and 3 (bad data) fail the same way again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(failure_reason(error)[:_FAILURE_REASON_LIMIT])


def _train_switches() -> frozenset[str]:
    """train's bool flags: a switch takes no value (tasks/cli.py), so ``"True"`` is the flag alone."""
    import dataclasses
    import typing

    from tasks.config import TrainArguments as arguments

    hints = typing.get_type_hints(arguments)
    return frozenset(spec.name for spec in dataclasses.fields(arguments) if hints[spec.name] is bool)


@dataclass(frozen=True)
class TrainingJob:
    root: Path

    @classmethod
    def detect(cls) -> TrainingJob | None:
        """The running SageMaker training job, or None outside one."""
        job = cls(Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT)))
        return job if job.hyperparameters_file.is_file() else None

    @property
    def hyperparameters_file(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def resource_config_file(self) -> Path:
        return self.root / "input" / "config" / "resourceconfig.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "input" / "data"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoint_dir(self) -> Path:
        # The local path of the job's CheckpointConfig, synced to S3 by SageMaker.
        return self.root / "checkpoints"

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / Path(TENSORBOARD_OUTPUT).relative_to(DEFAULT_ROOT)

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "failure"

    def _read_json(self, path: Path) -> dict:
        try:
            payload = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: cannot read SageMaker job file: {error}") from error
        if not isinstance(payload, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(payload).__name__}")
        return payload

    def hyperparameters(self) -> dict[str, str]:
        """Hyper-parameters as strings; values the SageMaker SDK JSON-encoded (``"\\"x\\""``) are decoded."""
        result = {}
        for key, value in self._read_json(self.hyperparameters_file).items():
            if key.startswith(_IGNORED_KEY_PREFIXES):
                log.info("ignoring SageMaker's hyper-parameter %s", key)
                continue
            value = str(value)
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = value
            result[key] = decoded if isinstance(decoded, str) else value
        return result

    def arguments(self, step: str = "train") -> list[str]:
        """The train step's flags for this job; hyper-parameters come last so they win."""
        flags = [
            "--data",
            str(self.data_dir),
            "--output",
            str(self.model_dir),
            "--checkpoint-dir",
            str(self.checkpoint_dir),
            "--tensorboard-dir",
            str(self.tensorboard_dir),
        ]
        hyperparameters = self.hyperparameters()
        if "model" not in hyperparameters and (self.data_dir / "model").is_dir():
            flags += ["--model", str(self.data_dir / "model")]
        switches = _train_switches()
        for key, value in hyperparameters.items():
            flag = f"--{key.replace('_', '-')}"
            if key in switches and value.lower() in _SWITCH_VALUES:
                flags += [flag] if _SWITCH_VALUES[value.lower()] else []
            else:
                flags += [flag, value]
        self.export_tf_config()
        log.info("SageMaker training job under %s: %s", self.root, " ".join(flags))
        return flags

    def export_tf_config(self) -> None:
        """Describe a multi-instance job to TensorFlow as ``TF_CONFIG`` (one worker per host)."""
        if "TF_CONFIG" in os.environ or not self.resource_config_file.is_file():
            return
        config = self._read_json(self.resource_config_file)
        hosts, current = config.get("hosts"), config.get("current_host")
        if not isinstance(hosts, list) or current not in hosts:
            raise ConfigError(
                f"{self.resource_config_file}: needs 'hosts' (a list) and 'current_host' (one of them), got {config}"
            )
        if len(hosts) > 1:
            tf_config = {
                "cluster": {"worker": [f"{host}:{WORKER_PORT}" for host in sorted(hosts)]},
                "task": {"type": "worker", "index": sorted(hosts).index(current)},
            }
            os.environ["TF_CONFIG"] = json.dumps(tf_config)
            log.info("multi-instance job: TF_CONFIG=%s", os.environ["TF_CONFIG"])

    def report_failure(self, error: BaseException) -> None:
        """Write the reason SageMaker shows as the job's FailureReason."""
        write_failure(self.failure_file, error)


# The processing steps whose flags name every input and output (URIs read and written by the step itself).
_OWN_PATHS = ("stage", "monitor")


@dataclass(frozen=True)
class ProcessingJob:
    """The SageMaker processing-container contract for the ``stage``, ``quantize``, ``evaluate`` and ``monitor`` steps.

    SageMaker describes the job in ``config/processingjobconfig.json`` and mounts each ``ProcessingInput``
    at the local path the job names, all under ``PROCESSING``. The pipeline's jobs use the layout below;
    flags given as ``ContainerArguments`` come after these defaults, so they win::

        PROCESSING_INPUT/model/      the trained model (a folder, or the training job's model.tar.gz)
        PROCESSING_INPUT/data/       the staged data set
        PROCESSING_INPUT/champion/   evaluate only, optional: the model in production
        PROCESSING_OUTPUT/           uploaded to S3 when the job ends

    ``stage`` and ``monitor`` read their inputs from URIs, so they get no default paths: their flags name them all.
    On failure the reason goes to ``output/message``, which SageMaker shows as the job's ExitMessage.
    """

    root: Path

    @classmethod
    def detect(cls) -> ProcessingJob | None:
        job = cls(Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT)))
        return job if (job.root / "config" / "processingjobconfig.json").is_file() else None

    def _in_root(self, path: str) -> Path:
        """``path``, a place under ``DEFAULT_ROOT``, under this job's root (a temporary folder in tests)."""
        return self.root / Path(path).relative_to(DEFAULT_ROOT)

    @property
    def input_dir(self) -> Path:
        return self._in_root(PROCESSING_INPUT)

    @property
    def output_dir(self) -> Path:
        return self._in_root(PROCESSING_OUTPUT)

    @property
    def failure_file(self) -> Path:
        return self.root / "output" / "message"

    def arguments(self, step: str) -> list[str]:
        if step in _OWN_PATHS:
            return []
        flags = ["--model", str(self.input_dir / "model"), "--data", str(self.input_dir / "data")]
        flags += ["--output", str(self.output_dir)]
        if step == "evaluate" and (self.input_dir / "champion").is_dir():
            flags += ["--champion", str(self.input_dir / "champion")]
        log.info("SageMaker processing job under %s: %s", self.root, " ".join(flags))
        return flags

    def report_failure(self, error: BaseException) -> None:
        write_failure(self.failure_file, error)


def detect_job(step: str) -> TrainingJob | ProcessingJob | None:
    """The SageMaker job this step runs in, if any: training for ``train``, processing for the others."""
    if step == "train":
        return TrainingJob.detect()
    if step in ("quantize", "evaluate", *_OWN_PATHS):
        return ProcessingJob.detect()
    return None
