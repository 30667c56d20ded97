"""The pipeline's Assets: the source data (an update can trigger a run) and the staged data set it produces."""

from airflow.sdk import Asset

SOURCE_DATA = Asset(name="nlp_source_data", uri="nlp://source-data/mrpc")
STAGED_DATA = Asset(name="nlp_staged_data", uri="nlp://staged-data/mrpc")
