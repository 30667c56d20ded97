"""nlp_eks: the Airflow DAG of the pipeline as Kubernetes pods (Amazon EKS first), rolled out to a Deployment."""

from nlp_pipeline import eks
from nlp_pipeline.params import eks_params
from nlp_pipeline.pipeline import build_pipeline

dag = build_pipeline(
    eks.DAG_ID,
    eks,
    params=eks_params(),
    tags=["kubernetes", "eks"],
    doc_md="""
### nlp_eks: fine-tune, quantise, gate and roll out BERT on Kubernetes (Amazon EKS)

Each step is a pod of the task image (`python -m tasks <step>`, KubernetesPodOperator, logs in the task log,
pods deleted when done); with `training_workers` > 1, training is an Indexed Job of one TensorFlow worker per pod (`training_backend` `tfjob`: a Kubeflow TFJob). Artefacts and the model
registry live on a shared volume (PVC), or on S3 when `nlp_artefact_root` is `s3://...`. The candidate is rolled out to the server's Deployment (server-side
apply, rolling update with no serving pod taken away first); a rollout that does not complete, or a failed
smoke test (a pod calling the Service inside the cluster), puts the previous revision (image, settings, model) back.
Every pod passes Pod Security "restricted"; the server runs under a read-only service account.

- **Settings**: Variables `nlp_task_image` (required), `nlp_k8s_conn_id` (`kubernetes_default`) or
  `nlp_eks_cluster_name` (EKS access through the amazon provider), `nlp_k8s_namespace` (`nlp`),
  `nlp_k8s_service_account`, `nlp_k8s_volume_claim`, `nlp_k8s_server`, `nlp_artefact_root` (S3), and
  `nlp_k8s_limits` (the most CPU and memory per pod, the taints and node labels a run may ask for: a run over
  them fails before its first pod).
- **Placement**: `node_features` (Node Feature Discovery labels such as AVX512VNNI or AMXBF16) and
  `tolerations`; threads follow each pod's CPU limit. The quantize pod runs where the server does, since it
  keeps the precision it measured fastest on its own CPU (`compression_node_features` moves it).
- **Backfill**: as nlp_local; a backfill run registers and never deploys.
""",
)
