"""The Kubernetes platform (Amazon EKS first): each step a pod of the task image, the rollout a Deployment.

    stage_dataset, quantize, evaluate   KubernetesPodOperator pods: ``python -m tasks stage|quantize|evaluate``;
                                        quantize on the server's nodes (``compression_node_features`` moves it)
    plan_trials, trial, choose_setting  tuning (``tuning_trials`` > 0): a ``tune plan`` pod, one
                                        ``train --score-only`` pod per planned trial (mapped, a few at once as
                                        the pool ``nlp_tuning`` allows), a ``tune select`` pod; no pod when off
    train                               one pod, or ``training_workers`` workers: an Indexed Job under a headless
                                        Service (default), or a Kubeflow TFJob (``training_backend``), with the
                                        setting tuning chose
    register / reject / mark_production ``python -m tasks registry`` pods, the registry beside the artefacts
    deploy                              server-side apply of the server's Deployment, Service, PDB (and HPA),
                                        then wait for the rollout; one that does not complete is undone
    smoke_test                          a pod in the cluster (``python -m tasks smoke-test``) sends the smoke
                                        pairs to the Service's cluster DNS name; failure → ``rollback``
                                        applies the previous revision (image, settings, model) again
    monitor (nlp_monitor_eks)           a ``python -m tasks monitor`` pod compares the window's capture with
                                        the production model's traffic baseline (monitoring.py)

With ``capture_sample_rate`` above 0 the server captures what it serves into ``capture_root()``
(``capture/nlp_eks`` under the artefact root): on the volume through a writable mount of that folder alone
(the model stays read-only), on S3 with the serving account's credentials.

Artefacts live on a shared volume (a ReadWriteMany PVC, e.g. Amazon EFS) mounted at ``/artefacts`` (Variable
``nlp_k8s_volume_path``) in every pod: ``/artefacts/nlp_eks/RUN_KEY/STEP/tryN``, one new folder per try
(never rewritten: the registry names it), the registry at ``/artefacts/registry.sqlite``. When the Variable
``nlp_artefact_root`` is ``s3://bucket/prefix``, they live there instead and no volume is mounted: the pods
read and write S3 with their service account's credentials (EKS IRSA or Pod Identity), the same prefix per
try, the registry file beside them. Each step writes its output atomically; its result comes back as the
pod's termination message, so Airflow's workers never mount the volume.
Cluster settings are Airflow Variables: ``nlp_k8s_conn_id`` (the Kubernetes connection,
default ``kubernetes_default``; in-cluster or a kubeconfig), or ``nlp_eks_cluster_name`` (access through the
amazon provider's ``EksHook`` with the AWS connection ``nlp_aws_conn_id``), ``nlp_k8s_namespace`` (``nlp``), ``nlp_task_image`` (required),
``nlp_k8s_service_account`` (``nlp-pipeline``), ``nlp_k8s_serving_service_account`` (the server's and smoke
test's read-only identity, ``nlp-serving``), ``nlp_k8s_volume_claim`` (``nlp-artefacts``) and
``nlp_k8s_server`` (the Deployment and Service, ``nlp-paraphrase``). Pod sizes, CPU features and
tolerations, workers and the server's replicas are Params.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from airflow.sdk import Variable, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from nlp_pipeline import artefacts, commands, decisions, limits, monitoring, policy
from nlp_pipeline.assets import MODEL_CANDIDATES, MODEL_PRODUCTION, STAGED_DATA, model_event
from nlp_pipeline.hooks.eks_access import ClusterAccess, eks_access
from nlp_pipeline.links import (
    EVALUATION_LINKS,
    EksDeploymentLink,
    EksServiceLink,
    EndpointUrlLink,
    RegisteredModelCardLink,
    linked,
    persist_eks_server,
    persist_evaluation,
    with_links,
)
from nlp_pipeline.operators.kubernetes import (
    NoPod,
    PlanPodOperator,
    StepPodOperator,
    TrainOperator,
    TrialPodOperator,
    check_tfjobs_served,
)
from nlp_pipeline.params import TFJOB, TRAINING_BACKEND
from nlp_pipeline.platform import XCom
from nlp_pipeline.specs import kubernetes as manifests
from nlp_pipeline.specs import kubernetes_limits
from tasks.runtime.layout import REGISTRY_FILE
from tasks.tuning.plan import SCORES, TRIALS
from tasks.tuning.results import TUNING

log = logging.getLogger(__name__)

DAG_ID = "nlp_eks"  # the DAG whose server this module rolls out (dags/nlp_eks.py)
ROLLOUT_START = "deploy"  # the first task of the rollout: choose_rollout's branch target
K8S_CONN_ID = "{{ var.value.get('nlp_k8s_conn_id', 'kubernetes_default') }}"
# On the Deployment, what a rollback goes back to: the pod template (image, settings, model and its digest)
# and the lineage annotations it had before this run's rollout changed anything (JSON).
PREVIOUS_REVISION = "nlp.pipeline/previous-revision"
# On the Deployment, what its model was trained from (the training cache reads them); a rollback drops them.
DATA_FINGERPRINT = "nlp.pipeline/data-fingerprint"
TRAINING_CONFIG = "nlp.pipeline/training-config"
# On the Deployment, the registry version of the model it serves (the monitor DAG's drift events name it).
MODEL_VERSION = "nlp.pipeline/model-version"
# Seconds between status polls of pods, TFJobs and rollouts (read at parse time; the tests poll every second).
CHECK_INTERVAL = int(os.environ.get("NLP_K8S_POLL_SECONDS", "10"))
STARTUP_CHECK = min(CHECK_INTERVAL, 5)  # how often a pending pod is looked at (the provider's default: 5 s)


@dataclass(frozen=True)
class ClusterSettings:
    conn_id: str
    namespace: str
    image: str
    service_account: str
    serving_account: str  # the inference server's and smoke test's: reads models, writes nothing
    volume_claim: str | None  # None: the artefacts live on S3 (``s3_root``), no volume is mounted
    volume_path: str
    s3_root: str | None
    server: str
    eks_cluster: str | None  # access through the amazon provider (EksHook) instead of the connection alone
    aws_conn_id: str

    @property
    def storage_root(self) -> str:
        return self.s3_root or self.volume_path

    @property
    def registry(self) -> str:
        return f"{self.storage_root}/{REGISTRY_FILE}"


def cluster() -> ClusterSettings:
    root = Variable.get("nlp_artefact_root", default="")
    s3_root = root.rstrip("/") if root.startswith("s3://") else None
    image = Variable.get("nlp_task_image", None)
    if not image:
        raise AirflowFailException(
            "nlp_eks needs the Airflow Variable nlp_task_image: the task image the pods run (docs/eks.md, Pointing nlp_eks at a cluster)"
        )
    return ClusterSettings(
        conn_id=Variable.get("nlp_k8s_conn_id", default="kubernetes_default"),
        namespace=Variable.get("nlp_k8s_namespace", default="nlp"),
        image=image,
        service_account=Variable.get("nlp_k8s_service_account", default="nlp-pipeline"),
        serving_account=Variable.get("nlp_k8s_serving_service_account", default="nlp-serving"),
        volume_claim=None if s3_root else Variable.get("nlp_k8s_volume_claim", default="nlp-artefacts"),
        volume_path=Variable.get("nlp_k8s_volume_path", default="/artefacts").rstrip("/"),
        s3_root=s3_root,
        server=Variable.get("nlp_k8s_server", default="nlp-paraphrase"),
        eks_cluster=Variable.get("nlp_eks_cluster_name", default=None),
        aws_conn_id=Variable.get("nlp_aws_conn_id", default="aws_default"),
    )


@contextmanager
def cluster_config() -> Iterator[ClusterAccess]:
    """The task's access to the cluster. With the Variable ``nlp_eks_cluster_name``, the amazon provider's: a
    kubeconfig and credentials file written by ``EksHook`` from the AWS connection (``nlp_aws_conn_id``), tokens
    from STS without the aws CLI, the credentials renewed from the connection when the API says 401, both files
    removed afterwards. Otherwise the Kubernetes connection alone (in-cluster, or its kubeconfig)."""
    settings = cluster()
    if not settings.eks_cluster:
        yield ClusterAccess()
        return
    with eks_access(settings.eks_cluster, settings.namespace, settings.aws_conn_id) as access:
        yield access


def step_output(context, step: str) -> str:
    """Where the step writes: ``/artefacts/nlp_eks/RUN_KEY/STEP/tryN-HASH`` on the volume, or
    ``s3://.../nlp_eks/RUN_KEY/STEP/tryN-HASH`` on S3: one new folder per try and run (HASH: the run's, since a
    run deleted and created again starts at try 1 and the worker cannot see the volume to claim a name), so a
    re-run never rewrites the bytes a registry entry names. The step reports the place in its result, which is
    what the next steps read (a retry may re-attach to an earlier try's pod, and then reports that try's folder)."""
    settings = cluster()
    folder = f"{settings.storage_root}/{context['dag'].dag_id}/{artefacts.run_key(context)}/{step}"
    return f"{folder}/{artefacts.try_folder(context['ti'].try_number, context['run_id'])}"


def capture_root() -> str:
    """Where nlp_eks's server writes what it captures and the monitor reads it: ``capture/nlp_eks`` under the
    artefact root, on the volume or on S3."""
    return artefacts.capture_uri(cluster().storage_root, DAG_ID)


def _placement(params) -> manifests.Placement:
    """Where the steps' pods run: on nodes with the ``node_features``, tolerating the ``tolerations``."""
    return manifests.Placement(node_features=tuple(params["node_features"]), tolerations=tuple(params["tolerations"]))


