"""nlp_monitor_local: hourly drift monitoring of the local endpoint (nlp_local); drift starts a retraining run (plugins/nlp_pipeline/monitoring.py)."""

from nlp_pipeline import local
from nlp_pipeline.monitoring import build_monitor

dag = build_monitor(local)
