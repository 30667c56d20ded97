"""Operator extra links (plugins/nlp_pipeline/links.py) and the artefact app that opens local reports
(plugins/nlp_links_plugin.py).

A link's URL is what the worker computes when the task ends: ``get_link`` with the task instance as the key,
reading the task's XCom. Here the task's XCom is the test context's, read as the task runner reads it.
"""

import json
import sys
from types import SimpleNamespace

import pendulum
import pytest

from tests.airflow.task_context import task_context
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "plugins"))

from nlp_pipeline import eks, links, local, pipeline, sagemaker  # noqa: E402
from nlp_pipeline.params import capture_params, eks_params, local_params, sagemaker_params  # noqa: E402

PLATFORMS = {"local": (local, local_params), "sagemaker": (sagemaker, sagemaker_params), "eks": (eks, eks_params)}


@pytest.fixture(autouse=True)
def task_xcom(monkeypatch):
    """``XCom.get_value`` as the task runner answers it for the task's own instance: from the context's XCom."""
    monkeypatch.setattr(
        links.XCom, "get_value", staticmethod(lambda *, ti_key, key: ti_key.xcom.get((ti_key.task_id, key)))
    )


def run_context(dag_id: str, task_id: str, **xcom) -> dict:
    return task_context(
        dag_id,
        task_id,
        {},
        logical_date=pendulum.datetime(2026, 5, 1, tz="UTC"),
        run_id="manual__2026-05-01",
        xcom={(task_id, key): value for key, value in xcom.items()},
    )


def urls(context, *task_links) -> dict[str, str]:
    """Each link's URL for the context's task instance, as the worker stores it when the task ends."""
    return {link.name: link.get_link(None, ti_key=context["ti"]) for link in task_links}


def hook_in(region: str):
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SimpleNamespace(hook=SageMakerHook(aws_conn_id=None, region_name=region))


# ---- SageMaker's console --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("region", "console"),
    [
        ("eu-west-1", "https://console.aws.amazon.com"),
        ("cn-north-1", "https://console.amazonaws.cn"),
        ("us-gov-west-1", "https://console.amazonaws-us-gov.com"),
    ],
)
def test_sagemaker_links_open_the_console_of_the_jobs_region_and_partition(region, console):
    context = run_context("nlp_sagemaker", "evaluate")
    operator = hook_in(region)
    links.persist_sagemaker(links.SageMakerProcessingJobLink, context, operator, job_name="nlp-evaluate-x-t1")
    links.persist_sagemaker(links.SageMakerTrainingJobLink, context, operator, job_name="nlp-train-x-t2")
    links.persist_sagemaker(links.SageMakerModelPackageLink, context, operator, group_name="nlp-paraphrase")
    links.persist_sagemaker(links.SageMakerEndpointLink, context, operator, endpoint_name="nlp-paraphrase")
    links.persist_sagemaker(links.SageMakerTuningJobLink, context, operator, job_name="nlp-tune-20260501-abcdef-t1")
    home = f"{console}/sagemaker/home?region={region}#"
    assert urls(
        context,
        links.SageMakerProcessingJobLink(),
        links.SageMakerTrainingJobLink(),
        links.SageMakerModelPackageLink(),
        links.SageMakerEndpointLink(),
        links.SageMakerTuningJobLink(),
    ) == {
        "SageMaker processing job": f"{home}/processing-jobs/nlp-evaluate-x-t1",
        "SageMaker training job": f"{home}/jobs/nlp-train-x-t2",
        "SageMaker model package": f"{home}/model-registry/nlp-paraphrase",
        "SageMaker endpoint": f"{home}/endpoints/nlp-paraphrase",
        "SageMaker tuning job": f"{home}/hyper-tuning-jobs/nlp-tune-20260501-abcdef-t1",
    }


