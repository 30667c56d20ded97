"""The pipeline's Assets: the source data (an update can trigger a run) and the staged data set it produces.

Named without a URI scheme: a scheme would make every DAG parse load the providers' URI normalisers
(about 0.15 s here), and these Assets name data sets rather than one storage location.
"""

from airflow.sdk import Asset

SOURCE_DATA = Asset("nlp_source_data")
STAGED_DATA = Asset("nlp_staged_data")
