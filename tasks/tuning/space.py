"""The search space of ``tune``: train's five hyper-parameters, each with its scale, and the seeded draw of trials.

One table (``DIMENSIONS``) says which train flag each dimension sets, which tune flag gives its range and how it
is drawn, so the plan, the SageMaker ranges and the report read the same facts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tasks.config import TuneArguments

# How a dimension is drawn: log-uniform, uniform, a uniform integer, or one of a list.
LOG, LINEAR, INTEGER, CHOICE = "log", "linear", "integer", "choice"
# The plan's setting rounds a drawn number to this many significant digits: the same value in the plan, on the
# train command line and in SageMaker's string hyper-parameters.
SIGNIFICANT_DIGITS = 4


@dataclass(frozen=True)
class Dimension:
    name: str  # train's flag (TrainArguments field) it sets
    range_flag: str  # tune's flag (TuneArguments field) that gives its range or values
    kind: str


DIMENSIONS = (
    Dimension("learning_rate", "learning_rate_range", LOG),
    Dimension("epochs", "epochs_range", INTEGER),
    Dimension("batch_size", "batch_sizes", CHOICE),
    Dimension("warmup_ratio", "warmup_ratio_range", LINEAR),
    Dimension("weight_decay", "weight_decay_range", LINEAR),
)


def describe(setting: dict) -> str:
    """A setting in one line, its dimensions in DIMENSIONS' order: ``learning_rate 0.0001, epochs 3, ...``."""
    order = [dimension.name for dimension in DIMENSIONS]
    names = sorted(setting, key=lambda name: (order.index(name) if name in order else len(order), name))
    return ", ".join(f"{name} {setting[name]:g}" for name in names)


def space(args: TuneArguments) -> dict:
    """The plan's ``space``: each dimension's type and its range (``[LO, HI]``) or ``values``."""
    found = {}
    for dimension in DIMENSIONS:
        given = list(getattr(args, dimension.range_flag))
        found[dimension.name] = (
            {"type": CHOICE, "values": given} if dimension.kind == CHOICE else {"type": dimension.kind, "range": given}
        )
    return found


def _rounded(value: float, low: float, high: float) -> float:
    """``value`` to SIGNIFICANT_DIGITS, kept within [low, high] (rounding may step past a bound of more digits)."""
    return min(max(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), low), high)


def _draw(generator, kind: str, spec: dict):
    if kind == CHOICE:
        return int(spec["values"][generator.integers(len(spec["values"]))])
    low, high = spec["range"]
    if kind == INTEGER:
        return int(generator.integers(low, high + 1))
    if kind == LOG:
        return _rounded(math.exp(generator.uniform(math.log(low), math.log(high))), low, high)
    return _rounded(generator.uniform(low, high), low, high)


def sample(search_space: dict, trials: int, seed: int) -> list[dict]:
    """``trials`` settings drawn with numpy's ``Generator(PCG64(seed))``: the same seed, the same settings."""
    import numpy as np

    generator = np.random.Generator(np.random.PCG64(seed))
    return [{name: _draw(generator, spec["type"], spec) for name, spec in search_space.items()} for _ in range(trials)]
