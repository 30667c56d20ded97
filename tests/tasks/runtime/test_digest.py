"""The content digest every step seals its output with, and what verifying it refuses."""

import shutil

import pytest

from tasks.errors import ModelError
from tasks.runtime import digest
from tasks.runtime.outputs import atomic_output


def _folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "saved_model").mkdir(parents=True)
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    (folder / "config.json").write_text("{}")
    return folder


def test_a_copy_has_the_digest_of_its_original_and_a_change_changes_it(tmp_path):
    folder = _folder(tmp_path)
    sealed = digest.seal(folder)
    assert sealed.startswith("sha256:") and digest.sealed(folder) == sealed
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / ".complete").touch()
    assert digest.folder_digest(copy) == sealed
    (copy / "config.json").write_text('{"changed": 1}')
    assert digest.folder_digest(copy) != sealed
    (copy / "config.json").write_text("{}")
    (copy / "extra.txt").write_text("x")
    assert digest.folder_digest(copy) != sealed


def test_renaming_a_file_changes_the_digest(tmp_path):
    folder = _folder(tmp_path)
    before = digest.folder_digest(folder)
    (folder / "config.json").rename(folder / "other.json")
    assert digest.folder_digest(folder) != before


def test_verify_refuses_a_folder_that_changed_after_it_was_sealed(tmp_path):
    folder = _folder(tmp_path)
    sealed = digest.seal(folder)
    assert digest.verify(folder, sealed) == sealed
    (folder / "saved_model" / "saved_model.pb").write_bytes(b"tampered")
    with pytest.raises(ModelError, match=r"model: the content digest is sha256:\w+, not the sealed in \.digest"):
        digest.verify(folder)


def test_verify_refuses_a_folder_that_is_not_the_expected_one(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(ModelError, match="not the expected sha256:0000"):
        digest.verify(folder, "sha256:0000")
    assert digest.sealed(folder) is None


def test_every_step_output_is_sealed_when_complete(tmp_path):
    with atomic_output(tmp_path / "out") as work:
        (work / "metrics.json").write_text("{}")
    assert digest.verify(tmp_path / "out") == digest.sealed(tmp_path / "out")
