"""``python -m tasks tune ACTION``: a random search over train's hyper-parameters.

plan (tasks/tuning/plan.py) draws the trials from the seed; a platform trains each one (``train --score-only``,
with ``--max-steps`` and ``--early-stopping-dir``); select (tasks/tuning/results.py) writes the best setting to
tuning.json, which the final training takes (``train --tuning``). run (tasks/tuning/search.py) does all three here.
"""

from __future__ import annotations

import json

from tasks.config import TuneArguments

# action -> "module:function", imported when the action runs.
ACTIONS = {
    "plan": "tasks.tuning.plan:run",
    "select": "tasks.tuning.results:select",
    "run": "tasks.tuning.search:run",
}


def run(args: TuneArguments) -> None:
    """Run the action and print its result (plan.json or tuning.json) as one JSON line on stdout."""
    import importlib

    module, function = ACTIONS[args.action].split(":")
    result = getattr(importlib.import_module(module), function)(args)
    print(json.dumps(result, sort_keys=True), flush=True)
