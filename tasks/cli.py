"""The command line: ``python -m tasks <step> [flags]``.

A lookup table maps each step name to its argument dataclass and to the function that runs it. The
function's module is imported only when its step runs, so light steps never pay for TensorFlow; a step
given no flags gets its dataclass defaults without a flag parser (transformers' ``HfArgumentParser``), so
the image's health check and thread settings start in a tenth of a second.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import os
import sys
from argparse import BooleanOptionalAction
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields

from tasks.config import (
    REGISTRY_VERSION_ACTIONS,
    CpuThreadsArguments,
    DeployLocalArguments,
    EndpointArguments,
    EvaluateArguments,
    GcArguments,
    HealthcheckArguments,
    MeasureArguments,
    MonitorArguments,
    QuantizeArguments,
    RegistryArguments,
    SampleArguments,
    ServeArguments,
    SmokeTestArguments,
    StageArguments,
    SummaryArguments,
    TrainArguments,
    TuneArguments,
)
from tasks.errors import ConfigError, TaskError
from tasks.runtime import indexed_job, remote_paths, sagemaker_job, step_result

log = logging.getLogger("tasks")


@dataclass(frozen=True)
class Step:
    arguments: type
    target: str
    summary: str
    # What the step prints is its answer, read by a script (status --json, cpu-threads): its arguments are not
    # logged, and log lines go to stderr.
    quiet: bool = False
    # Fields whose value may also be given as a word, in order: ``registry show V`` is
    # ``registry --action show --version V``. The flags stay, for the commands the pipeline builds.
    words: tuple[str, ...] = ()
    # The first words after which the later words may follow (``registry show`` takes a version, ``list``
    # nothing); empty: any.
    words_after: tuple[str, ...] = ()

    def run(self, args) -> None:
        module, function = self.target.split(":")
        getattr(importlib.import_module(module), function)(args)


STEPS: dict[str, Step] = {
    "sample": Step(SampleArguments, "tasks.data.sample:run", "write a generated paraphrase data set in GLUE TSV form"),
    "stage": Step(StageArguments, "tasks.data.stage:run", "validate, tokenise and fingerprint a data set"),
    "train": Step(TrainArguments, "tasks.training.train:run", "fine-tune a BERT classifier on a staged data set"),
    "tune": Step(
        TuneArguments,
        "tasks.tuning:run",
        "search train's hyper-parameters: plan trials, select the best, or run a whole search",
        quiet=True,
        words=("action",),
    ),
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
    "monitor": Step(
        MonitorArguments,
        "tasks.monitoring.monitor:run",
        "compare a window of captured traffic with the model's traffic baseline: ok, drift or not enough data",
    ),
    "smoke-test": Step(
        SmokeTestArguments, "tasks.endpoint.smoke_test:run", "check that an endpoint answers as a model should"
    ),
    "registry": Step(
        RegistryArguments,
        "tasks.endpoint.registry:run",
        "list, show, record and promote models in the model registry",
        quiet=True,
        words=("action", "version"),
        words_after=REGISTRY_VERSION_ACTIONS,
    ),
    "summary": Step(SummaryArguments, "tasks.evaluation.summary:run", "print what a pipeline run produced", quiet=True),
    "stop-local": Step(
        EndpointArguments, "tasks.endpoint.commands:stop", "stop the local endpoint after in-flight requests"
    ),
    "gc": Step(
        GcArguments,
        "tasks.runtime.housekeeping:run",
        "remove artefacts, workspace runs and cached models no registry entry needs, older than N days",
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


# What argparse's add_argument takes from a field's metadata; the rest (a field's ``range``) is for the step's checks.
_ARGPARSE_KEYWORDS = frozenset(
    {"action", "nargs", "const", "default", "type", "choices", "required", "help", "metavar"}
)


def _every_field_has_a_default(arguments: type) -> bool:
    return all(spec.default is not MISSING or spec.default_factory is not MISSING for spec in fields(arguments))


def _is_snake_twin(name: str, names: Sequence[str]) -> bool:
    return name.startswith("--") and "_" in name and name.replace("_", "-") in names


@functools.cache
def _step_parser() -> type:
    """transformers' ``HfArgumentParser`` (imported only when a step has flags to parse), with one spelling per flag."""
    from transformers import HfArgumentParser
    from transformers.hf_argparser import string_to_bool

    class StepParser(HfArgumentParser):
        """Help, usage and errors name each flag once, in kebab case (``--max-seq-length``). The snake-case
        spelling HfArgumentParser also adds (``--max_seq_length``) still parses, for commands written before,
        but is not shown. Only argparse's keywords of a field's metadata reach argparse. A bool field is a
        plain switch: HfArgumentParser's optional value would take the word after it (``--json list``)."""

        def add_argument(self, *names, **keywords):
            if keywords.get("type") is string_to_bool:
                keywords = {k: v for k, v in keywords.items() if k not in ("type", "nargs", "const")}
                # A bool that may be not given (None: decided later) can be said off too (--no-capture-text).
                keywords["action"] = "store_true" if keywords.get("default") is not None else BooleanOptionalAction
            action = super().add_argument(*names, **{k: v for k, v in keywords.items() if k in _ARGPARSE_KEYWORDS})
            shown = [name for name in action.option_strings if not _is_snake_twin(name, action.option_strings)]
            action.option_strings = shown  # the parser still knows every spelling it was given
            return action

    return StepParser


