"""The pipeline's Assets: the source data (an update can trigger a run), the staged data set it produces, the
models it evaluates and ships, and each platform's drift signal (an event can trigger a run too).

Named without a URI scheme: a scheme would make every DAG parse load the providers' URI normalisers
(about 0.15 s here), and these Assets name data sets and models rather than one storage location.

Every evaluated model is an event on ``MODEL_CANDIDATES`` (``register``: approved or waiting for approval;
``reject``: archived with the gate's reasons), and every model that passes its smoke test on the endpoint an
event on ``MODEL_PRODUCTION`` (``mark_production``), on every platform. On SageMaker the person's approval is
part of ``register`` (the model package waits in SageMaker's model registry), so its event comes once the
package is approved; a package a person rejects, or leaves undecided past the timeout, has none there. The event's ``extra`` (``model_event``)
holds the model's figures and where it is, so the Assets view lists the models, and a DAG scheduled on
``MODEL_PRODUCTION`` gets the new production model's facts from its triggering event.

Each platform's monitor DAG (monitoring.py) updates its ``drift_detected`` Asset when the traffic its endpoint
captured drifted from the production model's training data; that platform's training DAG is scheduled on it
(pipeline.py), so the event starts a retraining run.
"""

from __future__ import annotations

from collections.abc import Mapping

from airflow.sdk import Asset

from tasks.runtime import model_card

SOURCE_DATA = Asset("nlp_source_data")
STAGED_DATA = Asset("nlp_staged_data")
MODEL_CANDIDATES = Asset("nlp_model_candidates")
MODEL_PRODUCTION = Asset("nlp_model_production")


def drift_detected(platform_name: str) -> Asset:
    """The Asset the monitor DAG of ``platform_name`` (``local``, ``sagemaker``, ``eks``: the platform module's
    name) updates on drift, and the platform's training DAG is scheduled on: ``nlp_drift_detected_<platform>``."""
    return Asset(f"nlp_drift_detected_{platform_name}")


# The model's figures in an event's extra, as the evaluate step reports them (tasks/runtime/step_result.py).
FIGURES = ("precision", "accuracy", "f1", "latency_ms_b1_p50", "throughput_b32")


def model_event(context, asset: Asset, entry: Mapping) -> dict:
    """Make ``entry`` the extra of the task's event on ``asset`` and return that extra.

    ``entry`` has the registry's shape (tasks/endpoint/registry.py): ``version``, ``status`` (candidate,
    approved, production, archived), ``metrics`` (the evaluate step's figures), ``data_fingerprint`` and
    ``model`` (the artefact's URI). Airflow records the event only when the task succeeds, and only for an
    Asset among the task's ``outlets``.
    """
    figures = entry["metrics"]
    extra = {
        "version": entry["version"],
        "status": entry["status"],
        **{name: figures.get(name) for name in FIGURES},
        "data_fingerprint": entry["data_fingerprint"],
        "uri": entry["model"],
        "model_card": model_card.location(entry["model"]),
        "dag_id": context["dag"].dag_id,
        "run_id": context["run_id"],
    }
    context["outlet_events"][asset].extra = extra
    return extra
