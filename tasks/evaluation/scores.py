"""Classification scores shared by training, evaluation and the quality gate.

Label 1 (a paraphrase) is the positive class, as in GLUE MRPC's F1.
"""

from __future__ import annotations

import numpy as np


def classification_scores(labels, predictions) -> dict:
    """Accuracy, F1 of the positive class, and the confusion matrix ``[[tn, fp], [fn, tp]]``."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"need equally many labels and predictions, got {labels.shape} and {predictions.shape}")
    tp = int(np.sum((predictions == 1) & (labels == 1)))
    fp = int(np.sum((predictions == 1) & (labels == 0)))
    fn = int(np.sum((predictions == 0) & (labels == 1)))
    tn = int(np.sum((predictions == 0) & (labels == 0)))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {
        "accuracy": (tp + tn) / labels.size,
        "f1": f1,
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }
