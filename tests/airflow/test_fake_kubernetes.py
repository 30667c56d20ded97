"""The fake cluster's own behaviour, each written from the Kubernetes docs (tests/fakes/kubernetes.py)."""

from __future__ import annotations

import base64
import datetime
import json
import re
from types import SimpleNamespace

import pytest
from kubernetes import client, config

from tests.fakes.kubernetes import UNAUTHORIZED, FakeKubernetes, wait_for


def api_client(fake_kubernetes, tmp_path) -> client.ApiClient:
    return config.new_client_from_config(str(fake_kubernetes.kubeconfig(tmp_path / "kubeconfig")))


def serving_deployment(api: client.ApiClient, fake_kubernetes, name: str, labels: dict) -> None:
    """A Deployment whose server the fake reports up, without starting one (its URL only)."""
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "nlp"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    fake_kubernetes.broken_rollouts = True  # the controller starts no server; the test says where it is
    client.AppsV1Api(api).create_namespaced_deployment("nlp", body)
    fake_kubernetes.servers["stub"] = SimpleNamespace(url="http://127.0.0.1:40001", stop=lambda: 0)
    fake_kubernetes.serving[("nlp", name)] = "stub"


def test_service_names_resolve_to_the_server_of_the_pods_they_select_and_nothing_else(fake_kubernetes, tmp_path):
    api = api_client(fake_kubernetes, tmp_path)
    serving_deployment(api, fake_kubernetes, "web", {"app": "web"})
    for name, selector in (("web", {"app": "web"}), ("other", {"app": "other"})):
        service = {"metadata": {"name": name}, "spec": {"selector": selector, "ports": [{"port": 80}]}}
        client.CoreV1Api(api).create_namespaced_service("nlp", service)

    here, elsewhere = fake_kubernetes.addresses("nlp"), fake_kubernetes.addresses("default")

    assert here["web:80"] == here["web.nlp.svc.cluster.local:80"] == "127.0.0.1:40001"
    assert "web:80" not in elsewhere and elsewhere["web.nlp.svc:80"] == "127.0.0.1:40001"
    assert not any(address.startswith("other") for address in here)  # selects no serving pods


def test_names_are_rewritten_only_where_they_are_whole_names():
    addresses = {"web.nlp.svc.cluster.local:80": "127.0.0.1:40001", "job-0.job:2222": "127.0.0.1:40002"}

    assert FakeKubernetes.resolve("http://web.nlp.svc.cluster.local/invocations", addresses) == (
        "http://127.0.0.1:40001/invocations"
    )
    assert FakeKubernetes.resolve('["job-0.job:2222", "job-0.job:22220"]', addresses) == (
        '["127.0.0.1:40002", "job-0.job:22220"]'
    )
    assert FakeKubernetes.resolve("http://xweb.nlp.svc.cluster.local/", addresses) == (
        "http://xweb.nlp.svc.cluster.local/"
    )


# ---- authentication: EKS tokens ----------------------------------------------------------------------------------
def eks_token(access_key: str, *, cluster: str = "nlp-eks") -> str:
    """A token as the amazon provider's exec plugin makes it (a presigned STS URL), from these credentials."""
    import boto3
    from airflow.providers.amazon.aws.utils.eks_get_token import fetch_access_token_for_cluster

    session = boto3.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key="secret",
        aws_session_token="session",
        region_name="us-east-1",
    )
    return fetch_access_token_for_cluster(
        cluster,
        "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
        "us-east-1",
        session,
    )


def list_pods(fake_kubernetes, token: str):
    """(status, body) of listing the pods with ``token``."""
    configuration = client.Configuration(host=fake_kubernetes.url, api_key={"BearerToken": f"Bearer {token}"})
    try:
        client.CoreV1Api(client.ApiClient(configuration)).list_namespaced_pod("nlp")
    except client.ApiException as error:
        return error.status, json.loads(error.body)
    return 200, None


def test_an_eks_token_of_expired_credentials_or_older_than_15_minutes_gets_401_unauthorized(fake_kubernetes):
    first, second = eks_token("ASIAFIRST"), eks_token("ASIASECOND")
    assert list_pods(fake_kubernetes, first)[0] == 200

    fake_kubernetes.authentication.expire()  # the credentials of every token seen so far (ASIAFIRST's) expire
    assert list_pods(fake_kubernetes, first) == (401, UNAUTHORIZED)
    assert list_pods(fake_kubernetes, eks_token("ASIAFIRST"))[0] == 401, "a new token of the same credentials"
    assert list_pods(fake_kubernetes, second)[0] == 200, "other credentials still work"
    assert list_pods(fake_kubernetes, "fake-token")[0] == 200, "a plain token is not an EKS token"

    encoded = second.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=16)
    stale = re.sub(r"X-Amz-Date=\w+", f"X-Amz-Date={old:%Y%m%dT%H%M%SZ}", url)
    assert list_pods(fake_kubernetes, "k8s-aws-v1." + base64.urlsafe_b64encode(stale.encode()).decode())[0] == 401
    assert list_pods(fake_kubernetes, "k8s-aws-v1.bm90IGEgdXJs")[0] == 401, "not a presigned URL"