def _server_placement(params) -> manifests.Placement:
    """Where the inference server's pods run: the endpoint's nodes."""
    return _placement(params)


def describe_nodes(placement: manifests.Placement) -> str:
    """The node class a placement stands for, as ``--target-hardware`` names it."""
    if not placement.node_features:
        return "any node"
    return "nodes with " + ", ".join(f"{feature}=true" for feature in placement.node_features)


def compression_placement(params) -> tuple[manifests.Placement, str]:
    """(the quantize pod's placement, its ``--target-hardware``): the server's, unless the run's
    ``compression_node_features`` names other CPU features (decisions.compression_hardware)."""
    server, features = _server_placement(params), params["compression_node_features"]
    override = None if features is None else replace(server, node_features=tuple(features))
    return decisions.compression_hardware(server, override, describe_nodes, "compression_node_features")


def _step_resources(params) -> manifests.Resources:
    cpu, memory = params["step_cpu"], params["step_memory"]
    return manifests.Resources(cpu, cpu, memory, memory)  # Guaranteed QoS: whole cores, no throttling


def _pod(context, arguments: list, placement: manifests.Placement | None = None) -> dict:
    """A step's pod running ``python -m tasks ARGUMENTS``, placed by ``placement`` (the steps' by default)."""
    params, settings = context["params"], cluster()
    return manifests.step_pod(
        settings.namespace,
        settings.image,
        [str(argument) for argument in arguments],
        resources=_step_resources(params),
        placement=_placement(params) if placement is None else placement,
        service_account=settings.service_account,
        volume_claim=settings.volume_claim,
        mount_path=settings.volume_path,
    )


