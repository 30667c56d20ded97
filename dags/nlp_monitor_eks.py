"""nlp_monitor_eks: the Airflow DAG that watches the Kubernetes server (nlp_eks) for drift, hourly; drift starts a
retraining run (plugins/nlp_pipeline/monitoring.py)."""

from nlp_pipeline import eks
from nlp_pipeline.monitoring import build_monitor

dag = build_monitor(eks)