# ---- the Job controller, restarts in place, scheduling, API discovery ----------------------------------------------
def indexed_job(name: str, args: list[str], *, completions: int = 2, **spec) -> dict:
    labels = {"app": name}
    container = {"name": "c", "image": "i", "args": args}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "nlp"},
        "spec": {
            "completionMode": "Indexed",
            "completions": completions,
            "parallelism": completions,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"subdomain": name, "restartPolicy": "Never", "containers": [container]},
            },
        }
        | spec,
    }


def job_pods(fake_kubernetes, name: str) -> list[dict]:
    from tests.fakes.kubernetes import JOB_NAME_LABEL, PODS

    return [
        pod for pod in fake_kubernetes.objects(PODS, "nlp") if pod["metadata"]["labels"].get(JOB_NAME_LABEL) == name
    ]


def job_condition(fake_kubernetes, name: str) -> dict | None:
    from tests.fakes.kubernetes import JOBS

    for job in fake_kubernetes.objects(JOBS, "nlp"):
        if job["metadata"]["name"] == name:
            return next(iter((job.get("status") or {}).get("conditions") or []), None)
    return None


def test_an_indexed_job_runs_a_pod_per_index_with_its_index_and_hostname_and_completes(fake_kubernetes, tmp_path):
    from tests.fakes.kubernetes import COMPLETION_INDEX, JOBS

    api = api_client(fake_kubernetes, tmp_path)
    client.BatchV1Api(api).create_namespaced_job("nlp", indexed_job("work", ["--help"]))
    assert wait_for(lambda: job_condition(fake_kubernetes, "work"))["type"] == "Complete"

    [job] = fake_kubernetes.objects(JOBS, "nlp")
    assert (job["status"]["succeeded"], job["status"]["failed"], job["status"]["active"]) == (2, 0, 0)
    pods = sorted(job_pods(fake_kubernetes, "work"), key=lambda pod: pod["metadata"]["name"])
    for index, pod in enumerate(pods):
        name = pod["metadata"]["name"]
        assert re.fullmatch(rf"work-{index}-[0-9a-f]{{5}}", name) and pod["status"]["phase"] == "Succeeded"
        assert pod["metadata"]["annotations"][COMPLETION_INDEX] == pod["metadata"]["labels"][COMPLETION_INDEX]
        assert (pod["spec"]["hostname"], pod["spec"]["subdomain"]) == (f"work-{index}", "work")
        assert fake_kubernetes.environments[name]["JOB_COMPLETION_INDEX"] == str(index), "downward API"


def test_pod_hostnames_of_an_indexed_job_resolve_only_under_its_headless_service(fake_kubernetes, tmp_path):
    api = api_client(fake_kubernetes, tmp_path)
    fake_kubernetes.hold_pods = True
    client.BatchV1Api(api).create_namespaced_job("nlp", indexed_job("work", ["--help"]))
    assert not any(address.startswith("work-") for address in fake_kubernetes.addresses("nlp")), "no Service yet"

    plain = {"metadata": {"name": "work"}, "spec": {"selector": {"app": "work"}, "ports": [{"port": 2222}]}}
    client.CoreV1Api(api).create_namespaced_service("nlp", plain)
    assert not any(address.startswith("work-") for address in fake_kubernetes.addresses("nlp")), "not headless"
    client.CoreV1Api(api).delete_namespaced_service("work", "nlp")
    headless = plain | {"spec": plain["spec"] | {"clusterIP": "None"}}
    client.CoreV1Api(api).create_namespaced_service("nlp", headless)
    wait_for(lambda: len(job_pods(fake_kubernetes, "work")) == 2)
    assert not any(address.startswith("work-") for address in fake_kubernetes.addresses("nlp")), "pods not ready"
    client.CoreV1Api(api).patch_namespaced_service("work", "nlp", {"spec": {"publishNotReadyAddresses": True}})

    here = fake_kubernetes.addresses("nlp")
    assert here["work-0.work:2222"] != here["work-1.work:2222"], "a port per index"
    assert here["work-0.work:2222"] == here["work-0.work.nlp.svc.cluster.local:2222"].replace("x", "x")
    assert "work-2.work:2222" not in here and "work-0.work:80" not in here
    assert "work-0.work:2222" not in fake_kubernetes.addresses("default") and (
        fake_kubernetes.addresses("default")["work-0.work.nlp.svc:2222"] == here["work-0.work:2222"]
    )


