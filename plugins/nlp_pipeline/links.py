"""Operator extra links: from a task in the Airflow UI to what it made, in one click.

    evaluate                       Evaluation report (report.md), Evaluation chart (report.png), Model card
                                   (the candidate's README.md)                                   every platform
    register / reject              Model card of the registered model                      local, Kubernetes
                                   SageMaker model package (its group's page)                     SageMaker
    train, stage/quantize/evaluate SageMaker training job / processing job                        SageMaker
    tune                           SageMaker hyperparameter tuning job (its trials and the best)   SageMaker
    deploy                         Endpoint URL                                              every platform
                                   SageMaker endpoint                                             SageMaker
                                   Kubernetes Deployment, Kubernetes Service (EKS console)    EKS (a cluster
                                                                                             name is set)

How Airflow 3 shows a link: the DAG's serialisation keeps each link's name and XCom key (``xcom_key``,
``_link_<class>``); when the task ends (succeeded, failed or deferred), the worker calls ``get_link`` and stores
the URL under that key; the UI asks ``/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links`` and
shows every link that is a same-origin path or an http(s) URL (never ``file://``). So a link needs no plugin
registration, and its ``get_link`` runs on the worker, with the task's XCom. Each link here reads what the task
persisted under the link's ``key`` (as the amazon provider's ``BaseAwsLink`` does) or the task's own result.

An artefact under a local root opens through the artefact app (plugins/nlp_links_plugin.py, under
``ARTEFACTS_PREFIX``): it serves only ``SERVED_FILES``, to people Airflow lets read the DAG's task instances.
An artefact on S3 opens on its S3 console page.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, urlencode

from airflow.providers.amazon.aws.links.base_aws import BASE_AWS_CONSOLE_LINK, BaseAwsLink
from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

from nlp_pipeline import artefacts
from tasks.runtime import model_card

log = logging.getLogger(__name__)

ARTEFACTS_PREFIX = "/nlp-artefacts"  # where plugins/nlp_links_plugin.py mounts the artefact app
REPORT, CHART = "report.md", "report.png"  # what tasks/evaluation/report.py writes beside evaluation.json
SERVED_FILES = frozenset({REPORT, CHART, model_card.README})  # all the artefact app ever serves


def best_effort(persist: Callable) -> Callable:
    """A link is a convenience: keeping one that fails logs why and never fails the task (as the provider's
    ``BaseAwsLink.persist``)."""

    @functools.wraps(persist)
    def keep(*args, **kwargs) -> None:
        try:
            persist(*args, **kwargs)
        except Exception:
            log.warning(
                "could not keep the link (%s): the task goes on without it", persist.__qualname__, exc_info=True
            )

    return keep


# ---- where an artefact opens ----------------------------------------------------------------------------------------
def api_base_path() -> str:
    """The path the api-server is served under (``[api] base_url``'s, without the trailing ``/``): the UI opens
    a same-origin link in its own tab, so the artefact app's links are paths under it."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="")).path.rstrip("/")


def local_url(location: str) -> str:
    """The artefact app's URL of a file under the local artefact root, or "" for any other file (the app would
    refuse it: outside the root, or not one of ``SERVED_FILES``)."""
    root = Path(artefacts.root())
    path = Path(location)
    if artefacts.is_remote(str(root)) or path.name not in SERVED_FILES or not path.is_relative_to(root):
        return ""
    return f"{api_base_path()}{ARTEFACTS_PREFIX}/{quote(path.relative_to(root).as_posix())}"


def s3_console_url(uri: str, region_name: str | None, aws_domain: str | None) -> str:
    """The S3 console's page of the object ``s3://BUCKET/KEY`` (its preview, download and metadata)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    query = urlencode({"region": region_name, "prefix": key} if region_name else {"prefix": key})
    return BASE_AWS_CONSOLE_LINK.format(aws_domain=aws_domain or "aws.amazon.com") + f"/s3/object/{bucket}?{query}"


def artefact_url(location: str | None, region_name: str | None = None, aws_domain: str | None = None) -> str:
    """Where a person opens the artefact at ``location`` (a local path or ``s3://`` URI): "" when nowhere."""
    if not location:
        return ""
    if location.startswith("s3://"):
        return s3_console_url(location, region_name, aws_domain)
    if artefacts.is_remote(location):
        return ""
    return local_url(location)


def aws_console(aws_conn_id: str) -> dict:
    """The region and console domain of the AWS connection, as ``BaseAwsLink.persist`` stores them."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    hook = AwsGenericHook(aws_conn_id=aws_conn_id, client_type="s3")
    return {"region_name": hook.conn_region_name, "aws_domain": BaseAwsLink.get_aws_domain(hook.conn_partition)}


# ---- artefacts: the evaluation's report and chart, a model card ---------------------------------------------------
class _ArtefactLink(BaseOperatorLink):
    """A file of what the task persisted (``persist``: a folder or a model) under ``key``."""

    name: ClassVar[str]
    key: ClassVar[str]

    @staticmethod
    def file(persisted: str) -> str | None:
        """The file the link opens, of the persisted folder or model; None when there is none to open."""

    def get_link(self, operator, *, ti_key) -> str:
        persisted = XCom.get_value(key=self.key, ti_key=ti_key)
        return artefact_url(self.file(persisted["at"]), **persisted["console"]) if persisted else ""

    @classmethod
    @best_effort
    def persist(cls, context, at: str, aws_conn_id: str | None = None) -> None:
        """Keep ``at`` (a local path or ``s3://`` URI) for the link; on S3 with the console region and domain of
        ``aws_conn_id`` (by default the Variable ``nlp_aws_conn_id``'s)."""
        console = aws_console(aws_conn_id or _aws_conn_id()) if at.startswith("s3://") else {}
        context["ti"].xcom_push(key=cls.key, value={"at": at, "console": console})


class EvaluationReportLink(_ArtefactLink):
    name, key = "Evaluation report", "nlp_evaluation_report"

    @staticmethod
    def file(persisted: str) -> str:
        return f"{persisted.rstrip('/')}/{REPORT}"


class EvaluationChartLink(EvaluationReportLink):
    name = "Evaluation chart"

    @staticmethod
    def file(persisted: str) -> str:
        return f"{persisted.rstrip('/')}/{CHART}"


class CandidateModelCardLink(_ArtefactLink):
    name, key = "Model card", "nlp_candidate_model"
    file = staticmethod(model_card.location)


EVALUATION_LINKS = (EvaluationReportLink(), EvaluationChartLink(), CandidateModelCardLink())


def persist_evaluation(context, report_folder: str, model: str, aws_conn_id: str | None = None) -> None:
    """Keep the evaluate task's links: its report's folder and the candidate model."""
    EvaluationReportLink.persist(context, report_folder, aws_conn_id)
    CandidateModelCardLink.persist(context, model, aws_conn_id)


class RegisteredModelCardLink(BaseOperatorLink):
    """The model card of the model a registry task recorded: its result (the registry entry) names the model,
    ``model``. A model card on S3 opens on the S3 console of the connection ``nlp_aws_conn_id``."""

    name = "Model card"

    def get_link(self, operator, *, ti_key) -> str:
        entry = XCom.get_value(key="return_value", ti_key=ti_key) or {}
        card = entry.get("model") and model_card.location(entry["model"])
        if not card:
            return ""
        return artefact_url(card, **(aws_console(_aws_conn_id()) if card.startswith("s3://") else {}))


def _aws_conn_id() -> str:
    from airflow.sdk import Variable

    return Variable.get("nlp_aws_conn_id", default="aws_default")


# ---- the endpoint -------------------------------------------------------------------------------------------------
class EndpointUrlLink(BaseOperatorLink):
    """The URL clients send requests to, as the deploy task's result names it (``url``) or persisted (``key``)."""

    name = "Endpoint URL"
    key = "nlp_endpoint_url"

    def get_link(self, operator, *, ti_key) -> str:
        persisted = XCom.get_value(key=self.key, ti_key=ti_key)
        if persisted:
            return persisted
        deployed = XCom.get_value(key="return_value", ti_key=ti_key) or {}
        return deployed.get("url") or ""

    @classmethod
    @best_effort
    def persist(cls, context, url: str) -> None:
        context["ti"].xcom_push(key=cls.key, value=url)


# ---- SageMaker's console ------------------------------------------------------------------------------------------
_SAGEMAKER_CONSOLE = BASE_AWS_CONSOLE_LINK + "/sagemaker/home?region={region_name}#"


class SageMakerTrainingJobLink(BaseAwsLink):
    name = "SageMaker training job"
    key = "nlp_sagemaker_training_job"
    format_str = _SAGEMAKER_CONSOLE + "/jobs/{job_name}"


class SageMakerTuningJobLink(BaseAwsLink):
    """The tuning job's page: its training jobs, their settings and objective values, and the best of them."""

    name = "SageMaker tuning job"
    key = "nlp_sagemaker_tuning_job"
    format_str = _SAGEMAKER_CONSOLE + "/hyper-tuning-jobs/{job_name}"


class SageMakerProcessingJobLink(BaseAwsLink):
    name = "SageMaker processing job"
    key = "nlp_sagemaker_processing_job"
    format_str = _SAGEMAKER_CONSOLE + "/processing-jobs/{job_name}"


class SageMakerModelPackageLink(BaseAwsLink):
    """The model package group's page, which lists its versions with their status and metrics."""

    name = "SageMaker model package"
    key = "nlp_sagemaker_model_package"
    format_str = _SAGEMAKER_CONSOLE + "/model-registry/{group_name}"


class SageMakerEndpointLink(BaseAwsLink):
    name = "SageMaker endpoint"
    key = "nlp_sagemaker_endpoint"
    format_str = _SAGEMAKER_CONSOLE + "/endpoints/{endpoint_name}"


@best_effort
def persist_sagemaker(link: type[BaseAwsLink], context, operator, **names: str) -> None:
    """``link``'s XCom, with the region and partition of the operator's hook and ``names`` escaped for a URL.

    Pushed whatever ``do_xcom_push`` says, unlike ``BaseAwsLink.persist``: a task's result and its links are
    different things."""
    context["ti"].xcom_push(
        key=link.key,
        value={
            "region_name": operator.hook.conn_region_name,
            "aws_domain": BaseAwsLink.get_aws_domain(operator.hook.conn_partition),
            **{key: quote(value, safe="") for key, value in names.items()},
        },
    )


@best_effort
def persist_sagemaker_endpoint(context, operator, endpoint: str) -> None:
    """Keep the endpoint's console page and the URL clients invoke it at (``sagemaker-runtime``'s, of the
    operator's connection: its region, partition and any endpoint URL it sets)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    persist_sagemaker(SageMakerEndpointLink, context, operator, endpoint_name=endpoint)
    runtime = AwsBaseHook(
        aws_conn_id=operator.aws_conn_id, region_name=operator.region_name, client_type="sagemaker-runtime"
    ).conn.meta.endpoint_url
    EndpointUrlLink.persist(context, f"{runtime}/endpoints/{quote(endpoint, safe='')}/invocations")


# ---- Kubernetes objects in the EKS console ------------------------------------------------------------------------
class _EksObjectLink(BaseAwsLink):
    """A namespaced object of the cluster on the EKS console's Resources pages."""

    kind: ClassVar[str]  # the console's path for the kind: deployments, services, pods, jobs
    key = "nlp_eks_server"

    def format_link(self, **persisted) -> str:
        if not persisted.get("cluster"):
            return ""
        path = "/".join(quote(part, safe="") for part in (persisted["cluster"], self.kind, persisted["name"]))
        query = urlencode({"namespace": persisted["namespace"]})
        return (
            BASE_AWS_CONSOLE_LINK.format(aws_domain=persisted["aws_domain"])
            + f"/eks/home?region={persisted['region_name']}#/clusters/{path}?{query}"
        )


class EksDeploymentLink(_EksObjectLink):
    name, kind = "Kubernetes Deployment", "deployments"


class EksServiceLink(_EksObjectLink):
    name, kind = "Kubernetes Service", "services"


@best_effort
def persist_eks_server(context, cluster: str, aws_conn_id: str, name: str, namespace: str) -> None:
    """Keep where the server's Deployment and Service are (the same name and namespace) on the EKS console."""
    context["ti"].xcom_push(
        key=_EksObjectLink.key,
        value={"cluster": cluster, "name": name, "namespace": namespace, **aws_console(aws_conn_id)},
    )


# ---- attaching links to a task ----------------------------------------------------------------------------------
def with_links(operator, *links: BaseOperatorLink):
    """``operator`` with ``links`` among its extra links (an instance's own, read by the DAG's serialisation and
    by the worker as the class's would be): for a task whose operator class has other links or none."""
    operator.operator_extra_links = (*operator.operator_extra_links, *links)
    return operator


@dataclass(frozen=True)
class LinkedStep:
    """A platform's step (an ``@task``, or a function that adds a task) whose task carries ``links``.
    ``function`` is the ``@task``'s own function, as on the ``@task`` itself."""

    step: Callable
    links: tuple[BaseOperatorLink, ...] = ()

    def __call__(self, *args, **kwargs):
        output = self.step(*args, **kwargs)
        with_links(output.operator, *self.links)
        return output

    @property
    def function(self) -> Callable:
        return getattr(self.step, "function", self.step)


def linked(*links: BaseOperatorLink) -> Callable[[Callable], LinkedStep]:
    """Decorate a step (above its ``@task``) so that the task it adds carries ``links``."""
    return lambda step: LinkedStep(step, links)
