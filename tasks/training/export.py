"""Exporting a trained classifier as a TensorFlow SavedModel with a serving signature.

The signature is the contract every later step relies on (quantisation, evaluation, the inference
server): ``serving_default(input_ids, attention_mask, token_type_ids)`` of int32 ``[batch, length]`` ->
``{"logits": float32 [batch, 2]}``. The exported graph is always FP32, even after bf16 mixed-precision
training: INC quantises from FP32, and FP32 serves on every CPU.
"""

from __future__ import annotations

from pathlib import Path

SIGNATURE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SIGNATURE_OUTPUT = "logits"


def fp32_copy(model):
    """The same classifier rebuilt with float32 compute and plain (not mirrored) variables.

    Call it outside any ``strategy.scope()``, so the copy belongs to no distribution strategy.
    """
    import tf_keras
    from transformers import TFAutoModelForSequenceClassification

    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy("float32")
    try:
        copy = TFAutoModelForSequenceClassification.from_config(model.config)
        copy(copy.dummy_inputs, training=False)
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def save_classifier(model, folder: Path) -> None:
    """Write ``folder`` as a SavedModel whose ``serving_default`` signature maps token ids to logits."""
    import tensorflow as tf

    specs = [tf.TensorSpec([None, None], tf.int32, name=name) for name in SIGNATURE_INPUTS]

    @tf.function(input_signature=specs)
    def serve(input_ids, attention_mask, token_type_ids):
        outputs = model(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, training=False
        )
        return {SIGNATURE_OUTPUT: tf.cast(outputs.logits, tf.float32)}

    tf.saved_model.save(model, str(folder), signatures={"serving_default": serve})