def test_a_failed_index_is_retried_until_the_backoff_limit_unless_the_pod_failure_policy_fails_the_job(
    fake_kubernetes, tmp_path
):
    from tests.fakes.kubernetes import JOBS

    api = client.BatchV1Api(api_client(fake_kubernetes, tmp_path))
    bad_flag = ["stage", "--max-seq-length", "many"]  # exits 2
    api.create_namespaced_job("nlp", indexed_job("retried", bad_flag, completions=1, backoffLimit=1))
    failed = wait_for(lambda: job_condition(fake_kubernetes, "retried"), 120)
    assert (failed["type"], failed["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert len(job_pods(fake_kubernetes, "retried")) == 2, "the index ran again once"

    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2, 3]}}]}
    api.create_namespaced_job("nlp", indexed_job("bad", bad_flag, backoffLimit=6, podFailurePolicy=policy))
    failed = wait_for(lambda: job_condition(fake_kubernetes, "bad"), 120)
    assert (failed["type"], failed["reason"]) == ("Failed", "PodFailurePolicy")
    assert re.fullmatch(
        r"Container c for pod nlp/bad-\d-\w{5} failed with exit code 2 matching FailJob rule at index 0",
        failed["message"],
    )
    [job] = [job for job in fake_kubernetes.objects(JOBS, "nlp") if job["metadata"]["name"] == "bad"]
    assert job["status"]["failed"] >= 1 and len(job_pods(fake_kubernetes, "bad")) <= 2, "not retried"


