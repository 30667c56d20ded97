"""DAG parse time: each DAG file against an empty DAG file importing the same operators.

A third reference separates what Airflow itself costs from what this project adds: a plain DAG of the same
shape (the 17 pipeline Params, 11 ``@task`` and 2 ``@task.branch`` no-ops and one ApprovalOperator, the
same schedule), whose ratio to the empty file is the floor any 13-task DAG with these Params has.
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
SAME_SHAPE_DAG = """
import pendulum
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, task
from nlp_pipeline.params import pipeline_params


@task
def step():
    pass


@task.branch
def branch():
    return "none"


schedule = AssetOrTimeSchedule(timetable=CronTriggerTimetable("@weekly", timezone="UTC"), assets=[Asset(name="a")])
with DAG("same_shape", schedule=schedule, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), params=pipeline_params(),
         default_args={"owner": "mlops", "retries": 2}, catchup=False, max_active_runs=1) as dag:
    tasks = [step.override(task_id=f"step_{i}")() for i in range(11)]
    tasks += [branch.override(task_id=f"branch_{i}")() for i in range(2)]
    tasks.append(ApprovalOperator(task_id="approve", subject="s"))
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
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
        empty, same_shape = Path(work) / "empty_dag.py", Path(work) / "same_shape_dag.py"
        empty.write_text(EMPTY_DAG)
        same_shape.write_text(SAME_SHAPE_DAG)
        baseline, floor = parse_seconds(empty, options.repeats), parse_seconds(same_shape, options.repeats)
    print(
        f"{'DAG file':<28} {'parse ms':>9} {'vs empty':>9} {'vs same shape':>14}   (median of {options.repeats} fresh interpreters)"
    )
    for name, seconds in [("empty DAG, same imports", baseline), ("plain DAG, same shape", floor)] + [
        (dag_file.name, parse_seconds(dag_file, options.repeats)) for dag_file in sorted((REPO / "dags").glob("*.py"))
    ]:
        print(f"{name:<28} {seconds * 1e3:>9.1f} {seconds / baseline:>8.2f}x {seconds / floor:>13.2f}x")


if __name__ == "__main__":
    main()
