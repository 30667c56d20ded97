"""hf:// data sets and hub model ids, through the real datasets/huggingface_hub code, served by a local fake hub."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import flags, run_tasks
from tests.fakes.hub import FakeHub
from tests.tasks.data.test_stage_formats import DEV, PAIRS, TEST, glue_lines

GLUE_CARD = """---
configs:
- config_name: mrpc
  data_files:
  - split: train
    path: mrpc/train-*
  - split: validation
    path: mrpc/validation-*
  - split: test
    path: mrpc/test-*
---
# GLUE (test copy)
"""


def write_hub_glue(folder, test_labels):
    """The layout of nyu-mll/glue on the hub: parquet shards per config, configs declared in the card."""
    (folder / "mrpc").mkdir(parents=True)
    for split, pairs in (("train", PAIRS), ("validation", DEV), ("test", TEST)):
        labels = [label for label, _, _ in pairs] if split != "test" else test_labels
        first, second = [p[1] for p in pairs], [p[2] for p in pairs]
        table = pa.table({"sentence1": first, "sentence2": second, "label": labels, "idx": list(range(len(pairs)))})
        pq.write_table(table, folder / "mrpc" / f"{split}-00000-of-00001.parquet")
    (folder / "README.md").write_text(GLUE_CARD)
    return folder


@pytest.fixture(scope="module")
def hub(tmp_path_factory, minilm_path):
    root = tmp_path_factory.mktemp("hub")
    repos = {
        ("datasets", "nyu-mll/glue"): write_hub_glue(root / "glue", test_labels=[label for label, _, _ in TEST]),
        ("datasets", "someone/mrpc-unlabelled-test"): write_hub_glue(root / "unlabelled", test_labels=[-1] * len(TEST)),
        ("models", "sentence-transformers/all-MiniLM-L6-v2"): minilm_path,
    }
    with FakeHub(repos) as server:
        yield server


@pytest.fixture
def hub_env(hub, tmp_path):
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
    }


def test_stage_from_the_hub_matches_the_same_data_staged_from_files(tmp_path, hub_env, minilm_path):
    hub_out, local_out, local_src = tmp_path / "from-hub", tmp_path / "from-files", tmp_path / "src"
    local_src.mkdir()
    for name, pairs in (("train.tsv", PAIRS), ("dev.tsv", DEV), ("test.tsv", TEST)):
        (local_src / name).write_text(glue_lines(pairs))
    hub_tokenizer = "sentence-transformers/all-MiniLM-L6-v2"
    run_tasks("stage", *flags(source="hf://nyu-mll/glue/mrpc", output=hub_out, tokenizer=hub_tokenizer), env=hub_env)
    run_tasks("stage", "--source", str(local_src), "--output", str(local_out), "--tokenizer", str(minilm_path))
    hub_manifest = json.loads((hub_out / "manifest.json").read_text())
    local_manifest = json.loads((local_out / "manifest.json").read_text())
    assert hub_manifest["fingerprint"] == local_manifest["fingerprint"]
    assert hub_manifest["files"]["train"] == ["hf://nyu-mll/glue/mrpc[train]"]
    assert hub_manifest["tokenizer"]["source"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_hub_test_split_with_hidden_labels_is_unlabelled(tmp_path, hub_env, minilm_path):
    output = tmp_path / "out"
    source = "hf://someone/mrpc-unlabelled-test"
    run_tasks("stage", *flags(source=source, output=output, tokenizer=minilm_path), env=hub_env)
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["splits"]["test"]["labels"]["unlabelled"] == len(TEST)


def test_unknown_hub_data_set_is_a_clear_error(tmp_path, hub_env, minilm_path):
    stage = flags(source="hf://nobody/nothing/x", output=tmp_path / "o", tokenizer=minilm_path)
    result = run_tasks("stage", *stage, env=hub_env, check=False)
    assert result.returncode == 1
    assert (
        "error: hf://nobody/nothing/x: cannot load 'nobody/nothing' (config 'x') from the Hugging Face hub"
        in result.stderr
    )


def test_train_from_a_hub_id_with_pytorch_safetensors(tmp_path, hub_env, staged_data):
    """The packaged MiniLM published as sentence-transformers/all-MiniLM-L6-v2: PyTorch weights only."""
    output = tmp_path / "model"
    model = "sentence-transformers/all-MiniLM-L6-v2"
    train = flags(data=staged_data, model=model, output=output, max_steps=3, batch_size=8, log_every=1)
    result = run_tasks("train", *train, env=hub_env)
    assert "loaded PyTorch safetensors weights of sentence-transformers/all-MiniLM-L6-v2" in result.stdout
    card = json.loads((output / "model_card.json").read_text())
    assert card["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert json.loads((output / "metrics.json").read_text())["steps"] == 3


def test_a_hub_id_never_reads_a_folder_of_that_name_in_the_working_directory(tmp_path, monkeypatch, hub_env):
    """datasets reads ``load_dataset("OWNER/NAME")`` from a local folder of that name when there is one: an hf://
    source would then read the worker's files, around the allow-list of sources."""
    from tasks.data import files
    from tasks.errors import SourceError

    planted = tmp_path / "nobody" / "nothing"
    planted.mkdir(parents=True)
    for name, pairs in (("train.tsv", PAIRS), ("dev.tsv", DEV)):
        (planted / name).write_text(glue_lines(pairs))
    monkeypatch.chdir(tmp_path)
    for name, value in hub_env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SourceError, match="hf://nobody/nothing: cannot load 'nobody/nothing'"):
        files.read_hub("hf://nobody/nothing")
