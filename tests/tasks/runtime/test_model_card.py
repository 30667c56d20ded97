"""The Hugging Face model card every model folder carries: hub metadata where the model and data come from the hub,
the folder's own precision and figures."""

from huggingface_hub import ModelCard

from tasks.runtime import model_card

CARD = {
    "task": "paraphrase detection (sentence-pair classification, GLUE MRPC)",
    "architecture": "TFBertForSequenceClassification",
    "base_model": "sentence-transformers/all-MiniLM-L6-v2",
    "labels": ["not_equivalent", "equivalent"],
    "data": {"source": "hf://nyu-mll/glue/mrpc", "fingerprint": "abc123", "rows": {"train": 3668}},
    "hyperparameters": {"epochs": 3},
    "precision": {"training": "bf16", "exported": "int8"},
    "metrics": {"accuracy": 0.86, "f1": 0.9, "latency_ms_b1_p50": 8.7, "throughput_b32": 303.6},
    "signature": {"inputs": ["input_ids", "attention_mask", "token_type_ids"], "outputs": ["logits"]},
    "compression": {
        "reason": "INT8 loses 0.37% accuracy",
        "relative_accuracy_loss": 0.0037,
        "recipe": {"name": "int8-dense", "description": "all dense MatMuls INT8"},
        "hardware": {"cpu_model": "Intel Xeon", "cores": 2, "isa": {"avx2": True, "avx512_vnni": True, "amx": False}},
    },
}


def test_a_hub_model_on_glue_gets_hub_metadata_and_its_own_figures(tmp_path):
    model_card.write(tmp_path, CARD)
    assert model_card.read(tmp_path) == CARD
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and card.data.datasets == ["nyu-mll/glue"]
    assert card.data.tags == ["paraphrase", "tensorflow", "int8", "intel-neural-compressor"]
    result = card.data.eval_results[0]
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == ("nyu-mll/glue", "mrpc", "validation")
    assert {result.metric_type: result.metric_value for result in card.data.eval_results} == {
        "accuracy": 0.86,
        "f1": 0.9,
    }
    for text in ("| throughput at batch 32 (pairs/s) | 303.6 |", "int8-dense: all dense MatMuls INT8", "0.37%"):
        assert text in card.text
    assert "Intel Xeon, 2 core(s), ISA avx2 avx512_vnni" in card.text and "TF_ENABLE_ONEDNN_OPTS=1" in card.text


def test_a_local_model_on_generated_data_claims_no_hub_ids(tmp_path):
    local = CARD | {
        "base_model": "/models/minilm",
        "data": {"source": "/data/raw", "fingerprint": "f", "rows": {}},
        "precision": {"training": "fp32", "exported": "fp32"},
    }
    model_card.write(tmp_path, local)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model is None and card.data.datasets is None
    assert card.data.eval_results[0].dataset_name == "paraphrase pairs from /data/raw"
    assert "TF_ENABLE_ONEDNN_OPTS" not in card.text


def test_a_folder_without_a_card_reads_as_empty(tmp_path):
    assert model_card.read(tmp_path) == {}


def test_a_models_card_is_the_readme_in_its_folder_or_inside_its_archive():
    """The registry's `show` and the model Asset events link the card here."""
    assert model_card.location("/models/run/quantized") == "/models/run/quantized/README.md"
    assert model_card.location("s3://bucket/nlp/model/20260501T000000Z-try1/") == (
        "s3://bucket/nlp/model/20260501T000000Z-try1/README.md"
    )
    assert model_card.location("s3://bucket/jobs/train-1/output/model.tar.gz") is None


def test_a_best_trial_without_f1_is_described_with_a_dash():
    """A platform's trial may report accuracy but no F1 (summarise ranks it as 0): the card still describes it."""
    from tasks.tuning import results

    setting = {"learning_rate": 1e-4, "epochs": 3, "batch_size": 16, "warmup_ratio": 0.1, "weight_decay": 0.01}
    outcome = {"name": "trial-000", "setting": setting, "accuracy": 0.8, "f1": None, "status": results.COMPLETED}
    tuning = results.summarise({"seed": 1}, [outcome]) | {"uri": "/s/tuning.json"}
    line = model_card.describe_tuning(tuning)
    assert "(trial trial-000: validation accuracy 0.8000, F1 -), the best of 1 scored trial(s) of 1" in line