def test_a_job_with_a_pod_failure_policy_must_never_restart_its_pods_in_place(fake_kubernetes, tmp_path):
    import pytest

    from tests.fakes.kubernetes import JOBS

    api = client.BatchV1Api(api_client(fake_kubernetes, tmp_path))
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2, 3]}}]}
    job = indexed_job("restarting", ["--help"], podFailurePolicy=policy)
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    with pytest.raises(client.ApiException) as refused:
        api.create_namespaced_job("nlp", job)
    assert refused.value.status == 422
    status = json.loads(refused.value.body)
    assert (status["reason"], status["message"]) == (
        "Invalid",
        'Job.batch "restarting" is invalid: spec.template.spec.restartPolicy: Invalid value: "OnFailure": '
        'only "Never" is supported when podFailurePolicy is specified',
    )
    assert status["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"
    assert fake_kubernetes.objects(JOBS) == []


def failed_creates(fake_kubernetes, kind: str, name: str) -> list[str]:
    """The messages of the Warning FailedCreate events on a ``kind`` named ``name``, as a client lists them."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name},reason=FailedCreate,type=Warning"
    api = client.CoreV1Api(
        config.new_client_from_config(str(fake_kubernetes.kubeconfig(fake_kubernetes.workdir / "k")))
    )
    return [event.message for event in api.list_namespaced_event("nlp", field_selector=selector).items]


def test_a_job_or_tfjob_whose_pods_pod_security_refuses_gets_failed_create_events_and_no_pods(
    fake_kubernetes, tmp_path
):
    from tests.fakes.kubernetes import PODS, TFJOBS

    fake_kubernetes.create_namespace({"metadata": {"name": "nlp", "labels": RESTRICTED}})
    fake_kubernetes.training_operator = True
    api = api_client(fake_kubernetes, tmp_path)
    client.BatchV1Api(api).create_namespaced_job("nlp", indexed_job("work", ["--help"]))
    tfjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "tf"},
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 2, "template": indexed_job("tf", [])["spec"]["template"]}}},
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object("kubeflow.org", "v1", "nlp", "tfjobs", tfjob)

    [refused, *_] = wait_for(lambda: failed_creates(fake_kubernetes, "Job", "work"), 10)
    assert re.fullmatch(
        r'Error creating: pods "work-\d-\w{5}" is forbidden: violates PodSecurity "restricted:latest": .*', refused
    )
    tf_refused = wait_for(lambda: failed_creates(fake_kubernetes, "TFJob", "tf"), 10)
    assert sorted(message.split('"')[1] for message in tf_refused) == ["tf-worker-0", "tf-worker-1"]
    assert failed_creates(fake_kubernetes, "Job", "tf") == [], "on the object whose controller was refused"
    assert fake_kubernetes.objects(PODS, "nlp") == [] and not fake_kubernetes.pods_run
    [job] = [obj for obj in fake_kubernetes.objects(TFJOBS, "nlp")]
    assert "Succeeded" not in str(job.get("status"))


def test_deleting_a_job_deletes_its_pods_only_with_a_cascading_propagation_policy(fake_kubernetes, tmp_path):
    api = client.BatchV1Api(api_client(fake_kubernetes, tmp_path))
    fake_kubernetes.hold_pods = True
    for name in ("orphaned", "cascaded"):
        api.create_namespaced_job("nlp", indexed_job(name, ["--help"]))
        wait_for(lambda name=name: len(job_pods(fake_kubernetes, name)) == 2)
    api.delete_namespaced_job("orphaned", "nlp")  # the API's default for a Job: orphan its pods
    api.delete_namespaced_job("cascaded", "nlp", propagation_policy="Foreground")
    assert len(job_pods(fake_kubernetes, "orphaned")) == 2 and job_pods(fake_kubernetes, "cascaded") == []


def test_a_failed_container_with_restart_policy_on_failure_restarts_in_place(fake_kubernetes, tmp_path):
    from tests.fakes.kubernetes import PODS

    pod = {
        "metadata": {"name": "looping"},
        "spec": {
            "restartPolicy": "OnFailure",
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "args": ["stage", "-x"],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
        },
    }
    client.CoreV1Api(api_client(fake_kubernetes, tmp_path)).create_namespaced_pod("nlp", pod)

    def restarted():
        [live] = fake_kubernetes.objects(PODS, "nlp")
        status = (live["status"].get("containerStatuses") or [{}])[0]
        return (live["status"]["phase"], status) if status.get("restartCount", 0) >= 2 else None

    phase, status = wait_for(restarted, 120)
    assert phase == "Running" and status["lastState"]["terminated"]["exitCode"] == 2
    assert "error:" in status["lastState"]["terminated"]["message"], "its termination message"
    wait_for(lambda: "waiting" in fake_kubernetes.objects(PODS, "nlp")[0]["status"]["containerStatuses"][0]["state"])
    waiting = fake_kubernetes.objects(PODS, "nlp")[0]["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"


def test_with_no_node_that_fits_pods_stay_pending_with_the_schedulers_reason(fake_kubernetes, tmp_path):
    from tests.fakes.kubernetes import PODS, UNSCHEDULABLE_MESSAGE

    fake_kubernetes.unschedulable = True
    pod = {"metadata": {"name": "big"}, "spec": {"containers": [{"name": "c", "image": "i", "args": ["--help"]}]}}
    client.CoreV1Api(api_client(fake_kubernetes, tmp_path)).create_namespaced_pod("nlp", pod)
    condition = wait_for(lambda: fake_kubernetes.objects(PODS, "nlp")[0]["status"]["conditions"][0].get("reason"))
    [pending] = fake_kubernetes.objects(PODS, "nlp")
    assert condition == "Unschedulable" and pending["status"]["phase"] == "Pending"
    assert pending["status"]["conditions"][0]["message"] == UNSCHEDULABLE_MESSAGE and not fake_kubernetes.pods_run

    fake_kubernetes.unschedulable = False  # a node was added
    wait_for(lambda: fake_kubernetes.pods_run)


def test_tfjobs_are_served_only_when_the_training_operator_is_installed(fake_kubernetes, tmp_path):
    import pytest

    custom = client.CustomObjectsApi(api_client(fake_kubernetes, tmp_path))
    with pytest.raises(client.ApiException) as missing:
        custom.get_api_resources("kubeflow.org", "v1")
    assert missing.value.status == 404
    with pytest.raises(client.ApiException) as refused:
        custom.create_namespaced_custom_object("kubeflow.org", "v1", "nlp", "tfjobs", {"metadata": {"name": "t"}})
    assert refused.value.status == 404

    fake_kubernetes.training_operator = True
    assert [resource.name for resource in custom.get_api_resources("kubeflow.org", "v1").resources] == ["tfjobs"]


# ---- Pod Security admission, server-side apply field ownership (tests/fakes/pod_security.py, server_side_apply.py)
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
COMPLIANT_POD = {
    "metadata": {"name": "ok"},
    "spec": {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "image": "i",
                "args": ["--help"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    },
}


def test_pod_security_refuses_a_pod_that_breaks_the_restricted_profile_as_the_api_server_words_it(
    fake_kubernetes, tmp_path
):
    import pytest
    from kubernetes.client.exceptions import ApiException

    from tests.fakes.kubernetes import PODS

    fake_kubernetes.create_namespace({"metadata": {"name": "nlp", "labels": RESTRICTED}})
    pods = client.CoreV1Api(api_client(fake_kubernetes, tmp_path))
    bare = {"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    with pytest.raises(ApiException) as refused:
        pods.create_namespaced_pod("nlp", bare)
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"] == (
        'pods "bare" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false'
        ' (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities'
        ' (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or'
        ' container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must'
        ' set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")'
    )
    host_path = json.loads(json.dumps(COMPLIANT_POD))
    host_path["metadata"]["name"] = "host"
    host_path["spec"]["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    with pytest.raises(ApiException, match=r'restricted volume types \(volumes \[\\"root\\"\] have restricted types'):
        pods.create_namespaced_pod("nlp", host_path)
    pods.create_namespaced_pod("nlp", COMPLIANT_POD)
    pods.create_namespaced_pod("default", bare)  # a namespace that does not opt in admits anything
    assert {pod["metadata"]["name"] for pod in fake_kubernetes.objects(PODS)} == {"ok", "bare"}


def test_a_deployment_whose_pods_pss_refuses_is_accepted_but_never_rolls_out(fake_kubernetes, tmp_path):
    from tests.fakes.kubernetes import DEPLOYMENTS

    fake_kubernetes.create_namespace({"metadata": {"name": "nlp", "labels": RESTRICTED}})
    api = api_client(fake_kubernetes, tmp_path)
    labels = {"app": "web"}
    body = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }
    client.AppsV1Api(api).create_namespaced_deployment("nlp", body)

    def failed_create():
        [deployment] = fake_kubernetes.objects(DEPLOYMENTS, "nlp")
        return [c for c in (deployment.get("status") or {}).get("conditions") or [] if c["type"] == "ReplicaFailure"]

    [condition] = wait_for(failed_create, 10)
    assert condition["reason"] == "FailedCreate" and 'pods "web-' in condition["message"]
    assert "violates PodSecurity" in condition["message"] and ("nlp", "web") not in fake_kubernetes.serving


DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "nlp"}}


def test_server_side_apply_removes_what_the_only_manager_stops_applying_and_keeps_what_another_owns():
    import pytest

    from tests.fakes import server_side_apply as ssa

    mine = DEPLOYMENT | {"spec": {"replicas": 3, "paused": False}}
    live = ssa.apply({}, mine, "pipeline", force=True)
    assert live["spec"] == {"replicas": 3, "paused": False}
    dropped = ssa.apply(live, DEPLOYMENT | {"spec": {"paused": False}}, "pipeline", force=True)
    assert dropped["spec"]["replicas"] == 1, "no other owner: reset to the Deployment's default"

    scaled = ssa.update(live, {("spec", "replicas"): 5}, "kube-controller-manager", subresource="scale")
    kept = ssa.apply(scaled, DEPLOYMENT | {"spec": {"paused": False}}, "pipeline", force=True)
    assert kept["spec"]["replicas"] == 5, "the autoscaler owns it now"
    assert [(entry["manager"], entry.get("subresource")) for entry in kept["metadata"]["managedFields"]] == [
        ("pipeline", None),
        ("kube-controller-manager", "scale"),
    ]
    with pytest.raises(Exception, match='conflict with "kube-controller-manager" with subresource "scale"') as conflict:
        ssa.apply(kept, DEPLOYMENT | {"spec": {"replicas": 3}}, "handover", force=False)
    assert conflict.value.status == 409 and conflict.value.details["causes"][0]["field"] == ".spec.replicas"
    shared = ssa.apply(live, DEPLOYMENT | {"spec": {"replicas": 3}}, "handover", force=False)
    handed = ssa.apply(shared, DEPLOYMENT | {"spec": {"paused": False}}, "pipeline", force=True)
    assert handed["spec"]["replicas"] == 3, "the same value: shared, and the other owner keeps it"


def test_a_crashed_actor_fails_the_test_when_the_cluster_stops(tmp_path):
    class Crashing(FakeKubernetes):
        async def _autoscaler(self) -> None:
            raise ValueError("an actor's bug")

    cluster = Crashing(tmp_path / "cluster")
    with pytest.raises(RuntimeError, match="crashed") as raised:
        cluster.stop()
    assert isinstance(raised.value.__cause__, ValueError)
