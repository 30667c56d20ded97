"""The context a task runner hands an operator's ``execute``, for operators run in the test process."""

from types import SimpleNamespace

import pendulum


class TaskInstance(SimpleNamespace):
    """What the operators use of a task instance: its identity, try number and XCom."""

    def xcom_push(self, key, value):
        self.xcom[(self.task_id, key)] = value

    def xcom_pull(self, task_ids, key="return_value"):
        return self.xcom.get((task_ids, key))


def task_context(
    dag_id: str,
    task_id: str,
    params: dict,
    *,
    logical_date: pendulum.DateTime,
    run_id: str,
    try_number: int = 1,
    max_tries: int = 0,
    xcom: dict | None = None,
) -> dict:
    ti = TaskInstance(
        dag_id=dag_id,
        task_id=task_id,
        run_id=run_id,
        try_number=try_number,
        max_tries=max_tries,
        map_index=-1,
        xcom=dict(xcom or {}),
        start_date=pendulum.now("UTC"),
    )
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {
        "ti": ti,
        "outlet_events": OutletEventAccessors(),  # what a task sets its Asset events' extra in
        "run_id": run_id,
        "dag": SimpleNamespace(dag_id=dag_id),
        "dag_run": SimpleNamespace(logical_date=logical_date, run_after=logical_date, run_type="manual"),
        "params": params,
    }
