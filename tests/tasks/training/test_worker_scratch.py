"""A non-chief worker's scratch folder on the shared volume (tasks/training/train.py ``worker_scratch``)."""

from tasks.training.train import worker_scratch


def test_each_worker_has_its_own_scratch_folder_and_removes_only_its_own(tmp_path):
    output = str(tmp_path / "model" / "try1-abc123")
    with worker_scratch(output, 1) as first, worker_scratch(output, 2) as second:
        assert first != second and first.parent == second.parent == tmp_path / "model"
        (second / "checkpoints").mkdir()
        with worker_scratch(output, 3) as third:
            (third / "checkpoints").mkdir()
        assert not third.exists(), "removed after its worker succeeded"
        assert (second / "checkpoints").is_dir(), "another worker's checkpoints survive the first to finish"
    assert not first.exists() and not second.exists()
