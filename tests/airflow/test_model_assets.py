"""Every platform's register, reject and mark_production give their Asset event the same extra, built by
assets.model_event from what the platform has: a registry entry (local, EKS) or a SageMaker model package
version with the run's evaluation."""

import json
import sys

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import eks, local, policy, sagemaker  # noqa: E402
from nlp_pipeline.assets import MODEL_CANDIDATES, MODEL_PRODUCTION, model_event  # noqa: E402
from nlp_pipeline.params import eks_params, pipeline_params, sagemaker_params  # noqa: E402
from nlp_pipeline.pipeline import build_pipeline  # noqa: E402

FINGERPRINT = "sha256:" + "0f" * 32
FIGURES = {"precision": "int8", "accuracy": 0.86, "f1": 0.89, "latency_ms_b1_p50": 3.1, "throughput_b32": 410.0}
# What the evaluate task hands on (tasks/runtime/step_result.py's selection, plus where the files are).
EVALUATION = FIGURES | {"decision": "promote", "reasons": ["min_accuracy: PASS"], "latency_ms_b1_p99": 4.0}


def context(dag_id: str, task_id: str, xcom: dict | None = None) -> dict:
    return task_context(
        dag_id,
        task_id,
        {name: param.value for name, param in pipeline_params().items()},
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id="manual__2026-05-01",
        xcom={(policy.TASK_ID, "return_value"): policy.DEFAULTS} | (xcom or {}),
    )


def registry_entry(tmp_path, model: str, status: str) -> dict:
    """An entry as ``python -m tasks registry`` prints it: made by the real registry, through JSON."""
    from tasks.endpoint.registry import Registry

    entry = Registry(tmp_path / "registry.sqlite").register(
        model=model,
        version="20260501-0f0f",
        status=status,
        evaluation=EVALUATION,
        card={"data": {"fingerprint": FINGERPRINT}, "base_model": "tiny-bert"},
        digest="sha256:" + "ab" * 32,
        config={"epochs": 1},
        dag_id="nlp_local",
        run_id="manual__2026-05-01",
    )
    return json.loads(json.dumps(entry))


def expected(dag_id: str, uri: str, status: str, version: str = "20260501-0f0f", card: str | None = "") -> dict:
    return {
        "version": version,
        "status": status,
        **FIGURES,
        "data_fingerprint": FINGERPRINT,
        "uri": uri,
        "model_card": f"{uri.rstrip('/')}/README.md" if card == "" else card,
        "dag_id": dag_id,
        "run_id": "manual__2026-05-01",
    }


def extra_of(run: dict, asset) -> dict:
    return run["outlet_events"][asset].extra


def test_local_register_reject_and_mark_production_set_the_extra_from_the_registry_entry(monkeypatch, tmp_path):
    model = str(tmp_path / "artefacts" / "nlp_local" / "20260501T000000Z" / "quantized" / "try1")
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(tmp_path / "artefacts"))
    evaluation = EVALUATION | {"model": model, "evaluation": f"{model}/../evaluation"}
    for task_id, status in (("register", "approved"), ("reject", "archived")):
        monkeypatch.setattr(
            local, "run_step_json", lambda *command, status=status: registry_entry(tmp_path, model, status)
        )
        run = context("nlp_local", task_id)
        entry = getattr(local, task_id).function(evaluation, **run)
        assert extra_of(run, MODEL_CANDIDATES) == expected("nlp_local", model, status)
        assert entry["model"] == model, "the task's XCom is the registry entry, as before"

    promoted = registry_entry(tmp_path, model, "approved") | {"status": "production"}
    monkeypatch.setattr(local, "run_step_json", lambda *command: promoted)
    run = context("nlp_local", "mark_production")
    local.mark_production.function(promoted, {"url": "http://127.0.0.1:8080"}, **run)
    assert extra_of(run, MODEL_PRODUCTION) == expected("nlp_local", model, "production")
    assert extra_of(run, MODEL_CANDIDATES) == {}, "mark_production updates the production Asset only"


@pytest.mark.parametrize(
    ("task_id", "asset", "status"),
    [
        ("register", MODEL_CANDIDATES, "candidate"),
        ("reject", MODEL_CANDIDATES, "archived"),
        ("mark_production", MODEL_PRODUCTION, "production"),
    ],
)
def test_eks_registry_pods_results_set_the_extra_from_the_registry_entry(tmp_path, task_id, asset, status):
    model = "s3://bucket/artefacts/nlp_eks/20260501T000000Z/quantized/try1-abcdef"
    entry = registry_entry(tmp_path, model, status)
    dag = build_pipeline("nlp_eks", eks, params=eks_params(), doc_md="nlp_eks", tags=[])
    run = context("nlp_eks", task_id)
    assert dag.get_task(task_id).summarize(run, entry) == entry, "the task's XCom is the registry entry"
    assert extra_of(run, asset) == expected("nlp_eks", model, status)


@pytest.mark.parametrize(
    ("task_id", "package_status", "model", "status", "card"),
    [
        ("register", "Approved", "s3://b/run/quantized/job/", "approved", "s3://b/run/quantized/job/README.md"),
        ("reject", "Rejected", "s3://b/run/model/job/output/model.tar.gz", "archived", None),  # the card is inside
    ],
)
def test_sagemaker_model_versions_set_the_extra_from_the_package_and_the_evaluation(
    task_id, package_status, model, status, card
):
    xcom = {
        ("evaluate", "return_value"): EVALUATION | {"model": model, "evaluation": "s3://b/run/evaluation/job/"},
        ("stage_dataset", "return_value"): {"fingerprint": FINGERPRINT, "uri": "s3://b/run/staged/job"},
    }
    dag = build_pipeline("nlp_sagemaker", sagemaker, params=sagemaker_params(), doc_md="nlp_sagemaker", tags=[])
    run = context("nlp_sagemaker", task_id, xcom)
    package = {"arn": "arn:aws:sagemaker:eu-west-1:1:model-package/nlp/4", "version": "nlp-paraphrase/4"}
    dag.get_task(task_id)._post_execute_hook(run, package | {"status": package_status})
    assert extra_of(run, MODEL_CANDIDATES) == expected("nlp_sagemaker", model, status, "nlp-paraphrase/4", card)


def test_the_extra_names_a_figure_the_evaluation_lacks_as_none():
    run = context("nlp_local", "register")
    entry = {
        "version": "v",
        "status": "approved",
        "metrics": {"accuracy": 0.5},
        "data_fingerprint": None,
        "model": "/m",
    }
    extra = model_event(run, MODEL_CANDIDATES, entry)
    assert extra["accuracy"] == 0.5 and extra["throughput_b32"] is None and extra["model_card"] == "/m/README.md"
