"""nlp_monitor_local: the Airflow DAG that watches the local endpoint (nlp_local) for drift, hourly; drift starts a
retraining run (plugins/nlp_pipeline/monitoring.py)."""

from nlp_pipeline import local
from nlp_pipeline.monitoring import build_monitor

dag = build_monitor(local)
