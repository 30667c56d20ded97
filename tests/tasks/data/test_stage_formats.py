"""Every source kind and file format the stager reads gives the same staged content."""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.config import StageArguments
from tasks.data.stage import run
from tasks.errors import SchemaError, SourceError
from tests.conftest import upload_folder

PAIRS = [
    (1, 'He said "yes" to the offer.', "He accepted the offer."),
    (0, "Shares rose 5 percent.", "Shares fell 5 percent."),
    (1, "The storm hit Boston on Monday.", "A storm struck Boston on Monday."),
    (0, "Smith bought Acme.", "Acme bought Smith."),
    (1, "Police arrested 12 people.", "Twelve people were arrested by police."),
    (0, "Profit doubled in May.", "Profit halved in May."),
]
DEV = [(1, "It rained in Paris.", "Paris had rain."), (0, "Prices rose.", "Prices fell.")]
TEST = [(1, "The vote passed 60-40.", "The bill passed by 60 votes to 40.")]


def glue_lines(pairs, header="Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"):
    rows = [f"{label}\t{100 + i}\t{200 + i}\t{s1}\t{s2}" for i, (label, s1, s2) in enumerate(pairs)]
    return "\n".join([header, *rows]) + "\n"


def write_splits(folder, writer, extension):
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train", PAIRS), ("dev", DEV), ("test", TEST)):
        writer(folder / f"{name}{extension}", pairs)
    return folder


def write_glue(path, pairs):
    path.write_text(glue_lines(pairs), encoding="utf-8")


def write_csv(path, pairs):
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["idx", "sentence1", "sentence2", "label"])
        writer.writerows([i, s1, s2, label] for i, (label, s1, s2) in enumerate(pairs))


def write_jsonl(path, pairs):
    path.write_text(
        "".join(json.dumps({"sentence1": s1, "sentence2": s2, "label": label}) + "\n" for label, s1, s2 in pairs)
    )


def write_parquet(path, pairs):
    table = pa.table(
        {"sentence1": [p[1] for p in pairs], "sentence2": [p[2] for p in pairs], "label": [p[0] for p in pairs]}
    )
    pq.write_table(table, path)


def stage(tmp_path, source, tokenizer, **kwargs):
    output = tmp_path / "staged"
    run(StageArguments(output=str(output), source=str(source), tokenizer=str(tokenizer), **kwargs))
    return output, json.loads((output / "manifest.json").read_text())


@pytest.fixture(scope="module")
def reference_fingerprint(tmp_path_factory, minilm_path):
    folder = write_splits(tmp_path_factory.mktemp("ref") / "glue", write_glue, ".tsv")
    return stage(tmp_path_factory.mktemp("ref-out"), folder, minilm_path)[1]["fingerprint"]


@pytest.mark.parametrize(
    ("writer", "extension"),
    [(write_glue, ".tsv"), (write_csv, ".csv"), (write_jsonl, ".jsonl"), (write_parquet, ".parquet")],
    ids=["glue-tsv", "csv", "jsonl", "parquet"],
)
def test_each_format_stages_the_same_content(tmp_path, minilm_path, reference_fingerprint, writer, extension):
    folder = write_splits(tmp_path / "src", writer, extension)
    output, manifest = stage(tmp_path, folder, minilm_path)
    assert manifest["fingerprint"] == reference_fingerprint
    assert {split: s["rows"] for split, s in manifest["splits"].items()} == {"train": 6, "validation": 2, "test": 1}
    train = datasets.load_from_disk(str(output / "train"))
    assert train[0]["sentence1"] == 'He said "yes" to the offer.'
    assert train[0]["input_ids"][0] == 101 and train[0]["input_ids"][-1] == 102
    assert set(train[0]["token_type_ids"]) == {0, 1}


def test_msr_paraphrase_txt_with_bom_and_quotes_and_carved_validation(tmp_path, minilm_path):
    """The original MSR corpus: a BOM, quotes inside sentences, only train and test files."""
    folder = tmp_path / "msr"
    folder.mkdir()
    many = [(i % 2, f'Line {i} says "quoted" text.', f"Line {i} has quoted text.") for i in range(40)]
    (folder / "msr_paraphrase_train.txt").write_text("\ufeff" + glue_lines(many), encoding="utf-8")
    (folder / "msr_paraphrase_test.txt").write_text("\ufeff" + glue_lines(TEST), encoding="utf-8")
    output, manifest = stage(tmp_path, folder, minilm_path, validation_fraction=0.25)
    assert manifest["validation"] == {"carved_from_train": True, "fraction": 0.25}
    rows = manifest["splits"]
    assert rows["train"]["rows"] + rows["validation"]["rows"] == 40 and rows["validation"]["rows"] > 0
    texts = [
        row["sentence1"] for split in ("train", "validation") for row in datasets.load_from_disk(str(output / split))
    ]
    assert 'Line 0 says "quoted" text.' in texts