# How every step's pod is reached and watched: the cluster access, the pod's startup wait and the polls.
_POD_WATCH = {
    "cluster_config": cluster_config,
    "kubernetes_conn_id": K8S_CONN_ID,
    "startup_timeout_seconds": 900,
    "startup_check_interval_seconds": STARTUP_CHECK,
    "poll_interval": CHECK_INTERVAL,
}


def _step(
    task_id: str,
    step: str,
    build_arguments,
    summarize,
    placement=_placement,
    build_pod=None,
    operator: type[StepPodOperator] = StepPodOperator,
    **kwargs,
) -> StepPodOperator:
    """The step's pod operator; ``placement`` (of the run's Params) says where its pod runs, unless
    ``build_pod`` builds a pod of its own."""
    return operator(
        task_id=task_id,
        step=step,
        build_pod=build_pod or (lambda context: _pod(context, build_arguments(context), placement(context["params"]))),
        summarize=summarize,
        **_POD_WATCH,
        **kwargs,
    )


# ---- stage_dataset ------------------------------------------------------------------------------------------------
def check_limits(params) -> None:
    """Fail the run, not retried, when its Params ask more of the cluster than the Variable ``nlp_k8s_limits``
    allows: a Param's schema cannot read a Variable when the run is triggered, so stage_dataset, the task of
    the run's first pod, checks before that pod exists (specs/kubernetes_limits.py)."""
    try:
        limits = kubernetes_limits.Limits.from_variable(Variable.get(kubernetes_limits.VARIABLE, default=None))
        kubernetes_limits.check(params, limits)
    except kubernetes_limits.LimitError as error:
        raise AirflowFailException(str(error)) from None


def check_training_backend(params) -> None:
    """Fail the run, not retried, before its first pod when it would train on TFJobs the cluster does not serve
    (the train task checks again before it creates anything: operators/kubernetes.py)."""
    if params["training_workers"] > 1 and params[TRAINING_BACKEND] == TFJOB:
        with cluster_config() as access:
            check_tfjobs_served(access.hook(cluster().conn_id))


def _stage_arguments(context) -> list:
    check_limits(context["params"])
    check_training_backend(context["params"])
    return commands.command("stage", context["params"], output=step_output(context, "staged"))


def stage_dataset():
    return _step(
        "stage_dataset",
        "stage",
        _stage_arguments,
        lambda context, result: {"data": result["output"]} | result,
        outlets=[STAGED_DATA],
    ).output


# ---- tuning: plan_trials >> trial (mapped over the plan) >> choose_setting ----------------------------------------
SEARCH = "search"  # plan_trials' XCom with the search's folder: the trials write in it, tune select reads it
DEADLINE = "deadline"  # plan_trials' XCom with the search's deadline (ISO 8601, UTC): no trial runs past it


