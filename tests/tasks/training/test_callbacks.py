"""The callbacks of a resumed run: its curves (what a killed run wrote past its checkpoint is dropped), its checkpoint and
the per-epoch history kept with it, and a TensorBoard folder another run may share."""

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from tasks.errors import ConfigError
from tasks.training.callbacks import (
    EVENTS_MARKER,
    HISTORY,
    TRAIN_RUN,
    EpochHistory,
    ResumableBackup,
    ValidationScorer,
    claim_events_folder,
    drop_events_after,
)
from tests.tasks.training.test_train import curves


@pytest.fixture
def killed_run(tmp_path):
    """The events of a run killed while writing step 10: the last record cut short."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard" / TRAIN_RUN))
    for step in range(1, 11):
        with writer.as_default(step=step):
            tf.summary.scalar("batch_loss", 1 / step)
    writer.close()
    [events] = (tmp_path / "tensorboard" / TRAIN_RUN).iterdir()
    events.write_bytes(events.read_bytes()[:-7])
    return tmp_path


def test_events_past_the_resumed_checkpoint_are_dropped(killed_run):
    drop_events_after(killed_run / "tensorboard", 6)
    assert [step for step, _ in curves(killed_run, TRAIN_RUN)["batch_loss"]] == [1, 2, 3, 4, 5, 6]


def test_a_run_that_starts_over_drops_the_earlier_curves(killed_run):
    drop_events_after(killed_run / "tensorboard", 0)
    assert not list((killed_run / "tensorboard" / TRAIN_RUN).iterdir())


def test_a_rewrite_cut_short_leaves_no_second_events_file_and_is_cleaned_up_next_time(killed_run, monkeypatch):
    """TensorBoard reads every file with "tfevents" in its name: the rewrite's temporary file must not be one."""
    from pathlib import Path

    run = killed_run / "tensorboard" / TRAIN_RUN
    [events] = run.iterdir()
    with monkeypatch.context() as patched:
        patched.setattr(Path, "replace", lambda self, target: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            drop_events_after(killed_run / "tensorboard", 6)
    assert [path.name for path in run.iterdir() if "tfevents" in path.name] == [events.name]
    drop_events_after(killed_run / "tensorboard", 6)
    assert [path.name for path in run.iterdir()] == [events.name]
    assert [step for step, _ in curves(killed_run, TRAIN_RUN)["batch_loss"]] == [1, 2, 3, 4, 5, 6]


# ---- the checkpoint and the history kept with it ------------------------------------------------------------------
class _SavedState:
    """What ``BackupAndRestore`` restores: the epoch index and batch the checkpoint was saved at (-1: none)."""

    def __init__(self, epoch: int, batch: int):
        import tensorflow as tf

        self._ckpt_saved_epoch, self._ckpt_saved_batch = tf.Variable(epoch), tf.Variable(batch)
        self.preemption_checks = 0

    def backup_if_preempted(self):
        self.preemption_checks += 1


def restored_backup(tmp_path, monkeypatch, epoch: int, batch: int, every_steps: int = 0, steps_per_epoch: int = 8):
    """A ``ResumableBackup`` whose ``on_train_begin`` restored a checkpoint saved at (``epoch``, ``batch``)."""
    import tf_keras

    def restore(backup, logs=None):
        backup._training_state = _SavedState(epoch, batch)

    monkeypatch.setattr(tf_keras.callbacks.BackupAndRestore, "on_train_begin", restore)
    history = EpochHistory(tmp_path / "checkpoints" / HISTORY)
    backup = ResumableBackup(str(tmp_path / "checkpoints" / "backup"), every_steps, steps_per_epoch, history)
    backup.on_train_begin()
    return backup


def epoch_record(epoch: int) -> dict:
    return {"epoch": epoch, "loss": 1 / epoch, "val_loss": 1 / epoch, "accuracy": 0.5, "f1": 0.5 + epoch / 100}


def test_the_validation_scorer_keeps_each_epoch_with_the_checkpoint(tmp_path):
    history = EpochHistory(tmp_path / HISTORY)
    scorer = ValidationScorer(dataset=None, loss=None, history=history)
    scorer.predictions = lambda: (np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]), 0.4)
    scorer.on_epoch_end(0, {"loss": 0.5})
    scorer.on_epoch_end(1, {"loss": 0.3})
    stored = json.loads((tmp_path / HISTORY).read_text())
    assert [record["epoch"] for record in stored] == [1, 2] and stored == history.records
    assert stored[1]["loss"] == 0.3 and stored[1]["val_loss"] == pytest.approx(0.4)
    assert [path.name for path in tmp_path.iterdir()] == [HISTORY]  # written whole, no temporary left


