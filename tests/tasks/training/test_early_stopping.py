"""The median rule across a search's trials (tasks/training/early_stopping.py) and its Keras callback."""

import json

import pytest

from tasks.training import early_stopping
from tasks.training.callbacks import EpochHistory, MedianStopping


@pytest.mark.parametrize(
    ("accuracy", "peers", "median"),
    [
        (0.6, [], None),  # the first trial: no peers
        (0.6, [0.9], None),  # one peer is not enough
        (0.6, [0.7, 0.9], 0.8),  # below the median of two
        (0.8, [0.7, 0.9], None),  # at the median: kept
        (0.75, [0.5, 0.8, 0.9], 0.8),
        (0.85, [0.5, 0.8, 0.9], None),
    ],
)
def test_a_run_below_the_median_of_at_least_two_peers_stops(accuracy, peers, median):
    assert early_stopping.median_to_beat(accuracy, peers) == median


def test_peers_are_the_other_runs_that_reached_the_epoch(tmp_path):
    folder = str(tmp_path)
    early_stopping.record(folder, "me", [0.1, 0.2])
    early_stopping.record(folder, "short", [0.5])
    early_stopping.record(folder, "long", [0.6, 0.8, 0.8])
    (tmp_path / "broken.json").write_text("{")
    assert early_stopping.peer_accuracies(folder, "me", 1) == [0.6, 0.5]  # sorted by file name: long, short
    assert early_stopping.peer_accuracies(folder, "me", 2) == [pytest.approx(0.7)]  # long's running average
    assert early_stopping.peer_accuracies(folder, "me", 4) == []
    early_stopping.record(folder, "me", [0.1, 0.2, 0.3])  # replaced whole
    assert json.loads((tmp_path / "me.json").read_text()) == {"run": "me", "accuracy": [0.1, 0.2, 0.3]}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.json", "long.json", "me.json", "short.json"]


def test_peers_are_compared_by_their_running_average_as_sagemaker_does(tmp_path):
    """SageMaker's Auto rule: the median of each peer's running average of the objective up to the epoch. Here
    the peers' raw accuracies at epoch 2 (0.9, 0.9) would stop a run at 0.8; their running averages (0.6, 0.6) do
    not, and a run at 0.5 is stopped."""
    folder = str(tmp_path)
    early_stopping.record(folder, "a", [0.3, 0.9])
    early_stopping.record(folder, "b", [0.3, 0.9])
    peers = early_stopping.peer_accuracies(folder, "me", 2)
    assert peers == [pytest.approx(0.6), pytest.approx(0.6)]
    assert early_stopping.median_to_beat(0.8, peers) is None
    assert early_stopping.median_to_beat(0.5, peers) == pytest.approx(0.6)


def test_a_runs_name_is_its_settings():
    identity = {"learning_rate": 1e-4, "epochs": 3}
    assert early_stopping.run_name(identity) == early_stopping.run_name(dict(reversed(identity.items())))
    assert early_stopping.run_name(identity) != early_stopping.run_name(identity | {"epochs": 4})


class _Model:
    stop_training = False


def stopping(tmp_path, accuracies, last_epoch):
    history = EpochHistory(None)
    callback = MedianStopping(str(tmp_path), "me", history, last_epoch)
    callback.set_model(_Model())
    for epoch, accuracy in enumerate(accuracies):
        history.append({"epoch": epoch + 1, "accuracy": accuracy})
        callback.on_epoch_end(epoch)
        if callback.model.stop_training:
            break
    return callback


def test_the_callback_records_every_epoch_and_stops_below_the_median(tmp_path):
    early_stopping.record(str(tmp_path), "a", [0.8, 0.9, 0.9])
    early_stopping.record(str(tmp_path), "b", [0.7, 0.6, 0.95])
    kept = stopping(tmp_path / "..", [0.9], last_epoch=3)  # another folder: no peers
    assert not kept.model.stop_training
    # epoch 1: 0.76 >= median 0.75; epoch 2: the running averages 0.85 and 0.65, median 0.75 > 0.7
    callback = stopping(tmp_path, [0.76, 0.7, 0.99], last_epoch=3)
    assert callback.model.stop_training and callback.stopped_after == 2
    assert json.loads((tmp_path / "me.json").read_text())["accuracy"] == [0.76, 0.7]


def test_the_last_epoch_is_recorded_but_never_stops_the_run(tmp_path):
    early_stopping.record(str(tmp_path), "a", [0.9])
    early_stopping.record(str(tmp_path), "b", [0.9])
    callback = stopping(tmp_path, [0.1], last_epoch=1)
    assert not callback.model.stop_training and callback.stopped_after is None
    assert json.loads((tmp_path / "me.json").read_text())["accuracy"] == [0.1]


def test_records_are_written_through_unique_temporaries(tmp_path):
    """A leftover temporary of a fixed name (here a folder, a killed writer's debris) blocks no write."""
    (tmp_path / ".me.json.tmp").mkdir()
    early_stopping.record(str(tmp_path), "me", [0.5])
    assert early_stopping.peer_accuracies(str(tmp_path), "other", 1) == [0.5]
    assert sorted(path.name for path in tmp_path.iterdir()) == [".me.json.tmp", "me.json"]


def test_records_are_read_and_written_under_an_s3_prefix(s3):
    folder = f"s3://{s3['bucket']}/runs/search/scores"
    early_stopping.record(folder, "a", [0.4, 0.8])
    early_stopping.record(folder, "b", [0.6])
    assert early_stopping.peer_accuracies(folder, "me", 1) == [0.4, 0.6]
    assert early_stopping.peer_accuracies(folder, "me", 2) == [pytest.approx(0.6)]
    early_stopping.record(folder, "b", [0.6, 0.9])  # replaced whole
    assert early_stopping.peer_accuracies(folder, "me", 2) == [pytest.approx(0.6), pytest.approx(0.75)]


def test_early_stopping_on_more_than_one_worker_is_refused(monkeypatch, tmp_path):
    """Each worker would decide alone whether to stop: refused before any training."""
    from tasks.config import TrainArguments
    from tasks.errors import ConfigError
    from tasks.training import train

    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    arguments = TrainArguments(
        data=str(tmp_path), output=str(tmp_path / "o"), learning_rate=1e-4, epochs=1, early_stopping_dir=str(tmp_path)
    )
    with pytest.raises(ConfigError, match="--early-stopping-dir needs a run on one worker, not 2"):
        train.run(arguments)
    assert not (tmp_path / "o").exists()
