"""Loading and scoring saved models with plain TensorFlow: the contract checks and their errors."""

import pytest

from tasks.errors import ModelError
from tasks.evaluation.measure import agreement, serving_function


def test_a_signature_that_breaks_the_contract_is_named(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.serve = tf.function(
        lambda ids: {"scores": tf.cast(ids, tf.float32)},
        input_signature=[tf.TensorSpec([None, None], tf.int32, name="ids")],
    )
    tf.saved_model.save(module, str(tmp_path / "saved_model"), signatures={"serving_default": module.serve})
    with pytest.raises(ModelError, match=r"serving_default takes \['ids'\] and returns \['scores'\]; expected"):
        serving_function(tmp_path)


def test_a_missing_or_unreadable_model_is_named(tmp_path):
    with pytest.raises(ModelError, match="no saved_model/saved_model.pb"):
        serving_function(tmp_path)
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot load the serving signature"):
        serving_function(tmp_path)


def test_agreement_counts_equal_labels():
    import numpy as np

    assert agreement(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75