def _planning(context) -> NoPod | None:
    """No plan pod when tuning is off: no trial (the mapped ``trial`` is then skipped)."""
    if context["params"]["tuning_trials"]:
        return None
    log.info("tuning is off (tuning_trials is 0): training takes the run's Params")
    return NoPod([])


def _plan_arguments(context) -> list:
    return commands.command("tune", context["params"], action="plan", output=step_output(context, "tune"))


def _planned(context, plan: dict) -> list[dict]:
    """The plan's trials, which ``trial`` is mapped over; the search's folder (as the pod reported it: a retry may
    take an earlier try's pod) and its deadline, ``limits.TUNING_BUDGET`` from now, go along as the XComs
    ``search`` and ``deadline``."""
    deadline = datetime.now(UTC) + limits.TUNING_BUDGET
    context["ti"].xcom_push(key=SEARCH, value=plan["output"])
    context["ti"].xcom_push(key=DEADLINE, value=deadline.isoformat())
    log.info("%d trials planned; the search in %s ends by %s", len(plan["trials"]), plan["output"], deadline)
    return plan["trials"]


def _search(context) -> str:
    return context["ti"].xcom_pull(task_ids="plan_trials", key=SEARCH)


def _seconds_left(context) -> float:
    """Seconds until the search's deadline: a trial starts only before it, and its pod is stopped there."""
    deadline = datetime.fromisoformat(context["ti"].xcom_pull(task_ids="plan_trials", key=DEADLINE))
    return (deadline - datetime.now(UTC)).total_seconds()


def _trial_pod(context, trial: dict) -> dict:
    """A planned trial's pod: the train step on the trial's setting for at most ``tuning_max_steps`` steps, scoring
    only, into the search's ``trials/NAME``; sized and placed as the train pod, and stopped by Kubernetes at the
    search's deadline (``activeDeadlineSeconds``). The trials stop hopeless ones early through the search's
    ``scores/``, which they all reach: on the shared volume, or under the run's S3 prefix (the step reads and
    writes it with fsspec, as its outputs)."""
    params, search = context["params"], _search(context)
    arguments = commands.trial_command(
        params,
        trial,
        data=context["ti"].xcom_pull(task_ids="stage_dataset")["data"],
        output=f"{search}/{TRIALS}/{trial['name']}",
        early_stopping_dir=f"{search}/{SCORES}",
        max_steps=commands.values("tune", params)["max_steps"],  # the plan's budget per trial
    )
    pod = _pod(context, arguments)
    pod["spec"]["activeDeadlineSeconds"] = max(1, math.ceil(_seconds_left(context)))
    return pod


def _choosing(context) -> NoPod | None:
    """No select pod when no trial was planned (tuning off): the setting is None."""
    return None if context["ti"].xcom_pull(task_ids="plan_trials") else NoPod(None)


def _select_arguments(context) -> list:
    return commands.command("tune", context["params"], action="select", output=_search(context))


def _chosen(context, tuning: dict) -> dict:
    """``tune select``'s result (the search's tuning.json) as the setting train takes: the best trial's, its scores,
    how many trials ran and where tuning.json is."""
    best = tuning["best"]
    log.info(
        "best of %d trials: %s (accuracy %s, F1 %s)", len(tuning["trials"]), best["name"], best["accuracy"], best["f1"]
    )
    return decisions.chosen_setting(tuning, f"{tuning['output']}/{TUNING}")


def tune(staged: XCom) -> XCom:
    """Plan the search (a pod), run its trials as pods mapped over the plan (as many at once as the pool
    ``nlp_tuning`` has slots), then choose the best setting (a pod); None when ``tuning_trials`` is 0. ``tune``
    prints its result (a plan of 32 trials is more than a termination message keeps): the operators read it from
    the pod's log."""
    plan = _step(
        "plan_trials",
        "tune",
        _plan_arguments,
        _planned,
        operator=PlanPodOperator,
        result_without_pod=_planning,
        result_in_log=True,
        name="nlp-tune-plan",
    )
    staged >> plan
    trials = TrialPodOperator.partial(
        task_id="trial",
        pool=limits.TUNING_POOL,
        map_index_template="{{ task.trial['name'] }}",
        build_trial_pod=_trial_pod,
        seconds_left=_seconds_left,
        **_POD_WATCH,
    ).expand(trial=plan.output)
    chosen = _step(
        decisions.CHOOSE_SETTING,
        "tune",
        _select_arguments,
        _chosen,
        result_without_pod=_choosing,
        result_in_log=True,
        trigger_rule="none_failed",  # the trials are skipped when tuning is off
        name="nlp-tune-select",
    )
    trials >> chosen
    return chosen.output


