"""DAG parse time: each DAG file against an empty DAG file importing the same operators.

The empty file of a DAG imports the Airflow classes its tasks are made of (found by parsing the DAG once:
for each task, the first class in its MRO that Airflow or a provider defines), so provider imports count on
both sides. A further reference separates what Airflow itself costs from what this project adds: a plain
DAG of nlp_local's shape (the 17 pipeline Params, 11 ``@task`` and 2 ``@task.branch`` no-ops and one
ApprovalOperator, the same schedule), the floor any 13-task DAG with these Params has.
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

from steps import REPO, print_hardware

EMPTY_DAG = """
import pendulum
{imports}
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, Variable, task

with DAG("empty", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    pass
"""
OPERATORS_PROBE = """
import runpy, sys
sys.path.insert(0, {plugins!r})
dag = runpy.run_path({path!r})["dag"]
airflow_classes = {{next(c for c in type(t).__mro__ if c.__module__.startswith("airflow.")) for t in dag.tasks}}
print("\\n".join(sorted(f"from {{c.__module__}} import {{c.__name__}}" for c in airflow_classes)))
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


def empty_dag_of(dag_file: Path) -> str:
    """An empty DAG importing the Airflow classes ``dag_file``'s tasks are made of."""
    probe = OPERATORS_PROBE.format(plugins=str(REPO / "plugins"), path=str(dag_file))
    imports = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    return EMPTY_DAG.format(imports=imports.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    print_hardware()
    print(
        f"{'DAG file':<28} {'parse ms':>9} {'empty, same operators':>22} {'ratio':>7}"
        f"   (median of {options.repeats} fresh interpreters)"
    )
    with tempfile.TemporaryDirectory() as work:
        for dag_file in sorted((REPO / "dags").glob("*.py")):
            empty = Path(work) / f"empty_{dag_file.name}"
            empty.write_text(empty_dag_of(dag_file))
            seconds, baseline = parse_seconds(dag_file, options.repeats), parse_seconds(empty, options.repeats)
            print(f"{dag_file.name:<28} {seconds * 1e3:>9.1f} {baseline * 1e3:>19.1f} ms {seconds / baseline:>6.2f}x")
            if dag_file.stem == "nlp_local":
                same_shape = Path(work) / "same_shape_dag.py"
                same_shape.write_text(SAME_SHAPE_DAG)
                floor = parse_seconds(same_shape, options.repeats)
                print(
                    f"{'  plain DAG, same shape':<28} {floor * 1e3:>9.1f} {baseline * 1e3:>19.1f} ms "
                    f"{floor / baseline:>6.2f}x   (nlp_local vs it: {seconds / floor:.2f}x)"
                )


if __name__ == "__main__":
    main()
