"""What a platform module gives the pipeline (pipeline.build_pipeline) and its monitor DAG
(monitoring.build_monitor): its step tasks, its production model, its capture location and its monitor step.

``local``, ``sagemaker`` and ``eks`` each provide these; tests/airflow/test_platforms.py checks that they do,
with these parameters. Each step function, called inside the DAG, adds its task(s) and returns the XComArg
the next steps take.
"""

from __future__ import annotations

from typing import Any, Protocol

XCom = Any  # an XComArg: what a step's task returns, handed to the steps after it


class Platform(Protocol):
    ROLLOUT_START: str  # the first task of the rollout: where choose_rollout branches to

    def production_model(self, context=None) -> dict | None:
        """The model in production (``model``, and what it was trained from: ``data_fingerprint``, ``config``),
        or None before the first rollout: the gate's champion and the training cache's reference."""

    def stage_dataset(self) -> XCom: ...

    def tune(self, staged: XCom) -> XCom:
        """The tuning stage's tasks; the last, ``choose_setting``, returns None when tuning is off (the
        ``tuning_trials`` Param is 0), else ``{"setting", "best", "trials", "tuning"}`` (the chosen setting, the
        best trial's scores, how many trials ran, and where the search's tuning.json is)."""

    def train(self, staged: XCom, tuned: XCom) -> XCom: ...

    def quantize(self, staged: XCom, trained: XCom) -> XCom: ...

    def evaluate(self, staged: XCom, candidate: XCom) -> XCom: ...

    def register(self, evaluation: XCom) -> XCom: ...

    def reject(self, evaluation: XCom) -> XCom: ...

    def deploy(self, entry: XCom) -> XCom: ...

    def smoke_test(self, deployed: XCom) -> XCom: ...

    def mark_production(self, entry: XCom, smoke: XCom) -> XCom: ...

    def rollback(self) -> XCom: ...

    def capture_root(self) -> str:
        """Where the endpoint writes its capture (artefacts.capture_uri), which deploy hands the server and the
        monitor DAG reads (monitoring.py)."""

    def monitor(self, production: XCom) -> XCom:
        """The monitor DAG's ``monitor`` task: the monitor step over the capture's window, against the production
        model's traffic baseline; its step result and ``uri`` (monitoring.py has the whole contract)."""
