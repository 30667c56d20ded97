"""The fake cluster's own behaviour, each written from the Kubernetes docs (tests/fakes/kubernetes.py)."""

from __future__ import annotations

from types import SimpleNamespace

from kubernetes import client, config

from tests.fakes.kubernetes import FakeKubernetes


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