# ---- train --------------------------------------------------------------------------------------------------------
def _train_arguments(context) -> list:
    (params, tuned), staged = decisions.run_params(context), context["ti"].xcom_pull(task_ids="stage_dataset")
    decisions.skip_training_if_cached(production_model(context), staged["fingerprint"], params)
    return commands.command(
        "train", params, data=staged["data"], output=step_output(context, "model"), tuning=tuned and tuned["tuning"]
    )


def _training_job(context) -> list[dict]:
    """The objects of a multi-worker training, as ``training_backend`` says: a headless Service and an Indexed
    Job (stock Kubernetes), or a Kubeflow TFJob. Named once per run, so that a retry finds the job an earlier
    try started."""
    params, settings = context["params"], cluster()
    training = manifests.Training(
        name=f"nlp-train-{artefacts.run_suffix(artefacts.run_key(context), context['run_id'])}".lower(),
        namespace=settings.namespace,
        image=settings.image,
        arguments=[str(argument) for argument in _train_arguments(context)],
        workers=params["training_workers"],
        resources=_step_resources(params),
        placement=_placement(params),
        service_account=settings.service_account,
        volume_claim=settings.volume_claim,
        mount_path=settings.volume_path,
    )
    if params[TRAINING_BACKEND] == TFJOB:
        return [manifests.tf_job(training)]
    return [manifests.headless_service(training), manifests.indexed_job(training)]


def train(staged: XCom, tuned: XCom) -> XCom:
    operator = TrainOperator(
        task_id="train",
        build_pod=lambda context: _pod(context, _train_arguments(context)),
        build_job=_training_job,
        workers=lambda context: context["params"]["training_workers"],
        summarize=lambda context, result: {"model": result["output"]} | result,
        job_poll_interval=CHECK_INTERVAL,
        **_POD_WATCH,
    )
    [staged, tuned] >> operator
    return operator.output


# ---- quantize -----------------------------------------------------------------------------------------------------
def _quantize_arguments(context) -> list:
    ti, params = context["ti"], context["params"]
    model, data = ti.xcom_pull(task_ids="train")["model"], ti.xcom_pull(task_ids="stage_dataset")["data"]
    target = compression_placement(params)[1]
    return commands.command(
        "quantize", params, model=model, data=data, output=step_output(context, "quantized"), target_hardware=target
    )


def _unquantized(context) -> NoPod | None:
    """No quantize pod when quantisation is off: the trained model is the candidate."""
    candidate = decisions.unquantized_candidate(context["params"], context["ti"].xcom_pull(task_ids="train"))
    return None if candidate is None else NoPod(candidate)


def quantize(staged, trained):
    operator = _step(
        "quantize",
        "quantize",
        _quantize_arguments,
        lambda context, result: {"model": result["output"]} | result,
        placement=lambda params: compression_placement(params)[0],
        result_without_pod=_unquantized,
    )
    [staged, trained] >> operator
    return operator.output


# ---- evaluate -----------------------------------------------------------------------------------------------------
def candidate_model(ti) -> str:
    """The quantize task's candidate: the INT8 or FP32 model it chose, or the trained one."""
    return ti.xcom_pull(task_ids="quantize")["model"]


@contextmanager
def _api_client():
    """The Kubernetes API client of the task's access: every call through it (applies, rollout waits) outlives
    the EKS token."""
    with cluster_config() as access:
        yield access.hook(cluster().conn_id).api_client


def production_model(context=None) -> dict | None:
    """The model the server's Deployment serves (``model``, its registry ``version``) and what it was trained from
    (``data_fingerprint``, ``config``, as deploy noted them), or None when there is no server yet. A server
    deployed before versions were noted has ``version`` None."""
    from nlp_pipeline.hooks.kubernetes import live_deployment, served_model

    settings = cluster()
    with _api_client() as api_client:
        live = live_deployment(api_client, settings.server, settings.namespace)
    if not (model := served_model(live)):
        return None
    annotations = live["metadata"].get("annotations") or {}
    return {
        "model": model,
        "version": annotations.get(MODEL_VERSION),
        "data_fingerprint": annotations.get(DATA_FINGERPRINT),
        "config": json.loads(annotations.get(TRAINING_CONFIG, "null")),
    }


def _evaluate_arguments(context) -> list:
    ti, champion = context["ti"], production_model(context)
    return commands.command(
        "evaluate",
        context["params"],
        **policy.thresholds(context),
        model=candidate_model(ti),
        data=ti.xcom_pull(task_ids="stage_dataset")["data"],
        output=step_output(context, "evaluation"),
        champion=champion and champion["model"],
    )


def _evaluation(context, result: dict) -> dict:
    model = candidate_model(context["ti"])
    persist_evaluation(context, result["output"], model, cluster().aws_conn_id)
    return {"evaluation": result["output"], "model": model} | result


