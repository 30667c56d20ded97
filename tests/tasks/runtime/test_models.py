"""Resolving and loading models, including PyTorch safetensors into TensorFlow (transformers#40028)."""

import io
import json
import shutil
import tarfile

import numpy as np
import pytest

from tasks.errors import ModelError
from tasks.runtime.models import load_classifier, load_tokenizer, resolve
from tests.conftest import upload_folder


@pytest.fixture(scope="module")
def minilm_classifier(minilm_path):
    return load_classifier(str(minilm_path))


def test_transformers_own_loader_still_has_the_bug(minilm_path):
    """Guards the workaround: when transformers fixes #40028, tasks.runtime.models can use from_pretrained again."""
    from transformers import TFAutoModelForSequenceClassification

    with pytest.raises(TypeError, match="'builtins.safe_open' object is not iterable"):
        TFAutoModelForSequenceClassification.from_pretrained(minilm_path)


def test_pytorch_safetensors_weights_land_in_the_tf_model(minilm_classifier, minilm_path):
    from safetensors.numpy import load_file

    weights = load_file(minilm_path / "model.safetensors")
    by_name = {variable.name: variable.numpy() for variable in minilm_classifier.weights}
    embeddings = next(value for name, value in by_name.items() if "word_embeddings" in name)
    query = next(value for name, value in by_name.items() if "layer_._5/attention/self/query/kernel" in name)
    np.testing.assert_array_equal(embeddings, weights["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(query, weights["encoder.layer.5.attention.self.query.weight"].T)
    assert minilm_classifier.config.id2label == {0: "not_equivalent", 1: "equivalent"}


def test_loaded_encoder_gives_meaningful_sentence_embeddings(minilm_classifier, minilm_path):
    """all-MiniLM-L6-v2 is a sentence-embedding model: a paraphrase must be far closer than an unrelated sentence."""
    import tensorflow as tf

    tokenizer = load_tokenizer(str(minilm_path))
    sentences = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    batch = tokenizer(sentences, padding=True, return_tensors="tf")
    hidden = minilm_classifier.bert(batch, training=False).last_hidden_state
    mask = tf.cast(batch["attention_mask"][..., None], tf.float32)
    embeddings = tf.math.l2_normalize(tf.reduce_sum(hidden * mask, 1) / tf.reduce_sum(mask, 1), axis=-1).numpy()
    similar, unrelated = embeddings[0] @ embeddings[1], embeddings[0] @ embeddings[2]
    assert similar == pytest.approx(0.7553, abs=0.01)  # the value sentence-transformers documents for this pair
    assert unrelated < 0.2


def test_sharded_safetensors_load_like_a_single_file(tmp_path, minilm_path, minilm_classifier):
    from safetensors.numpy import load_file, save_file

    weights = load_file(minilm_path / "model.safetensors")
    names = sorted(weights)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    folder = tmp_path / "sharded"
    folder.mkdir()
    for shard, keys in shards.items():
        save_file({key: weights[key] for key in keys}, folder / shard, metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {key: shard for shard, keys in shards.items() for key in keys}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copy(minilm_path / "config.json", folder)
    sharded = load_classifier(str(folder))
    expected = {v.name.split("/", 1)[1]: v.numpy() for v in minilm_classifier.weights if "classifier" not in v.name}
    for variable in sharded.weights:
        key = variable.name.split("/", 1)[1]
        if key in expected:
            np.testing.assert_array_equal(variable.numpy(), expected[key])


def test_checkpoint_missing_encoder_weights_is_refused(tmp_path, minilm_path):
    from safetensors.numpy import load_file, save_file

    weights = {k: v for k, v in load_file(minilm_path / "model.safetensors").items() if "layer.3." not in k}
    folder = tmp_path / "broken"
    folder.mkdir()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    shutil.copy(minilm_path / "config.json", folder)
    with pytest.raises(ModelError, match=r"lacks \d+ weight\(s\) the model needs, e.g. .*layer.3"):
        load_classifier(str(folder))


def test_folder_without_weights_says_what_is_needed(tmp_path, minilm_path):
    folder = tmp_path / "bin-only"
    folder.mkdir()
    shutil.copy(minilm_path / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="convert it to model.safetensors"):
        load_classifier(str(folder))


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="cannot read the model's config.json"):
        load_classifier(str(tmp_path / "empty"))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("./not-here", "./not-here: no such folder"),
        ("bad id with spaces", "bad id with spaces: no such folder"),
        (
            "bert-base-uncased",
            "'bert-base-uncased' is not a local folder, and the Hugging Face hub could not provide it",
        ),
    ],
)
def test_unresolvable_sources_are_explained(source, message):
    with pytest.raises(ModelError, match=message):
        resolve(source)


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ModelError, match="expected a folder with config.json and weights"):
        resolve(str(tmp_path / "model.bin"))


def test_s3_folder_and_sagemaker_model_tarball_are_downloaded_once(s3, tiny_model):
    folder_uri = upload_folder(s3["client"], tiny_model, s3["bucket"], "models/tiny")
    local = resolve(folder_uri)
    assert (local / "config.json").is_file() and resolve(folder_uri) == local

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for path in tiny_model.iterdir():
            tar.add(path, arcname=path.name)
    s3["client"].put_object(Bucket=s3["bucket"], Key="jobs/train-1/output/model.tar.gz", Body=archive.getvalue())
    unpacked = resolve(f"s3://{s3['bucket']}/jobs/train-1/output/model.tar.gz")
    assert (unpacked / "tf_model.h5").is_file()
    assert load_classifier(f"s3://{s3['bucket']}/jobs/train-1/output/model.tar.gz").config.hidden_size == 32


def test_a_replaced_s3_model_is_downloaded_again(s3, tiny_model):
    folder_uri = upload_folder(s3["client"], tiny_model, s3["bucket"], "runs/20260105T000000Z/model")
    first = resolve(folder_uri)
    config = json.loads((tiny_model / "config.json").read_text()) | {"retrained": True}
    key = "runs/20260105T000000Z/model/config.json"
    s3["client"].put_object(Bucket=s3["bucket"], Key=key, Body=json.dumps(config).encode())
    second = resolve(folder_uri)
    assert second != first and json.loads((second / "config.json").read_text())["retrained"] is True


def test_missing_s3_model_is_a_model_error(s3):
    with pytest.raises(ModelError, match="no such folder or model.tar.gz"):
        resolve(f"s3://{s3['bucket']}/models/absent")