def test_a_link_the_task_never_persisted_is_empty_and_the_ui_leaves_it_out():
    context = run_context("nlp_sagemaker", "train")
    assert set(urls(context, links.SageMakerTrainingJobLink(), *links.EVALUATION_LINKS).values()) == {""}


def test_a_processing_task_links_its_job_from_the_moment_it_waits_for_it(aws):
    from airflow.sdk.exceptions import TaskDeferred

    from tests.airflow.sagemaker_context import context
    from tests.fakes.sagemaker import REGION

    operator = sagemaker.stage_dataset()
    run = context("stage_dataset")
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(run)
    job = deferred.value.trigger.job_name
    (link,) = operator.operator_extra_links
    assert link.get_link(operator, ti_key=run["ti"]) == (
        f"https://console.aws.amazon.com/sagemaker/home?region={REGION}#/processing-jobs/{job}"
    )


def test_the_tune_task_links_its_tuning_job(aws):
    """tune's link: the tuning job's console page, kept when the task starts waiting."""
    from airflow.sdk.exceptions import TaskDeferred
    from nlp_pipeline.operators.sagemaker import StepTuningOperator

    from tests.airflow.sagemaker_context import context
    from tests.fakes.sagemaker import REGION

    aws.fake.hold_jobs = True
    for key in ("train/x", "validation/x", "manifest.json", "tokenizer/x"):
        aws.s3["client"].put_object(Bucket=aws.s3["bucket"], Key=f"staged/{key}", Body=b"x")
    staged = {"uri": f"s3://{aws.s3['bucket']}/staged", "fingerprint": "sha256:0f"}
    run = context("tune", xcom={("stage_dataset", "return_value"): staged}, tuning_trials=2)
    operator = sagemaker._job(
        StepTuningOperator, "tune", "tune", sagemaker._tune_config, sagemaker._tune_summary
    )  # as sagemaker.tune adds it
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(run)
    [link] = [link for link in operator.operator_extra_links if link.name == "SageMaker tuning job"]
    assert link.get_link(operator, ti_key=run["ti"]) == (
        f"https://console.aws.amazon.com/sagemaker/home?region={REGION}#/hyper-tuning-jobs/"
        f"{deferred.value.trigger.job_name}"
    )


def test_register_links_its_model_package_group(aws):
    from tests.airflow.sagemaker_context import context, register_operator
    from tests.fakes.sagemaker import REGION

    operator = register_operator()
    evaluation = {
        "model": "s3://b/run/q/",
        "evaluation": "s3://b/e.json",
        "accuracy": 0.9,
        "f1": 0.9,
        "decision": "promote",
    }
    xcom = {("evaluate", "return_value"): evaluation, ("stage_dataset", "return_value"): {"fingerprint": "sha256:0f"}}
    run = context("register", xcom=xcom)
    operator.execute(run)
    (link,) = operator.operator_extra_links
    assert link.get_link(operator, ti_key=run["ti"]) == (
        f"https://console.aws.amazon.com/sagemaker/home?region={REGION}#/model-registry/nlp-paraphrase"
    )


@pytest.mark.parametrize(
    ("region", "runtime"),
    [
        ("eu-west-1", "https://runtime.sagemaker.eu-west-1.amazonaws.com"),
        ("cn-north-1", "https://runtime.sagemaker.cn-north-1.amazonaws.com.cn"),
    ],
)
def test_deploy_links_the_endpoints_console_page_and_the_url_clients_invoke(region, runtime):
    from nlp_pipeline.operators.sagemaker import VerifiedEndpointOperator

    operator = VerifiedEndpointOperator(
        task_id="deploy", build_rollout=lambda context: None, aws_conn_id=None, region_name=region
    )
    context = run_context("nlp_sagemaker", "deploy")
    links.persist_sagemaker_endpoint(context, operator, "nlp-paraphrase")
    assert urls(context, *operator.operator_extra_links)["Endpoint URL"] == (
        f"{runtime}/endpoints/nlp-paraphrase/invocations"
    )
    assert urls(context, *operator.operator_extra_links)["SageMaker endpoint"].endswith(
        f"/sagemaker/home?region={region}#/endpoints/nlp-paraphrase"
    )