def evaluate(staged, candidate):
    operator = with_links(_step("evaluate", "evaluate", _evaluate_arguments, _evaluation), *EVALUATION_LINKS)
    [staged, candidate] >> operator
    return operator.output


# ---- register / reject / mark_production: the registry beside the artefacts ---------------------------------------
def _registration(status_of):
    def arguments(context) -> list:
        evaluation = context["ti"].xcom_pull(task_ids="evaluate")
        config = decisions.training_config(decisions.run_params(context)[0])
        return commands.registration(cluster().registry, evaluation, status_of(context), config, context)

    return arguments


def recorded(asset):
    """The registry pod's result: its entry, which is also the task's event on ``asset`` (assets.py)."""

    def summarize(context, entry: dict) -> dict:
        model_event(context, asset, entry)
        return entry

    return summarize


@linked(RegisteredModelCardLink())
def register(evaluation):
    """Record the promoted candidate: approved, or a candidate waiting for a person's approval."""
    status = _registration(lambda context: "candidate" if policy.requires_approval(context) else "approved")
    operator = _step("register", "registry", status, recorded(MODEL_CANDIDATES), outlets=[MODEL_CANDIDATES])
    evaluation >> operator
    return operator.output


@linked(RegisteredModelCardLink())
def reject(evaluation):
    """Record the rejected candidate, archived with the gate's reasons."""
    archived = _registration(lambda context: "archived")
    operator = _step("reject", "registry", archived, recorded(MODEL_CANDIDATES), outlets=[MODEL_CANDIDATES])
    evaluation >> operator
    return operator.output


def mark_production(entry, smoke):
    def arguments(context) -> list:
        entry = context["ti"].xcom_pull(task_ids="register")
        return commands.command("registry", {}, registry=cluster().registry, action="promote", id=entry["id"])

    operator = _step("mark_production", "registry", arguments, recorded(MODEL_PRODUCTION), outlets=[MODEL_PRODUCTION])
    [entry, smoke] >> operator
    return operator.output


# ---- monitor (nlp_monitor_eks, monitoring.py) ---------------------------------------------------------------------
def _monitor_pod(context, production_task: str) -> dict:
    """The monitor step over the window of ``capture_root()``, against the production model's traffic baseline,
    into the monitor run's ``monitoring`` folder (``step_output``): under the pipeline's service account, which
    reads the capture and the model and writes the report (the volume mounted as for every step, or S3)."""
    settings, production = cluster(), context["ti"].xcom_pull(task_ids=production_task)
    given = monitoring.monitor_arguments(context, production, capture_root())
    arguments = commands.command("monitor", context["params"], **given, output=step_output(context, "monitoring"))
    return manifests.monitor_pod(
        settings.namespace,
        settings.image,
        [str(argument) for argument in arguments],
        service_account=settings.service_account,
        deadline_seconds=int(limits.MONITOR_LIMIT.total_seconds()),
        volume_claim=settings.volume_claim,
        mount_path=settings.volume_path,
    )


def monitor(production: XCom) -> XCom:
    """nlp_monitor_eks's monitor task: a ``python -m tasks monitor`` pod; its result (the termination message,
    as every step's) with ``uri``, the monitoring folder it wrote."""
    operator = _step(
        monitoring.MONITOR,
        "monitor",
        None,
        lambda context, result: result | {"uri": result["output"]},
        build_pod=lambda context: _monitor_pod(context, production.operator.task_id),
    )
    production >> operator
    return operator.output


# ---- rollout ------------------------------------------------------------------------------------------------------
def _server_objects(
    context,
    model: str,
    lineage: dict[str, str],
    *,
    model_digest: str | None = None,
    previous: dict | None = None,
    live: dict | None = None,
) -> list[dict]:
    """Service, Deployment serving ``model`` (verified by ``model_digest``; noting the model's ``lineage`` and
    the ``previous`` revision; capturing as the run's Params say, or as the ``live`` Deployment's server does when
    ``capture_sample_rate`` is null), PDB, and the HPA when autoscaling is on."""
    params, settings = context["params"], cluster()
    name, namespace, replicas = settings.server, settings.namespace, params["server_replicas"]
    cpu, memory = params["server_cpu"], params["server_memory"]
    deployment = manifests.inference_deployment(
        name,
        namespace,
        settings.image,
        model,
        replicas=replicas,
        resources=manifests.Resources(cpu, cpu, memory, memory),
        placement=_server_placement(params),
        service_account=settings.serving_account,
        volume_claim=settings.volume_claim,
        mount_path=settings.volume_path,
        model_digest=model_digest,
        capture=commands.capture_flags(params, capture_root(), manifests.served_capture(live)),
    )
    noted = {PREVIOUS_REVISION: json.dumps(previous, sort_keys=True)} if previous else {}
    deployment["metadata"]["annotations"] = lineage | noted
    objects = [
        manifests.inference_service(name, namespace),
        deployment,
        manifests.pod_disruption_budget(name, namespace),
    ]
    if params["autoscale_max_replicas"]:
        objects.append(
            manifests.horizontal_pod_autoscaler(
                name,
                namespace,
                minimum=replicas,
                maximum=max(replicas, params["autoscale_max_replicas"]),
                cpu_percent=70,
            )
        )
    return objects


