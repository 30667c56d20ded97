import csv
import re

import pytest

from tasks.config import SampleArguments
from tasks.data.sample import GLUE_HEADER, generate, run
from tasks.errors import ConfigError
from tests.conftest import run_tasks


def read_tsv(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def test_writes_glue_tsv_files_of_the_requested_sizes(tmp_path):
    run(SampleArguments(output=str(tmp_path / "out"), train_size=120, dev_size=30, test_size=20))
    sizes = {}
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        header, rows = read_tsv(tmp_path / "out" / name)
        assert tuple(header) == GLUE_HEADER
        assert all(len(row) == 5 and row[0] in ("0", "1") and row[1].isdigit() for row in rows)
        sizes[name] = len(rows)
    assert sizes == {"train.tsv": 120, "dev.tsv": 30, "test.tsv": 20}


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run(SampleArguments(output=str(tmp_path / name), seed=seed, train_size=50, dev_size=10, test_size=10))
    same = (tmp_path / "a" / "train.tsv").read_bytes() == (tmp_path / "b" / "train.tsv").read_bytes()
    other = (tmp_path / "a" / "train.tsv").read_bytes() == (tmp_path / "c" / "train.tsv").read_bytes()
    assert same and not other


def test_same_seed_gives_identical_files_across_processes(tmp_path):
    """Separate processes hash strings differently; nothing may depend on set or dict-of-hash order."""
    for name, hash_seed in (("a", "1"), ("b", "2")):
        run_tasks("sample", "--output", str(tmp_path / name), "--train-size", "400", env={"PYTHONHASHSEED": hash_seed})
    for split in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / "a" / split).read_bytes() == (tmp_path / "b" / split).read_bytes()


def test_no_pair_repeats_within_or_across_splits():
    splits = generate(SampleArguments(output="unused", train_size=2000, dev_size=300, test_size=300))
    keys = [pair.key for pairs in splits.values() for pair in pairs]
    assert len(keys) == len(set(keys)) == 2600


def test_label_balance_resembles_mrpc():
    pairs = generate(SampleArguments(output="unused", train_size=2000))["train"]
    positive = sum(pair.label for pair in pairs) / len(pairs)
    assert 0.55 < positive < 0.75


def _words(sentence):
    return set(re.findall(r"[\w$%.,']+", sentence.lower()))


def test_many_negatives_are_hard_sharing_most_words():
    """Hard negatives change one fact and keep the rest, as MRPC's do; a bag of words cannot separate them."""
    pairs = generate(SampleArguments(output="unused", train_size=2000, label_noise=0.0))["train"]
    negatives = [pair for pair in pairs if pair.label == 0]
    overlap = [
        len(_words(p.sentence1) & _words(p.sentence2)) / len(_words(p.sentence1) | _words(p.sentence2))
        for p in negatives
    ]
    hard = sum(value >= 0.7 for value in overlap) / len(negatives)
    assert hard > 0.25
    positives = [pair for pair in pairs if pair.label == 1]
    assert sum(p.sentence1 == p.sentence2 for p in positives) == 0


def test_sentences_keep_quotes_unescaped(tmp_path):
    run(SampleArguments(output=str(tmp_path / "out"), train_size=600, dev_size=10, test_size=10))
    text = (tmp_path / "out" / "train.tsv").read_text()
    assert '"We ' in text
    rows = list(csv.reader(text.splitlines()[1:], delimiter="\t", quoting=csv.QUOTE_NONE))
    assert all(len(row) == 5 for row in rows)


@pytest.mark.parametrize(
    ("field", "value"), [("train_size", 0), ("dev_size", -1), ("label_noise", 0.5), ("label_noise", -0.1)]
)
def test_rejects_bad_arguments(field, value):
    with pytest.raises(ConfigError, match=field.replace("_", "-")):
        SampleArguments(output="x", **{field: value})
