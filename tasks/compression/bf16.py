"""BF16 candidates: the trained classifier re-exported with bfloat16 compute.

The FP32 SavedModel's weights are loaded into the same transformers architecture built under Keras'
``mixed_bfloat16`` policy and saved with the same serving signature: every MatMul, BatchMatMul, GELU and softmax
runs in bfloat16 (oneDNN's AVX512_BF16 and AMX kernels), variables and the logits stay float32. A CPU without
bf16 instructions would emulate it slowly, so the compression step offers this candidate only where the CPU has
them (``tasks.runtime.cpu.BF16_FLAGS``).
"""

from __future__ import annotations

from pathlib import Path

from tasks.errors import ModelError
from tasks.evaluation.measure import saved_model_folder


def _without_model_scope(name: str) -> str:
    """``tf_bert_for_sequence_classification_3/bert/...:0`` -> ``bert/...:0``: Keras numbers the outer scope per
    model built in a process, the rest of a weight's name is the architecture's."""
    return name.split("/", 1)[-1]


def export_bf16(model_dir: Path, folder: Path) -> None:
    """Write ``folder`` as the bfloat16 SavedModel of the trained classifier in ``model_dir``."""
    import tensorflow as tf
    import tf_keras
    from transformers import AutoConfig, TFAutoModelForSequenceClassification

    from tasks.training.export import save_classifier

    if not (model_dir / "config.json").is_file():
        raise ModelError(f"{model_dir}: no config.json, so the architecture cannot be rebuilt in bf16")
    trained = {
        _without_model_scope(variable.name): variable
        for variable in tf.saved_model.load(str(saved_model_folder(model_dir))).variables
    }
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = TFAutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(model_dir))
        model(model.dummy_inputs, training=False)
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
    missing = [weight.name for weight in model.weights if _without_model_scope(weight.name) not in trained]
    if missing:
        raise ModelError(f"{model_dir}: the SavedModel lacks {len(missing)} weight(s) of its config, e.g. {missing[0]}")
    model.set_weights([trained[_without_model_scope(weight.name)].numpy() for weight in model.weights])
    save_classifier(model, folder)