def _restore_objects(context, revision: dict) -> list[dict]:
    """The server objects that put ``revision`` back: its pod template (image, settings, model) and lineage."""
    objects = _server_objects(context, _revision_model(revision), revision["lineage"])
    deployment = next(manifest for manifest in objects if manifest["kind"] == "Deployment")
    deployment["spec"]["template"] = revision["template"]
    return objects


def _revision_of(deployment: dict | None) -> dict | None:
    """What the Deployment runs now, as a rollback would restore it: its pod template and lineage."""
    if not deployment:
        return None
    annotations = deployment["metadata"].get("annotations") or {}
    lineage = {
        key: annotations[key] for key in (DATA_FINGERPRINT, TRAINING_CONFIG, MODEL_VERSION) if key in annotations
    }
    return {"template": deployment["spec"]["template"], "lineage": lineage}


def _noted_revision(deployment: dict) -> dict | None:
    """The revision the Deployment ran before this run's rollout, as deploy noted it."""
    noted = (deployment["metadata"].get("annotations") or {}).get(PREVIOUS_REVISION)
    return json.loads(noted) if noted else None


def _revision_model(revision: dict | None) -> str | None:
    from nlp_pipeline.hooks.kubernetes import served_model

    return revision and served_model({"spec": {"template": revision["template"]}})


def _lineage(context) -> dict[str, str]:
    """What this run's model was trained from, noted on the Deployment that serves it."""
    return {
        DATA_FINGERPRINT: context["ti"].xcom_pull(task_ids="stage_dataset")["fingerprint"],
        TRAINING_CONFIG: json.dumps(decisions.training_config(decisions.run_params(context)[0]), sort_keys=True),
    }


def _roll_out(context, api_client, objects: list[dict]) -> None:
    """Apply the server objects and wait for the rollout. With autoscaling the Deployment's replicas are
    handed over to the HPA (hooks/kubernetes.py, ``apply_autoscaled``); without, the HPA goes first, so it
    cannot scale the count just applied."""
    from nlp_pipeline.hooks import kubernetes as kube_api

    settings, autoscaled = cluster(), bool(context["params"]["autoscale_max_replicas"])
    if not autoscaled:
        kube_api.delete(api_client, "HorizontalPodAutoscaler", settings.server, settings.namespace)
    for manifest in objects:
        if manifest["kind"] == "Deployment" and autoscaled:
            kube_api.apply_autoscaled(api_client, manifest)
        else:
            kube_api.apply(api_client, manifest)
    _wait_for_server(context, api_client)


def _wait_for_server(context, api_client) -> None:
    """Wait for the server's rollout, for the run's ``rollout_timeout_minutes`` (RolloutFailed after)."""
    from nlp_pipeline.hooks import kubernetes as kube_api

    settings = cluster()
    kube_api.wait_for_rollout(
        api_client,
        settings.server,
        settings.namespace,
        timeout=context["params"]["rollout_timeout_minutes"] * 60,
        poll=CHECK_INTERVAL,
    )


def service_url(name: str, namespace: str) -> str:
    """The server's URL inside the cluster: its Service's cluster DNS name, port 80."""
    return f"http://{name}.{namespace}.svc.cluster.local"


@linked(EndpointUrlLink(), EksDeploymentLink(), EksServiceLink())
@task(trigger_rule="none_failed_min_one_success")
def deploy(entry: dict, **context) -> dict:
    """Roll the server out with the entry's model; a rollout that does not complete is undone, then fails.
    Its links: the Service's URL in the cluster, and with ``nlp_eks_cluster_name`` the Deployment's and the
    Service's pages in the EKS console."""

    settings = cluster()
    EndpointUrlLink.persist(context, service_url(settings.server, settings.namespace))
    if settings.eks_cluster:
        persist_eks_server(context, settings.eks_cluster, settings.aws_conn_id, settings.server, settings.namespace)
    with _api_client() as api_client:
        return _deploy(context, api_client, settings, entry)