def test_carving_is_deterministic(tmp_path, minilm_path):
    folder = tmp_path / "one"
    folder.mkdir()
    many = [(i % 2, f"Sentence number {i}.", f"Another sentence {i}.") for i in range(50)]
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"sentence1": a, "sentence2": b, "label": c}) + "\n" for c, a, b in many)
    )
    first = stage(tmp_path / "a", folder / "train.jsonl", minilm_path)[0]
    second = stage(tmp_path / "b", folder / "train.jsonl", minilm_path)[0]
    carved = [list(datasets.load_from_disk(str(folder / "validation"))["sentence1"]) for folder in (first, second)]
    assert carved[0] == carved[1] and carved[0]


def test_glue_test_split_without_labels_is_staged_as_unlabelled(tmp_path, minilm_path):
    folder = write_splits(tmp_path / "src", write_glue, ".tsv")
    (folder / "test.tsv").write_text(glue_lines(TEST, header="index\t#1 ID\t#2 ID\t#1 String\t#2 String"))
    output, manifest = stage(tmp_path, folder, minilm_path)
    assert manifest["splits"]["test"]["labels"]["unlabelled"] == 1
    assert list(datasets.load_from_disk(str(output / "test"))["label"]) == [-1]


def test_compressed_and_sharded_files(tmp_path, minilm_path, reference_fingerprint):
    import gzip

    folder = tmp_path / "src"
    folder.mkdir()
    with gzip.open(folder / "train.tsv.gz", "wt", encoding="utf-8") as handle:
        handle.write(glue_lines(PAIRS[:3]))
    write_parquet(folder / "train-00001-of-00002.parquet", PAIRS[3:])
    write_jsonl(folder / "validation.jsonl", DEV)
    write_csv(folder / "test.csv", TEST)
    (folder / "README.md").write_text("not data")
    _, manifest = stage(tmp_path, folder, minilm_path)
    assert manifest["fingerprint"] == reference_fingerprint
    assert len(manifest["files"]["train"]) == 2


def test_s3_source(tmp_path, minilm_path, reference_fingerprint, s3):
    folder = write_splits(tmp_path / "src", write_glue, ".tsv")
    uri = upload_folder(s3["client"], folder, s3["bucket"], "mrpc/raw")
    _, manifest = stage(tmp_path, uri, minilm_path)
    assert manifest["fingerprint"] == reference_fingerprint
    assert manifest["files"]["train"] == [f"{uri}/train.tsv"]


def test_missing_s3_prefix_names_the_uri(tmp_path, minilm_path, s3):
    with pytest.raises(SourceError, match=f"s3://{s3['bucket']}/nothing-here: no such file or folder"):
        stage(tmp_path, f"s3://{s3['bucket']}/nothing-here", minilm_path)


def test_folder_without_train_split_lists_what_it_found(tmp_path, minilm_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.tsv").write_text("x")
    with pytest.raises(SourceError, match="no train split found.*notes.tsv"):
        stage(tmp_path, tmp_path / "src", minilm_path)


def test_unsupported_extension_is_named(tmp_path, minilm_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.xlsx").write_text("x")
    with pytest.raises(SchemaError, match=r"train.xlsx: unsupported format '.xlsx'"):
        stage(tmp_path, tmp_path / "src", minilm_path)


def test_hub_source_offline_says_what_to_do(tmp_path, minilm_path):
    with pytest.raises(SourceError, match="cannot load 'nyu-mll/glue'.*Offline, stage from a local folder"):
        stage(tmp_path, "hf://nyu-mll/glue/mrpc", minilm_path)


def test_malformed_hub_uri(tmp_path, minilm_path):
    with pytest.raises(SourceError, match="expected hf://OWNER/NAME"):
        stage(tmp_path, "hf://glue", minilm_path)
