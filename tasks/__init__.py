"""The steps of the NLP workflow, each runnable as ``python -m tasks <step>``.

This package runs inside every platform's step (a local subprocess, a SageMaker job, a Kubernetes pod)
and never imports Airflow. Heavy libraries (TensorFlow, transformers, datasets) are imported inside the
steps, so ``python -m tasks --help`` and the light steps stay fast.
"""

import os

# transformers' TensorFlow models are written for Keras 2; TensorFlow 2.16+ defaults to Keras 3 unless
# this is set before TensorFlow is first imported, so it is set as soon as the package is.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tasks.errors import (  # noqa: E402
    BadRowsError,
    ConfigError,
    DataError,
    LeakageError,
    ModelError,
    SchemaError,
    SourceError,
    TaskError,
)

__version__ = "0.1.0"

__all__ = [
    "BadRowsError",
    "ConfigError",
    "DataError",
    "LeakageError",
    "ModelError",
    "SchemaError",
    "SourceError",
    "TaskError",
    "__version__",
]
