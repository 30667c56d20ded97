"""nlp_local: the pipeline on this machine (the embedded default platform)."""

from nlp_pipeline import local
from nlp_pipeline.params import local_params
from nlp_pipeline.pipeline import build_pipeline

dag = build_pipeline(
    local.DAG_ID,
    local,
    params=local_params(),
    tags=["local"],
    doc_md="""
### nlp_local: fine-tune, quantise, gate and roll out BERT on this machine

Each step runs `python -m tasks <step>` in a subprocess of the worker, its output in the task log.
Artefacts: `$AIRFLOW_HOME/nlp-artefacts/nlp_local/<logical date>/` (Variable `nlp_artefact_root`);
registry: `registry.sqlite` beside them; endpoint: http://127.0.0.1:`endpoint_port`, swapped in place.

- **Trigger** with the form: data source, base model, training, quantisation, gate and rollout settings.
- **Schedule**: weekly (`NLP_RETRAIN_SCHEDULE`), and whenever the `nlp_source_data` Asset is updated or
  `nlp_monitor_local` finds the endpoint's traffic drifted (Asset `nlp_drift_detected_local`).
- **Capture**: `capture_sample_rate` above 0 makes the endpoint record that share of its requests for
  `nlp_monitor_local` (`capture_text`: the sentences too); 0 turns it off; null (the default, which scheduled and
  drift-started runs take) keeps the endpoint's capture as it is.
  Training is skipped when the data and configuration equal the production model's: a drift-started run retrains
  only when `nlp_source_data` has new data.
- **Backfill**: `airflow backfill create --dag-id nlp_local --from-date ... --to-date ...` runs one pipeline
  per interval and registers its model; a backfill never deploys.
""",
)
