"""nlp_monitor_sagemaker: hourly drift monitoring of the SageMaker endpoint (nlp_sagemaker); drift starts a retraining run (plugins/nlp_pipeline/monitoring.py)."""

from nlp_pipeline import sagemaker
from nlp_pipeline.monitoring import build_monitor

dag = build_monitor(sagemaker)
