"""``tune run``: a whole search on this machine: plan, every trial one after another, select.

Each trial is ``python -m tasks train`` in a subprocess, the command a platform builds for a trial
(``trial_arguments``), writing to ``DIR/trials/<name>/`` and its log to ``DIR/logs/<name>.log``. A trial that
already wrote its scores (a search run again after an interruption) is not trained again.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

from tasks.config import EARLY_STOPPING_AUTO, TRAINING_METRICS, TuneArguments
from tasks.data.splits import read_manifest
from tasks.errors import ConfigError
from tasks.runtime.remote_paths import is_remote
from tasks.tuning import files, plan, results, space

log = logging.getLogger(__name__)

LOGS = "logs"
# The data and model of the search in its folder (tune run's inputs, which plan.json does not name).
SEARCH = "search.json"
_LOG_TAIL_LINES = 20


def trial_arguments(args: TuneArguments, trial: dict) -> list[str]:
    """What follows ``python -m tasks`` to train ``trial`` of the search in ``args.output``."""
    folder = files.join(args.output, plan.TRIALS, trial["name"])
    flags = {"data": args.data, "model": args.model, "output": folder, "seed": args.seed, "max_steps": args.max_steps}
    flags |= trial["setting"]
    if args.early_stopping == EARLY_STOPPING_AUTO:
        flags["early_stopping_dir"] = files.join(args.output, plan.SCORES)
    command = ["train", "--score-only"]
    for name, value in flags.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])


def _check_inputs(args: TuneArguments) -> None:
    """Record the data (its manifest's fingerprint) and model of the search in ``SEARCH``; a folder holding a search
    of other data or another model is refused (plan.json alone is the same for both)."""
    inputs = {"data": read_manifest(Path(args.data))["fingerprint"], "model": args.model}
    location = files.join(args.output, SEARCH)
    existing = files.read_json(location)
    if existing is not None and existing != inputs:
        raise ConfigError(
            f"--output {args.output} holds a search of other data or another model ({SEARCH}: {existing}, this"
            f" search: {inputs}): give this search a new folder"
        )
    files.write_json_whole(location, inputs)


def run(args: TuneArguments) -> dict:
    if is_remote(args.output):
        raise ConfigError(f"--output must be a local folder for `tune run` (its trials run here), got {args.output}")
    planned = plan.run(args)
    _check_inputs(args)
    trials, started, trained = planned["trials"], time.monotonic(), 0
    (Path(args.output) / LOGS).mkdir(parents=True, exist_ok=True)
    for index, trial in enumerate(trials, start=1):
        name, metrics_file = trial["name"], Path(args.output) / plan.TRIALS / trial["name"] / TRAINING_METRICS
        prefix = f"trial {index}/{len(trials)} ({name}: {space.describe(trial['setting'])})"
        if metrics_file.is_file():
            log.info("%s: scored by an earlier run of this search, kept", prefix)
            continue
        log.info("%s: training", prefix)
        trial_started = time.monotonic()
        log_file = Path(args.output) / LOGS / f"{name}.log"
        with log_file.open("w") as output:
            command = [sys.executable, "-m", "tasks", *trial_arguments(args, trial)]
            finished = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
        trained += 1
        elapsed = time.monotonic() - trial_started
        remaining = (time.monotonic() - started) / trained * (len(trials) - index)
        if finished.returncode != 0:
            log.warning(
                "%s failed (exit %d) after %s; ETA %s; the end of %s:\n%s",
                prefix,
                finished.returncode,
                _duration(elapsed),
                _duration(remaining),
                log_file,
                _tail(log_file),
            )
            continue
        scores = results.outcome(trial, files.read_json(str(metrics_file)))
        log.info(
            "%s: validation accuracy %.4f, F1 %.4f%s in %s; ETA %s",
            prefix,
            scores["accuracy"],
            scores["f1"],
            f" (stopped early after epoch {scores['epochs_run']})" if scores["stopped_early"] else "",
            _duration(elapsed),
            _duration(remaining),
        )
    return results.select(args)