# ---- Kubernetes objects in the EKS console ----------------------------------------------------------------------------
def test_the_servers_deployment_and_service_open_in_the_eks_console(monkeypatch):
    monkeypatch.setattr(
        links, "aws_console", lambda conn_id: {"region_name": "eu-west-1", "aws_domain": "aws.amazon.com"}
    )
    context = run_context("nlp_eks", "deploy")
    links.persist_eks_server(context, "ml-cluster", "aws_default", "nlp-paraphrase", "nlp")
    cluster = "https://console.aws.amazon.com/eks/home?region=eu-west-1#/clusters/ml-cluster"
    assert urls(context, links.EksDeploymentLink(), links.EksServiceLink()) == {
        "Kubernetes Deployment": f"{cluster}/deployments/nlp-paraphrase?namespace=nlp",
        "Kubernetes Service": f"{cluster}/services/nlp-paraphrase?namespace=nlp",
    }


# ---- artefacts: reports and model cards -----------------------------------------------------------------------------
def test_a_report_on_s3_opens_on_the_s3_console(monkeypatch):
    monkeypatch.setattr(
        links, "aws_console", lambda conn_id: {"region_name": "eu-west-1", "aws_domain": "aws.amazon.com"}
    )
    context = run_context("nlp_sagemaker", "evaluate")
    links.persist_evaluation(context, "s3://bucket/artefacts/nlp_sagemaker/20260501/evaluation/job/", "s3://b/q/", "c")
    object_page = "https://console.aws.amazon.com/s3/object/bucket?region=eu-west-1&prefix="
    assert urls(context, *links.EVALUATION_LINKS) == {
        "Evaluation report": f"{object_page}artefacts%2Fnlp_sagemaker%2F20260501%2Fevaluation%2Fjob%2Freport.md",
        "Evaluation chart": f"{object_page}artefacts%2Fnlp_sagemaker%2F20260501%2Fevaluation%2Fjob%2Freport.png",
        "Model card": "https://console.aws.amazon.com/s3/object/b?region=eu-west-1&prefix=q%2FREADME.md",
    }


def test_a_model_inside_a_training_jobs_archive_has_no_model_card_link(monkeypatch):
    monkeypatch.setattr(
        links, "aws_console", lambda conn_id: {"region_name": "eu-west-1", "aws_domain": "aws.amazon.com"}
    )
    context = run_context("nlp_sagemaker", "evaluate")
    links.persist_evaluation(context, "s3://b/evaluation/job", "s3://b/model/job/output/model.tar.gz", "c")
    assert urls(context, links.CandidateModelCardLink()) == {"Model card": ""}


@pytest.fixture
def local_root(tmp_path, monkeypatch):
    root = tmp_path / "artefacts"
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", str(root))
    return root


def test_a_local_report_opens_through_the_artefact_app_under_the_api_servers_path(local_root, monkeypatch):
    folder = local_root / "nlp_local" / "20260501T000000" / "evaluation" / "try1-abcdef"
    context = run_context("nlp_local", "evaluate")
    links.persist_evaluation(
        context, str(folder), str(local_root / "nlp_local" / "20260501T000000" / "quantized" / "try1-abcdef")
    )
    app = "/nlp-artefacts/nlp_local/20260501T000000"
    assert urls(context, *links.EVALUATION_LINKS) == {
        "Evaluation report": f"{app}/evaluation/try1-abcdef/report.md",
        "Evaluation chart": f"{app}/evaluation/try1-abcdef/report.png",
        "Model card": f"{app}/quantized/try1-abcdef/README.md",
    }
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/ml/")
    assert urls(context, links.EvaluationReportLink())["Evaluation report"] == (
        f"/ml{app}/evaluation/try1-abcdef/report.md"
    )


