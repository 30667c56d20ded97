"""nlp_monitor_sagemaker: the Airflow DAG that watches the SageMaker endpoint (nlp_sagemaker) for drift, hourly; drift starts a
retraining run (plugins/nlp_pipeline/monitoring.py)."""

from nlp_pipeline import sagemaker
from nlp_pipeline.monitoring import build_monitor

dag = build_monitor(sagemaker)
