"""nlp_sagemaker: the Airflow DAG of the pipeline as SageMaker jobs, rolled out to a SageMaker endpoint."""

from nlp_pipeline import sagemaker
from nlp_pipeline.params import sagemaker_params
from nlp_pipeline.pipeline import build_pipeline

dag = build_pipeline(
    sagemaker.DAG_ID,
    sagemaker,
    params=sagemaker_params(),
    tags=["sagemaker", "aws"],
    doc_md="""
### nlp_sagemaker: fine-tune, quantise, gate and roll out BERT on Amazon SageMaker

Each step is a SageMaker job of the task image (`python -m tasks <step>`): processing jobs stage, quantise
and evaluate; a training job (deferrable; Spot and multi-instance by Param) fine-tunes. The candidate is
registered in the model package group, then rolled out to the endpoint: created, or updated blue/green
(Param `blue_green`: all at once by default; canary or linear with a bake need CloudWatch alarms, which
roll the update back). A failed deploy or smoke test restores the config served before the run.

- **Settings**: connection `aws_default` (Variable `nlp_aws_conn_id`), Variables `nlp_artefact_root`
  (`s3://bucket/prefix`), `nlp_sagemaker_role_arn`, `nlp_sagemaker_image` (the task image's root tag),
  `nlp_sagemaker_endpoint`, `nlp_model_package_group`; optional `nlp_sagemaker_network` (VPC, isolation).
- **Compression**: the quantize job runs on `endpoint_instance_type`, since it keeps the precision it measured
  fastest on its own CPU (`compression_instance_type` moves it); `quantization.json` records `hardware.target`.
- **Approval**: `model_approval=PendingManualApproval` waits until the package is approved in SageMaker.
- **Backfill**: as nlp_local; a backfill run registers and never deploys.
""",
)