def test_a_file_outside_the_local_root_has_no_link_the_browser_could_not_open(local_root, tmp_path):
    context = run_context("nlp_local", "evaluate")
    links.persist_evaluation(context, str(tmp_path / "workspace" / "evaluation"), str(tmp_path / "model"))
    assert set(urls(context, *links.EVALUATION_LINKS).values()) == {""}


def test_the_registered_models_card_comes_from_the_registry_entry(local_root, monkeypatch):
    model = local_root / "nlp_local" / "20260501T000000" / "quantized" / "try2-abcdef"
    context = run_context("nlp_local", "register", return_value={"model": str(model), "version": "v1"})
    assert urls(context, links.RegisteredModelCardLink()) == {
        "Model card": "/nlp-artefacts/nlp_local/20260501T000000/quantized/try2-abcdef/README.md"
    }
    monkeypatch.setattr(
        links, "aws_console", lambda conn_id: {"region_name": "us-east-1", "aws_domain": "aws.amazon.com"}
    )
    on_s3 = run_context("nlp_eks", "register", return_value={"model": "s3://b/nlp_eks/q/try1-abcdef"})
    assert urls(on_s3, links.RegisteredModelCardLink()) == {
        "Model card": "https://console.aws.amazon.com/s3/object/b?region=us-east-1&prefix=nlp_eks%2Fq%2Ftry1-abcdef%2FREADME.md"
    }


def test_the_report_names_are_the_ones_the_evaluate_step_writes(tmp_path):
    from tasks.evaluation.report import write_report

    figures = {"accuracy": 0.8, "f1": 0.85, "latency_ms_b1_p50": 5.0, "latency_ms_b1_p99": 7.0, "throughput_b32": 90.0}
    evaluation = figures | {"precision": "int8", "decision": "promote", "reasons": ["ok"], "model": "m", "split": "dev"}
    evaluation |= {"pairs": 408, "size_mb": 20.0}
    write_report(tmp_path, evaluation, None)
    assert {links.REPORT, links.CHART} <= {path.name for path in tmp_path.iterdir()}


def test_local_evaluate_links_the_report_it_wrote_and_the_candidate_it_judged(local_root, monkeypatch):
    from nlp_pipeline import policy

    run = local_root / "nlp_local" / "20260501T000000Z"
    output, candidate = run / "evaluation" / "try1-abcdef", run / "quantized" / "try1-abcdef"
    output.mkdir(parents=True)
    (output / "evaluation.json").write_text(json.dumps({"decision": "promote", "reasons": []}))
    monkeypatch.setattr(local, "production_model", lambda: None)
    monkeypatch.setattr(local, "run_once", lambda *args, **given: output)
    context = run_context("nlp_local", "evaluate")
    context["ti"].xcom[(policy.TASK_ID, "return_value")] = policy.DEFAULTS
    local.evaluate.function({"data": "/staged"}, {"model": str(candidate), "uri": str(candidate)}, **context)
    assert urls(context, *links.EVALUATION_LINKS) == {
        "Evaluation report": "/nlp-artefacts/nlp_local/20260501T000000Z/evaluation/try1-abcdef/report.md",
        "Evaluation chart": "/nlp-artefacts/nlp_local/20260501T000000Z/evaluation/try1-abcdef/report.png",
        "Model card": "/nlp-artefacts/nlp_local/20260501T000000Z/quantized/try1-abcdef/README.md",
    }


