import numpy as np
import pytest

from tasks.data.splits import bucket_boundaries, load_split, make_dataset
from tasks.errors import DataError


@pytest.fixture(scope="module")
def train_split(staged_data):
    return load_split(staged_data, "train")


def test_bucket_boundaries_pad_to_multiples_of_16():
    assert bucket_boundaries(128) == [17, 33, 49, 65, 81, 97, 113, 129]
    assert bucket_boundaries(40) == [17, 33, 41]


def test_ragged_split_keeps_every_pair_unpadded(train_split, staged_data):
    import datasets

    raw = datasets.load_from_disk(str(staged_data / "train"))
    assert len(train_split) == len(raw)
    assert train_split.input_ids[3].numpy().tolist() == raw[3]["input_ids"]
    assert train_split.labels.tolist() == list(raw["label"])


def test_longest_padding_never_pads_beyond_the_bucket(train_split):
    lengths = set()
    for features, _ in make_dataset(train_split, 8, 128):
        ids, mask = features["input_ids"].numpy(), features["attention_mask"].numpy()
        width = ids.shape[1]
        assert width % 16 == 0 and width < 128
        longest = int(mask.sum(axis=1).max())
        assert width - 16 < longest <= width
        assert (features["token_type_ids"].numpy()[mask == 0] == 0).all()
        lengths.add(width)
    assert len(lengths) >= 2


def test_every_pair_is_read_once_without_shuffle(train_split):
    total = sum(int(labels.shape[0]) for _, labels in make_dataset(train_split, 8, 128))
    assert total == len(train_split)


def test_max_length_padding_pads_everything_to_the_maximum(train_split):
    for features, _ in make_dataset(train_split, 8, 128, padding="max_length").take(3):
        assert features["input_ids"].shape[1] == 128


def test_shuffled_training_stream_repeats_and_is_seeded(train_split):
    def first_ids(seed):
        features, _ = next(iter(make_dataset(train_split, 4, 128, shuffle_seed=seed)))
        return features["input_ids"].numpy()

    steps = sum(1 for _ in make_dataset(train_split, 8, 128, shuffle_seed=1).take(3 * len(train_split)))
    assert steps == 3 * len(train_split)  # repeats forever
    np.testing.assert_array_equal(first_ids(5), first_ids(5))


def test_each_worker_reads_its_own_shard(train_split):
    import tensorflow as tf

    contexts = [tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i) for i in range(2)]
    counts = [
        sum(int(labels.shape[0]) for _, labels in make_dataset(train_split, 8, 128, input_context=c)) for c in contexts
    ]
    assert sum(counts) == len(train_split) and abs(counts[0] - counts[1]) <= 1


def test_missing_split_is_named(tmp_path):
    with pytest.raises(DataError, match="no staged validation split"):
        load_split(tmp_path, "validation")