def _closest(unknown: str, choices: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(unknown, choices, n=1)
    return matches[0] if matches else None


def _words(step_name: str, step: Step, words: Sequence[str], refuse) -> dict[str, str]:
    """The values ``words`` (what is not a flag, wherever it stands) give the step's ``words`` fields; a word
    the step does not take is refused, naming it and the words before it."""
    takes = len(step.words)
    if words and step.words_after and words[0] not in step.words_after:
        takes = min(takes, 1)
    if len(words) > takes:
        if not step.words:
            refuse(f"unrecognized arguments: {' '.join(words)}")
        before = " ".join(words[:takes]) or step_name
        refuse(f"unexpected word {words[takes]!r} after {before}; usage: {_word_usage(step_name, step)}")
    return dict(zip(step.words, words, strict=False))


def _word_usage(step_name: str, step: Step) -> str:
    """``python -m tasks registry [ACTION [VERSION]] [flags]``, and what the words stand for."""
    words = "".join(f" [{name.upper()}" for name in step.words) + "]" * len(step.words)
    flags = ", ".join(f"{name.upper()} for --{name.replace('_', '-')}" for name in step.words)
    return f"python -m tasks {step_name}{words} [flags] ({flags})"


def parse(step_name: str, argv: Sequence[str]):
    """Parse a step's words and flags into its argument dataclass; a bad flag is a ConfigError naming it.

    Flags are never abbreviated: ``--epoch`` is not ``--epochs``, it is refused with the flag it resembles.
    """
    step = STEPS[step_name]
    prog = f"python -m tasks {step_name}"

    def refuse(message: str):
        raise ConfigError(f"{prog}: {message} (see `{prog} --help`)")

    if not any(argument.startswith("-") for argument in argv) and _every_field_has_a_default(step.arguments):
        # What parsing no flags gives, without importing transformers.
        return step.arguments(**_words(step_name, step, argv, refuse))
    description = f"{step.summary}. Usage: {_word_usage(step_name, step)}" if step.words else step.summary
    parser = _step_parser()(step.arguments, prog=prog, description=description, allow_abbrev=False)
    parser.error = refuse
    namespace, unknown = parser.parse_known_args(argv)
    flag = next((argument.split("=", 1)[0] for argument in unknown if argument.startswith("-")), "")
    if flag:
        known = [name for action in parser._actions for name in action.option_strings]
        resembled = _closest(flag, known)
        hint = f"; did you mean {resembled}?" if resembled else ""
        refuse(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    words = _words(step_name, step, unknown, refuse)
    for name in words:
        flag = f"--{name.replace('_', '-')}"
        if any(argument.split("=", 1)[0] in (flag, f"--{name}") for argument in argv):
            refuse(f"{name.upper()} given twice, as a word ({words[name]!r}) and as {flag}")
    return step.arguments(**(vars(namespace) | words))


def _unknown_step(name: str) -> str:
    resembled = _closest(name, list(STEPS))
    if resembled:
        return f"error: unknown step {name!r}; did you mean {resembled!r}?"
    return f"error: unknown step {name!r}; choose one of {', '.join(STEPS)}\n\n{_usage()}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    step_name, flags = argv[0], argv[1:]
    if step_name not in STEPS:
        print(_unknown_step(step_name), file=sys.stderr)
        return 2

    step = STEPS[step_name]
    configure_logging(sys.stderr if step.quiet else sys.stdout)
    job = sagemaker_job.detect_job(step_name)
    try:
        if job is not None:
            flags = job.arguments(step_name) + flags
        indexed_job.export_tf_config()  # a worker of a Kubernetes Indexed Job: TF_CONFIG from its index
        args = parse(step_name, flags)
        if not step.quiet:
            log.info("%s: %s", step_name, args)
        requested_output = getattr(args, "output", "")
        with remote_paths.local_arguments(args):
            step.run(args)
            step_result.write_result(step_name, args, requested_output)
    except TaskError as error:
        # Once, to stderr, after what the step printed: a caller reading the last line gets the reason.
        sys.stdout.flush()
        print(f"error: {error}", file=sys.stderr)
        if job is not None:
            job.report_failure(error)
        return error.exit_code
    except Exception as error:
        if job is not None:
            job.report_failure(error)
        raise
    return 0