def test_eks_evaluate_links_the_report_its_pod_wrote_on_s3(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", "nlp-tasks:test")
    monkeypatch.setattr(
        links, "aws_console", lambda conn_id: {"region_name": "eu-west-1", "aws_domain": "aws.amazon.com"}
    )
    context = run_context("nlp_eks", "evaluate")
    context["ti"].xcom[("quantize", "return_value")] = {"model": "s3://b/nlp_eks/r/quantized/try1-abcdef"}
    result = eks._evaluation(context, {"output": "s3://b/nlp_eks/r/evaluation/try1-abcdef", "decision": "promote"})
    assert result["evaluation"] == "s3://b/nlp_eks/r/evaluation/try1-abcdef"
    page = "https://console.aws.amazon.com/s3/object/b?region=eu-west-1&prefix=nlp_eks%2Fr%2F"
    assert urls(context, *links.EVALUATION_LINKS) == {
        "Evaluation report": f"{page}evaluation%2Ftry1-abcdef%2Freport.md",
        "Evaluation chart": f"{page}evaluation%2Ftry1-abcdef%2Freport.png",
        "Model card": f"{page}quantized%2Ftry1-abcdef%2FREADME.md",
    }


@pytest.mark.parametrize("cluster", ["ml-cluster", None])
def test_eks_deploy_links_the_service_url_and_on_eks_the_server_objects(cluster, monkeypatch):
    from contextlib import nullcontext

    monkeypatch.setenv("AIRFLOW_VAR_NLP_TASK_IMAGE", "nlp-tasks:test")
    if cluster:
        monkeypatch.setenv("AIRFLOW_VAR_NLP_EKS_CLUSTER_NAME", cluster)
    monkeypatch.setattr(
        links, "aws_console", lambda conn_id: {"region_name": "eu-west-1", "aws_domain": "aws.amazon.com"}
    )
    monkeypatch.setattr(eks, "_api_client", lambda: nullcontext(None))
    monkeypatch.setattr(eks, "_deploy", lambda context, api_client, settings, entry: {"deployment": settings.server})
    context = run_context("nlp_eks", "deploy")
    eks.deploy.function({"model": "s3://b/m", "version": "v1"}, **context)
    console = "https://console.aws.amazon.com/eks/home?region=eu-west-1#/clusters/ml-cluster"
    assert urls(context, links.EndpointUrlLink(), links.EksDeploymentLink(), links.EksServiceLink()) == {
        "Endpoint URL": "http://nlp-paraphrase.nlp.svc.cluster.local",
        "Kubernetes Deployment": f"{console}/deployments/nlp-paraphrase?namespace=nlp" if cluster else "",
        "Kubernetes Service": f"{console}/services/nlp-paraphrase?namespace=nlp" if cluster else "",
    }


def test_a_link_that_cannot_be_kept_never_fails_the_task(monkeypatch, caplog):
    def unreachable(conn_id):
        raise ConnectionError("no route to the AWS API")

    monkeypatch.setattr(links, "aws_console", unreachable)
    context = run_context("nlp_eks", "evaluate")
    links.persist_evaluation(context, "s3://b/evaluation/try1-abcdef", "s3://b/quantized/try1-abcdef")
    assert set(urls(context, *links.EVALUATION_LINKS).values()) == {""}
    assert "could not keep the link" in caplog.text and "no route to the AWS API" in caplog.text


# ---- the endpoint -------------------------------------------------------------------------------------------------
def test_deploy_links_the_endpoint_url_on_every_platform():
    on_local = run_context("nlp_local", "deploy", return_value={"url": "http://127.0.0.1:8080", "version": "v1"})
    assert urls(on_local, links.EndpointUrlLink()) == {"Endpoint URL": "http://127.0.0.1:8080"}
    persisted = run_context("nlp_eks", "deploy")
    links.EndpointUrlLink.persist(persisted, "http://nlp-paraphrase.nlp.svc.cluster.local")
    assert urls(persisted, links.EndpointUrlLink()) == {"Endpoint URL": "http://nlp-paraphrase.nlp.svc.cluster.local"}


def test_the_local_deploy_links_where_a_browser_reaches_the_endpoint(monkeypatch):
    """docker-compose publishes the scheduler's endpoint port 8080 on the host's 8090: the link follows the
    Variable nlp_endpoint_public_url when it is set, the smoke test keeps the worker's own address."""
    status = {"url": "http://127.0.0.1:8080", "current": {"version": "v1"}}
    monkeypatch.setattr(local, "run_step", lambda *command: None)
    monkeypatch.setattr(local, "run_step_json", lambda *command: status)
    for public, shown in ((None, "http://127.0.0.1:8080"), ("http://127.0.0.1:8090", "http://127.0.0.1:8090")):
        if public:
            monkeypatch.setenv("AIRFLOW_VAR_NLP_ENDPOINT_PUBLIC_URL", public)
        context = run_context("nlp_local", "deploy")
        context["params"] |= {name: param.value for name, param in capture_params().items()} | {"endpoint_port": 8080}
        deployed = local.deploy.function({"model": "/m", "version": "v1"}, **context)
        assert deployed["url"] == "http://127.0.0.1:8080"
        assert urls(context, links.EndpointUrlLink()) == {"Endpoint URL": shown}


# ---- the links on the DAGs' tasks, through the DAG's serialisation ---------------------------------------------------
EXPECTED = {
    "local": {
        "evaluate": {"Evaluation report", "Evaluation chart", "Model card"},
        "register": {"Model card"},
        "reject": {"Model card"},
        "deploy": {"Endpoint URL"},
    },
    "sagemaker": {
        "stage_dataset": {"SageMaker processing job"},
        "tune": {"SageMaker tuning job"},
        "train": {"SageMaker training job"},
        "quantize": {"SageMaker processing job"},
        "evaluate": {"SageMaker processing job", "Evaluation report", "Evaluation chart", "Model card"},
        "register": {"SageMaker model package"},
        "reject": {"SageMaker model package"},
        "deploy": {"SageMaker endpoint", "Endpoint URL"},
    },
    "eks": {
        "evaluate": {"Evaluation report", "Evaluation chart", "Model card"},
        "register": {"Model card"},
        "reject": {"Model card"},
        "deploy": {"Endpoint URL", "Kubernetes Deployment", "Kubernetes Service"},
    },
}


@pytest.mark.parametrize("name", PLATFORMS)
def test_the_ui_gets_each_tasks_links_from_the_serialised_dag(name):
    from airflow.serialization.serialized_objects import DagSerialization

    platform, params = PLATFORMS[name]
    dag = pipeline.build_pipeline(f"nlp_{name}", platform, params=params(), doc_md=name, tags=[])
    served = DagSerialization.from_dict(json.loads(json.dumps(DagSerialization.to_dict(dag))))
    shown = {task.task_id: set(task.extra_links) for task in served.tasks if task.extra_links}
    assert shown == EXPECTED[name]
    for task in served.tasks:  # the worker stores each link's URL under the key the UI reads
        written = {link.name: link.xcom_key for link in dag.get_task(task.task_id).operator_extra_links}
        assert {link.name: link.xcom_key for link in task.operator_extra_links} == written


# ---- the artefact app -----------------------------------------------------------------------------------------------
@pytest.fixture
def artefact_app(local_root, tmp_path, monkeypatch):
    """The artefact app mounted as the api-server mounts a plugin's app, behind Airflow's simple auth manager
    (users ``viewer`` and ``nobody``, who has no role); ``token(user)`` is that user's session token."""
    import nlp_links_plugin
    from airflow import settings
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.dag import DagModel
    from airflow.models.revoked_token import RevokedToken
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "viewer:viewer")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "test-secret")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    # The metadata database holds the revoked tokens a session token is checked against; no team owns a DAG.
    engine = create_engine(f"sqlite:///{tmp_path / 'airflow.db'}")
    RevokedToken.__table__.create(engine)
    monkeypatch.setattr(settings, "engine", engine)
    monkeypatch.setattr(settings, "Session", sessionmaker(engine, expire_on_commit=False))
    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, session=None: None))

    api = FastAPI()
    manager = init_auth_manager(api)
    api.mount(links.ARTEFACTS_PREFIX, nlp_links_plugin.artefact_app())
    folder = local_root / "nlp_local" / "20260501T000000" / "evaluation" / "try1-abcdef"
    folder.mkdir(parents=True)
    for name, content in {"report.md": "# Evaluation\n", "report.png": "PNG", "evaluation.json": "{}"}.items():
        (folder / name).write_text(content)
    with TestClient(api) as client:
        yield SimpleNamespace(
            client=client,
            root=local_root,
            folder=folder,
            token=lambda user, role: manager.generate_jwt(SimpleAuthManagerUser(username=user, role=role)),
        )


