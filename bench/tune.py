"""Hyper-parameter tuning against BERT-base's defaults, on generated paraphrase data, in one run.

Samples and stages ``--train-size`` generated pairs, trains the base model (default: the packaged
all-MiniLM-L6-v2) with BERT-base's fine-tuning defaults (tasks/training/defaults.py DEFAULTS["base"]) and with the
pipeline's default for the model (no hyper-parameter flag: the by-size default), then runs ``python -m tasks tune
run`` with ``--trials`` trials (each a ``train --score-only`` subprocess, stopped early when below the median of the
others). Prints the CPU and its ISA flags, both defaults' validation accuracy, F1 and time, each trial's setting,
score and training time, the best setting, tuned against default, and the total time.

The best setting is always trained again (``train --tuning``) under another seed (seed + 1), and that run is the
tuned figure. It is scored on the same validation split the trials were selected on, so it flatters the tuned
setting somewhat; the output says so.

The small-model defaults of tasks/training/defaults.py come from this benchmark's output (the README says which
settings reached which accuracy on which data and CPU).

Usage: ``python bench/tune.py [--trials 6] [--seed 42] [--max-steps N] [--model DIR] [--train-size 2000]
[--work DIR]``. On an AVX2-only CPU (fp32, 13-16 samples/s) the default run alone takes about 7 minutes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from steps import packaged_minilm, print_hardware, tasks

from tasks.training.defaults import DEFAULTS
from tasks.tuning.space import describe

# BERT-base's fine-tuning defaults: what a run of this pipeline used before defaults by model size.
BERT_BASE_DEFAULTS = DEFAULTS["base"]


def flags(**options) -> list[str]:
    return [part for name, value in options.items() for part in (f"--{name.replace('_', '-')}", str(value))]


def scores(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def timed_train(*arguments: str) -> float:
    """Seconds ``train --score-only ARGUMENTS`` took, its process start included."""
    started = time.monotonic()
    tasks("train", *arguments, "--score-only")
    return time.monotonic() - started


def line(label: str, metrics: dict, seconds: float) -> str:
    return f"{label}: validation accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}, {seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6, help="trials of the search (default 6)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the data, the search and every training")
    parser.add_argument("--max-steps", type=int, default=0, help="steps per trial at most (default 0: full epochs)")
    parser.add_argument("--model", default=None, help="base model (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--train-size", type=int, default=2000, help="generated training pairs (default 2000)")
    parser.add_argument("--dev-size", type=int, default=300, help="generated validation pairs (default 300)")
    parser.add_argument("--work", default=None, help="keep the data, runs and search here (default: a temporary one)")
    options = parser.parse_args()
    started = time.monotonic()
    print_hardware()
    model = options.model or packaged_minilm()

    with tempfile.TemporaryDirectory(prefix="bench-tune-") as scratch:
        work = Path(options.work or scratch).resolve()
        raw, staged = work / "raw", work / "staged"
        sample = flags(output=raw, seed=options.seed, train_size=options.train_size, dev_size=options.dev_size)
        tasks("sample", *sample, "--test-size", "10")
        tasks("stage", *flags(source=raw, output=staged, tokenizer=model))
        print(
            f"data: {options.train_size} train / {options.dev_size} validation generated pairs (seed {options.seed});"
            f" model {model}",
            flush=True,
        )

        default_folder = work / "default"
        folders = flags(data=staged, model=model, output=default_folder, seed=options.seed)
        default_seconds = timed_train(*folders, *flags(**BERT_BASE_DEFAULTS))
        default = scores(default_folder)
        print(line(f"BERT-base's defaults ({describe(BERT_BASE_DEFAULTS)})", default, default_seconds), flush=True)
        pipeline_folder = work / "pipeline-default"
        pipeline_seconds = timed_train(*flags(data=staged, model=model, output=pipeline_folder, seed=options.seed))
        pipeline = scores(pipeline_folder)
        print(line("the pipeline's default for this model (by size)", pipeline, pipeline_seconds), flush=True)

        search = work / "search"
        search_flags = flags(
            data=staged,
            model=model,
            output=search,
            trials=options.trials,
            seed=options.seed,
            max_steps=options.max_steps,
        )
        print(
            f"search: {options.trials} trials, seed {options.seed}, "
            + (f"at most {options.max_steps} steps each" if options.max_steps else "full epochs")
            + ", early stopping auto",
            flush=True,
        )
        search_started = time.monotonic()
        tasks("tune", "run", *search_flags)
        search_seconds = time.monotonic() - search_started
        tuning = json.loads((search / "tuning.json").read_text())
        for trial in tuning["trials"]:
            metrics_file = search / "trials" / trial["name"] / "metrics.json"
            seconds = json.loads(metrics_file.read_text())["wall_time_seconds"] if metrics_file.is_file() else None
            score = (
                f"accuracy {trial['accuracy']:.4f}, F1 {trial['f1']:.4f}"
                if trial["accuracy"] is not None
                else "no score"
            )
            stopped = f" after epoch {trial['epochs_run']}" if trial["stopped_early"] else ""
            timing = f", {seconds:.0f} s training" if seconds is not None else ""
            print(f"  {trial['name']}  {describe(trial['setting'])}: {score} ({trial['status']}{stopped}{timing})")
        best = tuning["best"]
        print(
            f"best: {best['name']} ({describe(best['setting'])}); search {search_seconds:.0f} s (a trial's time is"
            " its training's wall time, without its process start; the defaults' times include it)",
            flush=True,
        )

        final = work / "tuned"
        tuned_flags = flags(
            data=staged, model=model, output=final, seed=options.seed + 1, tuning=search / "tuning.json"
        )
        tuned_seconds = timed_train(*tuned_flags)
        tuned = scores(final)
        print(
            line(f"tuned (the best setting trained again in full, seed {options.seed + 1})", tuned, tuned_seconds)
            + "; scored on the validation split the trials were selected on",
            flush=True,
        )

    accuracy_ratio = tuned["accuracy"] / default["accuracy"]
    print(
        f"tuned vs default: accuracy {tuned['accuracy']:.4f} vs {default['accuracy']:.4f} ({accuracy_ratio:.3f}x,"
        f" {tuned['accuracy'] - default['accuracy']:+.4f}), F1 {tuned['f1']:.4f} vs {default['f1']:.4f}"
        f" ({tuned['f1'] - default['f1']:+.4f})"
    )
    print(
        f"pipeline default vs BERT-base's: accuracy {pipeline['accuracy']:.4f} vs {default['accuracy']:.4f}"
        f" ({pipeline['accuracy'] - default['accuracy']:+.4f})"
    )
    print(f"total time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
