"""TF_CONFIG of a worker of a Kubernetes Indexed Job, from its index and the workers' addresses."""

import json

import pytest

from tasks.errors import ConfigError
from tasks.runtime import indexed_job
from tasks.training.distributed import cluster_from_environment

ADDRESSES = "train-0.train:2222,train-1.train:2222"


def test_each_pod_of_the_job_gets_its_place_among_the_workers(monkeypatch):
    for index in ("0", "1"):
        environ = {indexed_job.ADDRESSES_ENV: ADDRESSES, indexed_job.INDEX_ENV: index}
        indexed_job.export_tf_config(environ)
        assert json.loads(environ["TF_CONFIG"]) == {
            "cluster": {"worker": ["train-0.train:2222", "train-1.train:2222"]},
            "task": {"type": "worker", "index": int(index)},
        }
        monkeypatch.setenv("TF_CONFIG", environ["TF_CONFIG"])
        cluster = cluster_from_environment()
        assert (cluster.workers, cluster.index, cluster.is_chief) == (2, int(index), index == "0"), "worker 0 is chief"


def test_outside_an_indexed_job_or_with_a_given_tf_config_nothing_changes():
    alone: dict[str, str] = {}
    indexed_job.export_tf_config(alone)
    assert alone == {}
    given = {"TF_CONFIG": "{}", indexed_job.ADDRESSES_ENV: ADDRESSES, indexed_job.INDEX_ENV: "1"}
    indexed_job.export_tf_config(given)
    assert given["TF_CONFIG"] == "{}"


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({indexed_job.ADDRESSES_ENV: ADDRESSES}, "JOB_COMPLETION_INDEX is not"),
        ({indexed_job.ADDRESSES_ENV: ADDRESSES, indexed_job.INDEX_ENV: "2"}, "'2' is not the index of one of the 2"),
        ({indexed_job.ADDRESSES_ENV: ADDRESSES, indexed_job.INDEX_ENV: "x"}, "'x' is not the index"),
    ],
)
def test_a_bad_index_is_a_config_error_naming_the_variables(environ, problem):
    with pytest.raises(ConfigError, match=problem):
        indexed_job.export_tf_config(environ)
