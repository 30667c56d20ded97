"""What a served model does with pairs before its graph runs: tokenising as the tokenizer would (each sentence
alone, then cut: linear in the text), and padding every batch to one of a fixed set of shapes, all warmed at
load."""

import random

import numpy as np
import pytest

from tasks.serving.served_model import ServedModel, batch_buckets, length_buckets, longest_first

WORDS = "the company posted a profit ; shares rose 3 % in early trading on Monday !!! 中文 naïve x,y".split()


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path)


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 3, 20, 55, 60, 61, 62, 63, 64, 65, 90, 130, 400])))


def test_pairs_are_tokenised_exactly_as_the_tokenizer_truncates_them(tokenizer):
    rng = random.Random(7)
    pairs = [(sentence(rng), sentence(rng)) for _ in range(600)]
    for max_length in (128, 64, 33):
        model = ServedModel(None, "fp32-x", None, tokenizer, max_length)
        expected = tokenizer(
            [first for first, _ in pairs],
            [second for _, second in pairs],
            truncation="longest_first",
            max_length=max_length,
        )
        encoded = model.encode(pairs)
        assert [pair.input_ids for pair in encoded] == expected["input_ids"]
        assert [pair.token_type_ids for pair in encoded] == expected["token_type_ids"]
        assert all(pair.attention_mask == [1] * len(pair.input_ids) for pair in encoded)


def test_a_pair_says_whether_it_was_cut_and_the_model_names_its_unknown_token(tokenizer):
    """What data capture records: ``truncated`` exactly when the tokenizer's own truncation drops tokens."""
    rng = random.Random(3)
    pairs = [(sentence(rng), sentence(rng)) for _ in range(200)]
    model = ServedModel(None, "fp32-x", None, tokenizer, 64)
    whole = tokenizer([first for first, _ in pairs], [second for _, second in pairs])["input_ids"]
    assert [pair.truncated for pair in model.encode(pairs)] == [len(ids) > 64 for ids in whole]
    assert any(len(ids) > 64 for ids in whole) and any(len(ids) <= 64 for ids in whole)
    assert model.unk_token_id == tokenizer.unk_token_id == tokenizer.convert_tokens_to_ids("[UNK]")


@pytest.mark.parametrize(
    ("first", "second", "budget", "kept"),
    [(10, 20, 125, (10, 20)), (10, 200, 125, (10, 115)), (200, 10, 125, (115, 10)), (90, 90, 125, (62, 63))],
)
def test_longest_first_keeps_the_shorter_sentence_whole_when_it_can(first, second, budget, kept):
    assert longest_first(first, second, budget) == kept


def test_the_buckets_cover_every_batch_size_and_length():
    assert batch_buckets(32) == [1, 2, 4, 8, 16, 32] and batch_buckets(24) == [1, 2, 4, 8, 16, 24]
    assert batch_buckets(1) == [1]
    assert length_buckets(128, "longest") == [16, 32, 48, 64, 80, 96, 112, 128]
    assert length_buckets(40, "longest") == [16, 32, 40] and length_buckets(128, "max_length") == [128]


class ShapeRecorder:
    """A serving signature that records the shape of every batch it is given."""

    def __init__(self):
        self.shapes = set()

    def __call__(self, input_ids, attention_mask, token_type_ids):
        self.shapes.add(input_ids.shape)
        return {"logits": Logits(np.zeros((input_ids.shape[0], 2), dtype=np.float32))}


class Logits:
    def __init__(self, array):
        self.array = array

    def numpy(self):
        return self.array


@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_every_batch_has_a_shape_warmed_at_load(tokenizer, padding):
    recorder = ShapeRecorder()
    model = ServedModel(None, "fp32-x", recorder, tokenizer, 128, padding, max_batch_size=32)
    assert model.warm_up() == len(recorder.shapes) == len(batch_buckets(32)) * len(length_buckets(128, padding))
    warmed = set(recorder.shapes)
    rng = random.Random(3)
    for _ in range(40):
        pairs = model.encode([(sentence(rng), sentence(rng)) for _ in range(rng.randint(1, 70))])
        assert model.predict(pairs).shape == (len(pairs), 2)
    assert recorder.shapes == warmed, recorder.shapes - warmed


def test_a_tokenizer_whose_pairs_cannot_be_reproduced_is_refused_at_load(tokenizer):
    from transformers import PreTrainedTokenizerFast

    from tasks.errors import ModelError

    ServedModel(None, "fp32-x", ShapeRecorder(), tokenizer, 128).smoke_check()
    generic = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)  # adds no [CLS]/[SEP] itself
    with pytest.raises(ModelError, match="PreTrainedTokenizerFast tokenizer's pairs cannot be reproduced"):
        ServedModel(None, "fp32-x", ShapeRecorder(), generic, 128).smoke_check()


class CountingTokenizer:
    """A tokenizer whose len() is counted: a transformers tokenizer rebuilds its vocabulary for each (~100 ms)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.lengths = tokenizer, 0

    def __len__(self):
        self.lengths += 1
        return len(self.tokenizer)

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_the_vocabulary_is_counted_once_at_load_never_per_request(tokenizer):
    counting = CountingTokenizer(tokenizer)
    model = ServedModel(None, "fp32-x", ShapeRecorder(), counting, 128)
    for _ in range(5):
        assert model.vocab_size == len(tokenizer)
        model.encode([("A cat sat.", "A cat was sitting.")])
    assert counting.lengths == 1