REPORT_URL = "/nlp-artefacts/nlp_local/20260501T000000/evaluation/try1-abcdef/report.md"


def test_the_app_serves_a_report_to_a_signed_in_person_as_plain_text(artefact_app):
    served = artefact_app.client.get(REPORT_URL, cookies={"_token": artefact_app.token("viewer", "viewer")})
    assert served.status_code == 200, served.text
    assert served.text == "# Evaluation\n"
    assert served.headers["content-type"] == "text/plain; charset=utf-8"
    assert served.headers["x-content-type-options"] == "nosniff"
    chart = artefact_app.client.get(
        REPORT_URL.replace("report.md", "report.png"),
        headers={"Authorization": f"Bearer {artefact_app.token('viewer', 'viewer')}"},
    )
    assert (chart.status_code, chart.headers["content-type"]) == (200, "image/png")


def test_the_app_refuses_anonymous_and_people_who_may_not_read_the_dag(artefact_app):
    assert artefact_app.client.get(REPORT_URL).status_code == 401
    assert artefact_app.client.get(REPORT_URL, cookies={"_token": "forged"}).status_code == 403
    assert (
        artefact_app.client.get(REPORT_URL, cookies={"_token": artefact_app.token("nobody", None)}).status_code == 403
    )


def test_the_app_serves_no_other_file_and_nothing_outside_the_dags_folder(artefact_app, tmp_path):
    headers = {"Authorization": f"Bearer {artefact_app.token('viewer', 'viewer')}"}
    (artefact_app.root / "nlp_eks").mkdir()
    (artefact_app.root / "nlp_eks" / "report.md").write_text("another DAG's")
    (tmp_path / "report.md").write_text("outside the root")
    (artefact_app.folder / "linked").mkdir()
    (artefact_app.folder / "linked" / "report.md").symlink_to(tmp_path / "report.md")
    (artefact_app.folder / "renamed").mkdir()
    (artefact_app.folder / "renamed" / "report.md").symlink_to(artefact_app.folder / "evaluation.json")
    refused = [
        REPORT_URL.replace("report.md", "evaluation.json"),  # exists, not a served file
        "/nlp-artefacts/nlp_local/%2E%2E/nlp_eks/report.md",  # another DAG's folder, under this DAG's id
        "/nlp-artefacts/nlp_local/..%2F..%2Freport.md",  # outside the root
        "/nlp-artefacts/%2E%2E/report.md",
        REPORT_URL.replace("report.md", "linked/report.md"),  # a symlink out of the root
        REPORT_URL.replace("report.md", "renamed/report.md"),  # a symlink to another file of the DAG's folder
        REPORT_URL.replace("try1-abcdef", "try9-abcdef"),  # no such report
    ]
    for url in refused:
        answer = artefact_app.client.get(url, headers=headers)
        assert answer.status_code == 404, (url, answer.status_code, answer.text)
        assert "report.md" in answer.json()["detail"]


def test_the_app_serves_nothing_from_a_root_on_s3(artefact_app, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NLP_ARTEFACT_ROOT", "s3://bucket/artefacts")
    headers = {"Authorization": f"Bearer {artefact_app.token('viewer', 'viewer')}"}
    assert artefact_app.client.get(REPORT_URL, headers=headers).status_code == 404
