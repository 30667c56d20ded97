"""DAG parse time: each DAG file against an empty DAG file importing the same operators.

Each file is parsed in a fresh interpreter (as the dag-processor does), ``--repeats`` times; the time is
from the first import of the file to its DAG being built, with ``airflow.sdk`` already imported in both
(equal for every DAG). Prints the medians and the ratio per DAG file. Target: at most 1.2x the empty file.
Usage: ``python bench/dag_parse.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from steps import REPO

EMPTY_DAG = """
import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, Variable, task

with DAG("empty", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    pass
"""
PROBE = """
import runpy, sys, time
sys.path.insert(0, {plugins!r})
import airflow.sdk
started = time.perf_counter()
runpy.run_path({path!r})
print(time.perf_counter() - started)
"""


def parse_seconds(path: Path, repeats: int) -> float:
    probe = PROBE.format(plugins=str(REPO / "plugins"), path=str(path))
    times = [
        float(
            subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.split()[-1]
        )
        for _ in range(repeats)
    ]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        empty = Path(work) / "empty_dag.py"
        empty.write_text(EMPTY_DAG)
        baseline = parse_seconds(empty, options.repeats)
    print(f"{'DAG file':<24} {'parse ms':>9} {'ratio':>6}   (median of {options.repeats} fresh interpreters)")
    print(f"{'empty DAG, same imports':<24} {baseline * 1e3:>9.1f} {1:>6.2f}")
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        seconds = parse_seconds(dag_file, options.repeats)
        print(f"{dag_file.name:<24} {seconds * 1e3:>9.1f} {seconds / baseline:>6.2f}")


if __name__ == "__main__":
    main()
