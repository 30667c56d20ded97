import json

import pytest

from tasks.errors import ConfigError
from tasks.training.distributed import TrainingCluster, cluster_from_environment


def with_tf_config(monkeypatch, value):
    monkeypatch.setenv("TF_CONFIG", value if isinstance(value, str) else json.dumps(value))
    return cluster_from_environment()


def test_no_tf_config_is_a_single_chief():
    assert cluster_from_environment() == TrainingCluster(workers=1, index=0, is_chief=True)


@pytest.mark.parametrize(
    ("cluster", "task", "expected"),
    [
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, TrainingCluster(2, 0, True)),
        ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, TrainingCluster(2, 1, False)),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, {"type": "chief", "index": 0}, TrainingCluster(3, 0, True)),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, TrainingCluster(3, 1, False)),
    ],
)
def test_tf_config_roles(monkeypatch, cluster, task, expected):
    assert with_tf_config(monkeypatch, {"cluster": cluster, "task": task}) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "TF_CONFIG must be JSON like"),
        ({"cluster": {"worker": ["a:1"]}}, "TF_CONFIG must be JSON like"),
        (
            {"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "ps", "index": 0}},
            "task type must be 'chief' or 'worker', got 'ps'",
        ),
        (
            {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}},
            "task index 3 is not in the cluster's worker list",
        ),
    ],
)
def test_bad_tf_config_is_explained(monkeypatch, value, message):
    with pytest.raises(ConfigError, match=message):
        with_tf_config(monkeypatch, value)
