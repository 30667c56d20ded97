"""``tune plan``: the search's trials, drawn from the seed, written to ``DIR/plan.json``.

A plan names each trial (``trial-000``, ...) and its setting; the trials then write to ``DIR/trials/<name>/`` and
share ``DIR/scores/`` for early stopping, wherever they run (one after another here, mapped tasks, pods).
"""

from __future__ import annotations

import logging

from tasks.config import TuneArguments
from tasks.errors import ConfigError
from tasks.tuning import files, space

log = logging.getLogger(__name__)

PLAN = "plan.json"
TRIALS = "trials"
SCORES = "scores"
OBJECTIVE = "validation accuracy"


def trial_name(index: int) -> str:
    return f"trial-{index:03d}"


def make(args: TuneArguments) -> dict:
    """The plan of ``args``' search; the same arguments give the same plan."""
    search_space = space.space(args)
    settings = space.sample(search_space, args.trials, args.seed)
    return {
        "seed": args.seed,
        "objective": OBJECTIVE,
        "max_steps": args.max_steps,
        "early_stopping": args.early_stopping,
        "space": search_space,
        "trials": [{"name": trial_name(index), "setting": setting} for index, setting in enumerate(settings)],
    }


def check_folder(folder: str, plan: dict) -> None:
    """A folder may hold this search (planned again: its finished trials are kept), never another."""
    existing = files.read_json(files.join(folder, PLAN))
    if existing is not None and existing != plan:
        raise ConfigError(
            f"--output {folder} holds another search's {PLAN} (other ranges, seed, budget or trials):"
            " give this search a new folder"
        )


def run(args: TuneArguments) -> dict:
    plan = make(args)
    check_folder(args.output, plan)
    files.write_json_whole(files.join(args.output, PLAN), plan)
    log.info("planned %d trial(s) in %s (seed %d)", len(plan["trials"]), args.output, args.seed)
    return plan
