import pytest

from tasks.runtime.layout import partial_sibling
from tasks.runtime.outputs import atomic_output


def test_output_appears_only_when_complete(tmp_path):
    with atomic_output(tmp_path / "out") as work:
        (work / "a.txt").write_text("1")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "1"


def test_rerun_replaces_the_previous_output(tmp_path):
    for content in ("old", "new"):
        with atomic_output(tmp_path / "out") as work:
            (work / content).write_text(content)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".digest", "new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_keeps_the_previous_output_and_cleans_up(tmp_path):
    with atomic_output(tmp_path / "out") as work:
        (work / "good").write_text("1")
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "out") as work:
        (work / "half").write_text("1")
        raise RuntimeError("boom")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".digest", "good"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_resumable_work_folder_survives_a_failure_and_is_reused(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "out", resumable=True) as work:
        (work / "checkpoint").write_text("step 5")
        raise RuntimeError("crash")
    assert (partial_sibling(tmp_path / "out") / "checkpoint").read_text() == "step 5"
    with atomic_output(tmp_path / "out", resumable=True) as work:
        assert (work / "checkpoint").read_text() == "step 5"
    assert (tmp_path / "out" / "checkpoint").is_file() and not partial_sibling(tmp_path / "out").exists()
