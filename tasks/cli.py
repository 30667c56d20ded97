"""The command line: ``python -m tasks <step> [flags]``.

A lookup table maps each step name to its argument dataclass and to the function that runs it. The
function's module is imported only when its step runs, so light steps never pay for TensorFlow; a step
given no flags gets its dataclass defaults without a flag parser (transformers' ``HfArgumentParser``), so
the image's health check and thread settings start in a tenth of a second.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields

from tasks.config import (
    CpuThreadsArguments,
    DeployLocalArguments,
    EndpointArguments,
    EvaluateArguments,
    HealthcheckArguments,
    MeasureArguments,
    QuantizeArguments,
    RegistryArguments,
    SampleArguments,
    ServeArguments,
    SmokeTestArguments,
    StageArguments,
    SummaryArguments,
    TrainArguments,
)
from tasks.errors import ConfigError, TaskError
from tasks.runtime import remote_paths, sagemaker_job, step_result

log = logging.getLogger("tasks")


@dataclass(frozen=True)
class Step:
    arguments: type
    target: str
    summary: str
    # What the step prints is its answer, read by a script (status --json, cpu-threads): its arguments are not
    # logged, and log lines go to stderr.
    quiet: bool = False

    def run(self, args) -> None:
        module, function = self.target.split(":")
        getattr(importlib.import_module(module), function)(args)


STEPS: dict[str, Step] = {
    "sample": Step(SampleArguments, "tasks.data.sample:run", "write a generated paraphrase data set in GLUE TSV form"),
    "stage": Step(StageArguments, "tasks.data.stage:run", "validate, tokenise and fingerprint a data set"),
    "train": Step(TrainArguments, "tasks.training.train:run", "fine-tune a BERT classifier on a staged data set"),
    "quantize": Step(
        QuantizeArguments,
        "tasks.compression.quantize:run",
        "quantise a trained model to INT8 with Intel Neural Compressor",
    ),
    "evaluate": Step(
        EvaluateArguments, "tasks.evaluation.evaluate:run", "score a model (and the champion) and decide promote/reject"
    ),
    "serve": Step(
        ServeArguments, "tasks.serving.server:run", "serve a model over HTTP (the SageMaker/TF Serving contract)"
    ),
    "deploy-local": Step(
        DeployLocalArguments,
        "tasks.endpoint.commands:deploy",
        "start the local endpoint, or swap a model into it with zero downtime",
    ),
    "rollback": Step(
        EndpointArguments, "tasks.endpoint.commands:rollback", "serve the local endpoint's previous model again"
    ),
    "status": Step(
        EndpointArguments, "tasks.endpoint.commands:status", "print what the local endpoint serves", quiet=True
    ),
    "smoke-test": Step(
        SmokeTestArguments, "tasks.endpoint.smoke_test:run", "check that an endpoint answers as a model should"
    ),
    "registry": Step(
        RegistryArguments,
        "tasks.endpoint.registry:run",
        "record, promote and look up models in the local registry",
        quiet=True,
    ),
    "summary": Step(SummaryArguments, "tasks.evaluation.summary:run", "print what a pipeline run produced", quiet=True),
    "stop-local": Step(
        EndpointArguments, "tasks.endpoint.commands:stop", "stop the local endpoint after in-flight requests"
    ),
    "measure": Step(
        MeasureArguments,
        "tasks.evaluation.measure:run",
        "score and time saved models in this process (quantize and evaluate run it in fresh processes)",
    ),
    "healthcheck": Step(
        HealthcheckArguments,
        "tasks.runtime.healthcheck:run",
        "the task image's HEALTHCHECK: exit 0 when this container is healthy",
        quiet=True,
    ),
    "cpu-threads": Step(
        CpuThreadsArguments,
        "tasks.runtime.cpu:print_exports",
        "print thread settings sized to this container's CPUs, as shell exports (the image's entrypoint)",
        quiet=True,
    ),
}


def _usage() -> str:
    width = max(map(len, STEPS))
    steps = "\n".join(f"  {name:<{width}}  {step.summary}" for name, step in STEPS.items())
    return f"usage: python -m tasks <step> [flags]\n\nsteps:\n{steps}\n\n`python -m tasks <step> --help` lists a step's flags."


def configure_logging(stream=None) -> None:
    """Log lines to ``stream`` (stdout unless given), at ``$TASKS_LOG_LEVEL`` (INFO); quiet the chatty libraries."""
    logging.basicConfig(
        level=os.environ.get("TASKS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=stream or sys.stdout,
        force=True,
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for noisy in ("absl", "h5py", "fsspec", "botocore", "s3fs", "urllib3", "filelock", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _every_field_has_a_default(arguments: type) -> bool:
    return all(spec.default is not MISSING or spec.default_factory is not MISSING for spec in fields(arguments))


def parse(step_name: str, argv: Sequence[str]):
    """Parse a step's flags into its argument dataclass; a bad flag is a ConfigError naming it."""
    step = STEPS[step_name]
    if not argv and _every_field_has_a_default(step.arguments):
        return step.arguments()  # what parsing no flags gives, without importing transformers
    from transformers import HfArgumentParser

    class StepParser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, field):
            """HfArgumentParser passes a field's metadata to argparse; its ``range`` is the step's own check."""
            field = copy.copy(field)
            field.metadata = {key: value for key, value in field.metadata.items() if key != "range"}
            HfArgumentParser._parse_dataclass_field(parser, field)

    parser = StepParser(step.arguments, prog=f"python -m tasks {step_name}", description=step.summary)

    def refuse(message: str):
        raise ConfigError(f"{parser.prog}: {message} (see `{parser.prog} --help`)")

    parser.error = refuse
    return step.arguments(**vars(parser.parse_args(list(argv))))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    step_name, flags = argv[0], argv[1:]
    if step_name not in STEPS:
        print(f"error: unknown step {step_name!r}; choose one of {', '.join(STEPS)}\n\n{_usage()}", file=sys.stderr)
        return 2

    step = STEPS[step_name]
    configure_logging(sys.stderr if step.quiet else sys.stdout)
    job = sagemaker_job.detect_job(step_name)
    try:
        if job is not None:
            flags = job.arguments(step_name) + flags
        args = parse(step_name, flags)
        if not step.quiet:
            log.info("%s: %s", step_name, args)
        requested_output = getattr(args, "output", "")
        with remote_paths.local_arguments(args):
            step.run(args)
            step_result.write_result(step_name, args, requested_output)
    except TaskError as error:
        log.error("%s failed: %s", step_name, error)
        print(f"error: {error}", file=sys.stderr)
        if job is not None:
            job.report_failure(error)
        return error.exit_code
    except Exception as error:
        if job is not None:
            job.report_failure(error)
        raise
    return 0