def _deploy(context, api_client, settings: ClusterSettings, entry: dict) -> dict:
    from kubernetes.client.exceptions import ApiException

    from nlp_pipeline.hooks import kubernetes as kube_api

    live = kube_api.live_deployment(api_client, settings.server, settings.namespace)
    # A retry after this run's apply finds its own model serving: what it replaced is noted on the Deployment.
    if kube_api.served_model(live) == entry["model"]:
        previous = _noted_revision(live)
    else:
        previous = _revision_of(live)
    previous_model = _revision_model(previous)
    log.info(
        "rolling %s/%s out with %s on %s (%s before)",
        settings.namespace,
        settings.server,
        entry["model"],
        settings.image,
        previous_model or "nothing",
    )
    # The entry's digest: the server refuses a model whose bytes are not the ones registered.
    objects = _server_objects(
        context,
        entry["model"],
        _lineage(context) | {MODEL_VERSION: entry["version"]},
        model_digest=entry.get("digest"),
        previous=previous,
        live=live,
    )
    try:
        _roll_out(context, api_client, objects)
    except kube_api.RolloutFailed as error:
        if not previous:
            raise AirflowFailException(f"{error}; there is no earlier revision to go back to") from None
        log.error("%s; applying the previous revision again (%s)", error, previous_model)
        try:
            _roll_out(context, api_client, _restore_objects(context, previous))
        except (kube_api.RolloutFailed, ApiException) as restore_error:
            raise AirflowFailException(
                f"{error}; restoring the previous revision ({previous_model}) failed too: {restore_error}"
            ) from None
        raise AirflowFailException(f"{error}; the previous revision ({previous_model}) is serving again") from None
    return {
        "deployment": settings.server,
        "namespace": settings.namespace,
        "model": entry["model"],
        "version": entry["version"],
        "previous_model": previous_model,
    }


def _smoke_pod(context) -> dict:
    """The smoke test's pod: ``smoke-test`` against the deployed Service's cluster DNS name (port 80), under
    the serving identity, on the server's nodes (they hold the task image already, so no pull eats the pod's
    deadline)."""
    deployed, params, settings = context["ti"].xcom_pull(task_ids="deploy"), context["params"], cluster()
    url = service_url(deployed["deployment"], deployed["namespace"])
    arguments = commands.command("smoke-test", {}, url=url, expect_version=deployed["version"])
    return manifests.smoke_pod(
        settings.namespace,
        settings.image,
        [str(argument) for argument in arguments],
        service_account=settings.serving_account,
        placement=_server_placement(params),
    )


def _smoke_result(context, result: dict) -> dict:
    """The smoke test's answer, which must come from the deployed model (the step checks the contract)."""
    deployed = context["ti"].xcom_pull(task_ids="deploy")
    if result.get("model_version") != deployed["version"]:
        raise AirflowException(
            f"smoke test of Service {deployed['deployment']} failed: it answers with model"
            f" {result.get('model_version')}, not {deployed['version']}"
        )
    log.info("Service %s answers: %s", deployed["deployment"], json.dumps(result.get("labels")))
    return {"deployment": deployed["deployment"], "model_version": result["model_version"]}


def smoke_test(deployed):
    """Send the smoke pairs to the Service from a pod in the cluster; the answer must have the contract's shape
    and the new version (``python -m tasks smoke-test``)."""
    operator = _step("smoke_test", "smoke-test", None, _smoke_result, build_pod=_smoke_pod)
    deployed >> operator
    return operator.output


def _see_through(context, api_client, live: dict | None) -> None:
    """Wait for a rollout still in progress (the restore of an earlier try whose worker died before its wait
    ended); one that does not complete fails the task without a retry, never passes for "nothing to do"."""
    from nlp_pipeline.hooks import kubernetes as kube_api

    if not live or kube_api.rollout_state(live)[0]:
        return
    log.info("a rollout of %s is in progress (an earlier try's restore?): waiting for it", cluster().server)
    try:
        _wait_for_server(context, api_client)
    except kube_api.RolloutFailed as error:
        raise AirflowFailException(f"{error}; the server is on no working revision, a person must look") from None


@task(trigger_rule="one_failed")
def rollback(**context) -> None:
    """Put the server back on the revision it ran before this run (image, settings, model), when this run's
    model is the one serving."""
    from nlp_pipeline.hooks import kubernetes as kube_api

    settings, entry = cluster(), context["ti"].xcom_pull(task_ids="register")
    with _api_client() as api_client:
        live = kube_api.live_deployment(api_client, settings.server, settings.namespace)
        serving = kube_api.served_model(live)
        if not entry or serving != entry["model"]:
            _see_through(context, api_client, live)
            raise AirflowSkipException(
                f"{settings.server} serves {serving}, not this run's model: nothing to roll back"
            )
        previous = _noted_revision(live)
        if not previous:
            raise AirflowSkipException("this run created the server: there is no earlier revision to restore")
        log.info("rolling %s back from %s to %s", settings.server, serving, _revision_model(previous))
        _roll_out(context, api_client, _restore_objects(context, previous))