@pytest.mark.parametrize(
    ("saved", "every_steps", "kept"),
    [((-1, 0), 0, []), ((1, 0), 0, [1, 2]), ((1, 3), 4, [1]), ((2, 7), 4, [1, 2, 3])],
    ids=["fresh", "after-epoch-2", "inside-epoch-2", "after-the-last-epoch"],
)
def test_a_resumed_run_reports_the_epochs_its_checkpoint_holds(tmp_path, monkeypatch, saved, every_steps, kept):
    """The killed run scored epoch 3 (and wrote it) before being killed; only what the checkpoint holds is kept."""
    path = tmp_path / "checkpoints" / HISTORY
    path.parent.mkdir()
    path.write_text(json.dumps([epoch_record(epoch) for epoch in (1, 2, 3)]))
    backup = restored_backup(tmp_path, monkeypatch, *saved, every_steps=every_steps)
    assert [record["epoch"] for record in backup.history.records] == kept
    assert json.loads(path.read_text()) == backup.history.records


def test_a_run_resumed_after_its_last_epoch_reports_the_stored_scores(tmp_path, monkeypatch, caplog):
    """Killed during export: no epoch is left to run, the scores come from the history kept with the checkpoint."""
    from tasks.training.callbacks import ProgressLogger
    from tasks.training.train import Trained, log_result, training_metrics

    path = tmp_path / "checkpoints" / HISTORY
    path.parent.mkdir()
    path.write_text(json.dumps([epoch_record(epoch) for epoch in (1, 2, 3)]))
    backup = restored_backup(tmp_path, monkeypatch, 2, 0)
    progress = ProgressLogger(4, 8, 3, 16, learning_rate=lambda step: 1e-3)
    from tasks.config import TrainArguments

    arguments = TrainArguments(data="d", output="o", learning_rate=1e-3, epochs=3)
    run = SimpleNamespace(plan=SimpleNamespace(precision="fp32"), args=arguments)
    run.cluster = SimpleNamespace(workers=1)
    metrics = training_metrics(run, Trained(None, backup.history.records, progress), wall_time=1.0)
    assert (metrics["accuracy"], metrics["f1"], metrics["steps"]) == (0.5, 0.53, 0)
    assert (metrics["epochs_run"], metrics["stopped_early"], metrics["hyperparameters"]["epochs"]) == (3, False, 3)
    assert [record["epoch"] for record in metrics["epochs"]] == [1, 2, 3]
    with caplog.at_level(logging.INFO):
        log_result(metrics, "fp32")
    assert "validation accuracy 0.5000, F1 0.5300" in caplog.text


def test_checkpoint_every_never_saves_the_last_step_of_an_epoch_before_it_is_scored(tmp_path, monkeypatch):
    """The epoch-end backup follows the scoring; a step save of the last step would resume at the next epoch and
    lose the scores of a run killed while scoring."""
    backup = restored_backup(tmp_path, monkeypatch, -1, 0, every_steps=4, steps_per_epoch=8)
    saved = []
    backup._backup = lambda epoch, batch=0: saved.append((epoch, batch))
    backup.model = SimpleNamespace(distribute_strategy=None)
    for epoch in range(2):
        backup._current_epoch = epoch
        for batch in range(8):
            backup.on_train_batch_end(batch)
        backup.on_epoch_end(epoch)
    assert saved == [(0, 3), (0, 7), (1, 3), (1, 7)]  # the (e, 7) saves are the epoch-end ones
    assert backup._training_state.preemption_checks == 16


# ---- a --tensorboard-dir another run may share --------------------------------------------------------------------
IDENTITY = {"output": "/runs/a/model", "epochs": 3}


def test_an_empty_or_new_events_folder_is_claimed_and_a_matching_one_kept(tmp_path):
    folder = tmp_path / "board"
    claim_events_folder(folder, IDENTITY, shared=True)
    assert json.loads((folder / EVENTS_MARKER).read_text()) == IDENTITY
    (folder / TRAIN_RUN).mkdir()
    (folder / TRAIN_RUN / "events.out.tfevents.1.host").write_bytes(b"")
    claim_events_folder(folder, IDENTITY, shared=True)  # the same run, resumed
    assert (folder / TRAIN_RUN / "events.out.tfevents.1.host").exists()


@pytest.mark.parametrize("marker", [None, {"output": "/runs/b/model", "epochs": 3}], ids=["unmarked", "another-run"])
def test_a_shared_events_folder_holding_another_runs_events_is_refused(tmp_path, marker):
    folder = tmp_path / "board"
    (folder / TRAIN_RUN).mkdir(parents=True)
    (folder / TRAIN_RUN / "events.out.tfevents.1.host").write_bytes(b"theirs")
    if marker:
        (folder / EVENTS_MARKER).write_text(json.dumps(marker))
    with pytest.raises(ConfigError, match=f"--tensorboard-dir {folder} holds another run's events"):
        claim_events_folder(folder, IDENTITY, shared=True)
    assert (folder / TRAIN_RUN / "events.out.tfevents.1.host").read_bytes() == b"theirs"


def test_the_outputs_own_events_folder_is_taken_over_by_a_run_with_other_settings(tmp_path):
    """Its checkpoint was started over too (prepare_checkpoints): the earlier curves go with it."""
    folder = tmp_path / "tensorboard"
    folder.mkdir()
    (folder / EVENTS_MARKER).write_text(json.dumps({"epochs": 99}))
    claim_events_folder(folder, IDENTITY, shared=False)
    assert json.loads((folder / EVENTS_MARKER).read_text()) == IDENTITY
