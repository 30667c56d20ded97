"""Access to a Kubernetes cluster that outlives one token: the kubeconfig, and for Amazon EKS the credentials behind it.

The amazon provider's ``EksHook.generate_config_file_with_credentials`` writes a kubeconfig whose exec plugin makes
each token (``k8s-aws-v1.`` + a presigned STS ``GetCallerIdentity`` URL, good for 15 minutes) by signing with the
session credentials in a file beside it: a frozen copy taken when the file was written. With role credentials (an
assumed role lasts about an hour) every token signed after they expire is refused, and the API server answers
``401 Unauthorized``. The provider's ``EksPodOperator`` rewrites that file from the AWS connection when the API says
401; ``ClusterAccess`` does the same for every client it gives out, so every wait (step pods, training jobs, rollouts)
and every cleanup survives the expiry: a request answered 401 is sent once more after the credentials file is
rewritten and the kubeconfig loaded again (which runs the exec plugin again; the client would otherwise keep the
refused token until its own expiry). A request refused with 401 did nothing on the server, so sending it again is safe.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from airflow.providers.cncf.kubernetes.kube_client import _TimeoutK8sApiClient
from airflow.sdk.exceptions import AirflowException
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


class ClusterAccess:
    """The kubeconfig a task's Kubernetes clients load and, for EKS, the credentials file its exec plugin sources.

    :param config_file: the kubeconfig, or None for the Kubernetes connection alone (in-cluster, or its kubeconfig)
    :param credentials_file: the file the kubeconfig's exec plugin sources (``EksHook``), rewritten on a 401
    :param aws_conn_id: the AWS connection fresh credentials come from
    """

    def __init__(
        self, config_file: str | None = None, credentials_file: str | None = None, aws_conn_id: str | None = None
    ):
        self.config_file, self.credentials_file, self.aws_conn_id = config_file, credentials_file, aws_conn_id

    def hook(self, conn_id: str | None, **kwargs) -> KubernetesHook:
        """The provider's ``KubernetesHook`` on this kubeconfig (``config_file`` in ``kwargs`` overrides it); with
        EKS credentials its client renews them on a 401 and sends the request again."""
        kwargs.setdefault("config_file", self.config_file)
        if self.credentials_file is None:
            return KubernetesHook(conn_id=conn_id, **kwargs)
        return _RenewingKubernetesHook(self, conn_id=conn_id, **kwargs)

    def renew(self, configuration: client.Configuration) -> None:
        """Rewrite the credentials file from the AWS connection, as ``EksPodOperator`` does on a 401, then load the
        kubeconfig into ``configuration`` again: its exec plugin signs a new token with them."""
        from airflow.providers.amazon.aws.hooks.eks import EksHook

        credentials = EksHook(aws_conn_id=self.aws_conn_id).get_session().get_credentials()
        if credentials is None:
            raise AirflowException(
                f"the EKS token was refused (401) and the AWS connection {self.aws_conn_id!r} gives no credentials to "
                "sign a new one: check that connection"
            )
        frozen = credentials.get_frozen_credentials()
        # The same file, format and mode (0600) as EksHook._secure_credential_context; no O_CREAT: the kubeconfig's
        # file must still be there.
        descriptor = os.open(self.credentials_file, os.O_WRONLY | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(descriptor, "w") as file:
            file.write(f"export AWS_ACCESS_KEY_ID='{frozen.access_key}'\n")
            file.write(f"export AWS_SECRET_ACCESS_KEY='{frozen.secret_key}'\n")
            if frozen.token:
                file.write(f"export AWS_SESSION_TOKEN='{frozen.token}'\n")
        config.load_kube_config(config_file=self.config_file, client_configuration=configuration)


@contextlib.contextmanager
def eks_access(cluster_name: str, namespace: str, aws_conn_id: str) -> Iterator[ClusterAccess]:
    """Access to the EKS cluster ``cluster_name`` with the AWS connection ``aws_conn_id``: the provider's kubeconfig
    and credentials file (endpoint and CA from ``DescribeCluster``, tokens from STS, no aws CLI), removed afterwards."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook

    hook = EksHook(aws_conn_id=aws_conn_id)
    with hook.generate_config_file_with_credentials(eks_cluster_name=cluster_name, pod_namespace=namespace) as (
        config_file,
        credentials_file,
    ):
        yield ClusterAccess(config_file, credentials_file, aws_conn_id)


class _RenewingApiClient(_TimeoutK8sApiClient):
    """The provider's API client (its request timeouts) that renews the EKS credentials once on a 401."""

    def __init__(self, access: ClusterAccess, configuration: client.Configuration):
        super().__init__(configuration)
        self.access = access

    def call_api(self, *args, **kwargs):
        try:
            return super().call_api(*args, **kwargs)
        except ApiException as error:
            if error.status != 401:
                raise
        log.warning("the Kubernetes API refused the EKS token (401): renewing its AWS credentials and trying again")
        self.access.renew(self.configuration)
        return super().call_api(*args, **kwargs)


class _RenewingKubernetesHook(KubernetesHook):
    """The provider's hook whose client is a ``_RenewingApiClient`` on the configuration the hook loaded."""

    def __init__(self, access: ClusterAccess, **kwargs):
        super().__init__(**kwargs)
        self.access = access

    def get_conn(self) -> client.ApiClient:
        return _RenewingApiClient(self.access, super().get_conn().configuration)
