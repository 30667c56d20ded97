"""Keras callbacks of the train step: progress lines, per-epoch validation, TensorBoard curves, resumable
checkpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tf_keras

from tasks.config import LOW_CONFIDENCE
from tasks.errors import ConfigError
from tasks.evaluation.scores import classification_scores
from tasks.monitoring import baseline as traffic_baseline
from tasks.runtime.outputs import write_json

log = logging.getLogger("tasks.training.train")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class ProgressLogger(tf_keras.callbacks.Callback):
    """Logs loss, learning rate, samples/s and ETA every ``every`` steps, and keeps the training throughput.

    Validation time is excluded from the throughput. ``steady_samples_per_second`` leaves out the first
    half of the steps, where graph tracing for each new batch shape dominates.

    :param learning_rate: the optimizer's schedule, learning rate by step index (from 0).
    :param total_steps: the steps this run takes (fewer than ``epochs`` x ``steps_per_epoch`` when capped).
    """

    def __init__(
        self,
        every: int,
        steps_per_epoch: int,
        epochs: int,
        global_batch_size: int,
        learning_rate: Callable[[int], float],
        total_steps: int | None = None,
    ):
        super().__init__()
        self.every, self.steps_per_epoch, self.epochs = every, steps_per_epoch, epochs
        self.global_batch_size = global_batch_size
        self.learning_rate = learning_rate
        self.total_steps = total_steps or steps_per_epoch * epochs
        self.step_times: list[float] = []
        self._epoch = 0
        self._window_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._batch_start = self._window_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()
        if batch % self.every == 0:
            self._window_start = self._batch_start

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.step_times.append(now - self._batch_start)
        step = batch + 1
        done = self._epoch * self.steps_per_epoch + step
        if step % self.every and step != self.steps_per_epoch and done != self.total_steps:
            return
        window = max(now - self._window_start, 1e-9)
        rate = ((batch % self.every) + 1) * self.global_batch_size / window
        recent = self.step_times[-self.every :]
        eta = (self.total_steps - done) * sum(recent) / len(recent)
        log.info(
            "epoch %d/%d step %d/%d: loss %.4f | lr %.2e | %.1f samples/s | ETA %s",
            self._epoch + 1,
            self.epochs,
            step,
            self.steps_per_epoch,
            (logs or {}).get("loss", float("nan")),
            self.learning_rate(done - 1),
            rate,
            _duration(eta),
        )

    @property
    def train_seconds(self) -> float:
        return float(sum(self.step_times))

    @property
    def samples_per_second(self) -> float:
        return len(self.step_times) * self.global_batch_size / max(self.train_seconds, 1e-9)

    @property
    def steady_samples_per_second(self) -> float:
        steady = self.step_times[len(self.step_times) // 2 :]
        return len(steady) * self.global_batch_size / max(sum(steady), 1e-9)


# The per-epoch history, in the checkpoint folder (started over with it).
HISTORY = "history.json"


class EpochHistory:
    """The per-epoch records of a run (train loss, validation loss and scores), kept with its checkpoint in
    ``path``, so a resumed run reports every epoch, not only those it ran itself (metrics.json, the model card's
    history, report.png's learning curve). ``path`` None keeps them in memory only (a worker other than the
    chief, which may share the checkpoint folder)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.records: list[dict] = []

    def resume(self, epochs_done: int) -> None:
        """Keep the stored records of the ``epochs_done`` epochs the checkpoint holds: a killed run may have
        scored an epoch it never saved, which the resumed run scores again."""
        stored = json.loads(self.path.read_text()) if self.path and self.path.is_file() else []
        self.records = [record for record in stored if record["epoch"] <= epochs_done]
        self._save()

    def append(self, record: dict) -> None:
        self.records.append(record)
        self._save()

    def _save(self) -> None:
        """Whole or not at all: a process killed while writing leaves the previous file."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        write_json(temporary, self.records)
        temporary.replace(self.path)


class ValidationScorer(tf_keras.callbacks.Callback):
    """Scores the whole validation split at each epoch end and adds ``val_loss``/``val_accuracy``/``val_f1``
    to the logs.

    It runs the model locally on each worker (no collective ops), so every worker of a multi-worker job
    scores the same full split and none waits for another.

    :param loss: the training loss, ``loss(labels, logits)`` per pair, so both losses of the curve compare.
    :param history: where each epoch's record goes (in memory only when not given).
    """

    def __init__(self, dataset, loss: Callable, history: EpochHistory | None = None):
        super().__init__()
        self.dataset = dataset
        self.loss = loss
        self.history = history or EpochHistory(None)
        self._predict = None
        # The predicted labels' probabilities of the last scoring: the traffic baseline's confidence figures.
        self.confidences: np.ndarray | None = None

    def predictions(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(labels, predicted labels, mean loss) over the validation split; keeps the predicted labels'
        probabilities in ``confidences``."""
        import tensorflow as tf

        def predict(features, labels):
            logits = self.model(features, training=False).logits
            confidence = tf.reduce_max(tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1), axis=-1)
            return tf.argmax(logits, axis=-1, output_type=tf.int32), confidence, self.loss(labels, logits)

        if self._predict is None:
            self._predict = tf.function(predict, reduce_retracing=True)
        labels, predictions, confidences, losses = [], [], [], []
        for features, label in self.dataset:
            predicted, confidence, loss = self._predict(features, label)
            predictions.append(predicted.numpy())
            confidences.append(confidence.numpy())
            losses.append(loss.numpy())
            labels.append(label.numpy())
        self.confidences = np.concatenate(confidences)
        return np.concatenate(labels), np.concatenate(predictions), float(np.concatenate(losses).mean())

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        self.confidences = None
        labels, predictions, val_loss = self.predictions()
        scores = classification_scores(labels, predictions)
        record = {"epoch": epoch + 1, "loss": (logs or {}).get("loss"), "val_loss": val_loss, **scores}
        if self.confidences is not None:
            record |= traffic_baseline.of_predictions(self.confidences, predictions, LOW_CONFIDENCE)
        self.history.append(record)
        if logs is not None:
            logs["val_loss"], logs["val_accuracy"], logs["val_f1"] = val_loss, scores["accuracy"], scores["f1"]
        log.info(
            "epoch %d: train loss %.4f, validation loss %.4f, validation accuracy %.4f, F1 %.4f (scored in %.1fs)",
            epoch + 1,
            record["loss"] or float("nan"),
            val_loss,
            scores["accuracy"],
            scores["f1"],
            time.perf_counter() - start,
        )


# TensorBoard runs (sub-folders of the events folder): both have an epoch_loss, so TensorBoard draws the training
# and validation loss in one chart, as with Keras' own callback.
TRAIN_RUN, VALIDATION_RUN = "train", "validation"
_EVENTS_GLOB = "events.out.tfevents.*"
# Which run's curves an events folder holds (no "tfevents" in the name: TensorBoard reads every such file).
EVENTS_MARKER = "run_config.json"
# drop_events_after's rewrite, before it replaces the events file; without "tfevents" for the same reason.
_REWRITE = ".rewrite.tmp"


def claim_events_folder(folder: Path, identity: dict, shared: bool) -> None:
    """Mark ``folder`` as the events folder of the run ``identity``, before training prunes it.

    A resumed run finds its own marker and continues its curves. A ``shared`` folder (``--tensorboard-dir``)
    that holds anything else is refused: pruning it would remove another run's events. The output's own folder
    (not ``shared``) is taken over, as its checkpoint started over too.
    """
    marker = folder / EVENTS_MARKER
    if marker.is_file() and json.loads(marker.read_text()) == identity:
        return
    if shared and folder.is_dir() and any(folder.iterdir()):
        raise ConfigError(
            f"--tensorboard-dir {folder} holds another run's events (its {EVENTS_MARKER} names another run, or it"
            " has none): give each training run its own empty or new folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    write_json(marker, identity)


class TensorBoardWriter(tf_keras.callbacks.Callback):
    """Writes the training curves as TensorBoard events under ``folder``: on ``train/`` each step's
    ``batch_loss`` (the epoch's running mean, as Keras logs it), ``learning_rate`` and ``samples_per_second``,
    and each epoch's ``epoch_loss``; on ``validation/`` each epoch's ``epoch_loss``, ``epoch_accuracy`` and
    ``epoch_f1`` (from ``ValidationScorer``, which must run before it).

    Every scalar's step is the global training step (an epoch's at its last step run), so a run resumed from its
    checkpoint continues the curves. Events a killed run wrote past the checkpoint it resumes from are dropped
    first, so no step appears twice; a run that starts over drops the earlier curves. Events are flushed every
    step, so none before a checkpoint is lost with the process.

    :param backup: the checkpoint callback, whose ``resumed_at`` says where this run picks up.
    :param learning_rate: the optimizer's schedule, learning rate by step index (from 0).
    """

    def __init__(
        self,
        folder: Path,
        steps_per_epoch: int,
        global_batch_size: int,
        backup: ResumableBackup,
        learning_rate: Callable[[int], float],
    ):
        super().__init__()
        self.folder, self.steps_per_epoch, self.global_batch_size = folder, steps_per_epoch, global_batch_size
        self.backup, self.learning_rate = backup, learning_rate
        self._writers: dict[str, object] = {}
        self._epoch, self._batch_start, self._step = 0, 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._writers:
            return
        # Here rather than in on_train_begin: the checkpoint is restored by then, whatever the callback order.
        import tensorflow as tf

        epoch_at, batch_at = self.backup.resumed_at or (0, 0)
        drop_events_after(self.folder, epoch_at * self.steps_per_epoch + batch_at)
        self._writers = {
            run: tf.summary.create_file_writer(str(self.folder / run)) for run in (TRAIN_RUN, VALIDATION_RUN)
        }

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = max(time.perf_counter() - self._batch_start, 1e-9)
        step = self._step = self._epoch * self.steps_per_epoch + batch + 1
        self._write(
            TRAIN_RUN,
            step,
            batch_loss=(logs or {}).get("loss"),
            learning_rate=self.learning_rate(step - 1),
            samples_per_second=self.global_batch_size / seconds,
        )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = self._step  # the epoch's last step: the end of the epoch, or where a capped run stopped
        self._write(TRAIN_RUN, step, epoch_loss=logs.get("loss"))
        self._write(
            VALIDATION_RUN,
            step,
            epoch_loss=logs.get("val_loss"),
            epoch_accuracy=logs.get("val_accuracy"),
            epoch_f1=logs.get("val_f1"),
        )

    def on_train_end(self, logs=None):
        self.close()

    def close(self) -> None:
        """Flush and close the event files: nothing may write into the output once it is sealed."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def _write(self, run: str, step: int, **scalars) -> None:
        import tensorflow as tf

        writer = self._writers[run]
        with writer.as_default(step=step):
            for name, value in scalars.items():
                if value is not None:
                    tf.summary.scalar(name, float(value))
        writer.flush()


def drop_events_after(folder: Path, step: int) -> None:
    """Rewrite the event files of ``folder``'s runs without the summaries past ``step`` (all of them when
    ``step`` is 0). A file cut short by a killed process keeps the records before the cut."""
    import tensorflow as tf

    for run in (TRAIN_RUN, VALIDATION_RUN):
        (folder / run / _REWRITE).unlink(missing_ok=True)  # left by a run killed while rewriting
    for path in sorted(path for run in (TRAIN_RUN, VALIDATION_RUN) for path in (folder / run).glob(_EVENTS_GLOB)):
        if step == 0:
            log.info("TensorBoard: training starts over, removing the earlier curves in %s", path)
            path.unlink()
            continue
        kept, dropped = [], 0
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                if event.HasField("summary") and event.step > step:
                    dropped += 1
                else:
                    kept.append(record.numpy())
        except tf.errors.DataLossError:
            dropped += 1  # the record a killed writer left half-written
        if not dropped:
            continue
        rewrite = path.with_name(_REWRITE)
        with tf.io.TFRecordWriter(str(rewrite)) as writer:
            for record in kept:
                writer.write(record)
        rewrite.replace(path)
        log.info("TensorBoard: dropped %d record(s) past step %d, the checkpoint resumed, from %s", dropped, step, path)


class ResumableBackup(tf_keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that saves every ``every_steps`` steps *and* at each epoch end.

    Keras saves either per epoch or per N steps; a crash late in an epoch should lose at most N steps,
    and a finished epoch should never be redone. The checkpoint is kept after training (it is part of the
    step's output), and a resumed run logs where it picks up and keeps the ``history`` of the epochs it holds.
    """

    def __init__(self, backup_dir: str, every_steps: int, steps_per_epoch: int, history: EpochHistory):
        super().__init__(backup_dir, save_freq=every_steps or "epoch", delete_checkpoint=False)
        self.steps_per_epoch = steps_per_epoch
        self.history = history
        self.resumed_at: tuple[int, int] | None = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        epoch = int(self._training_state._ckpt_saved_epoch.numpy())
        batch = int(self._training_state._ckpt_saved_batch.numpy())
        if epoch >= 0:
            if self.save_freq == "epoch" or batch == self.steps_per_epoch - 1:
                self.resumed_at = (epoch + 1, 0)
            else:
                self.resumed_at = (epoch, batch + 1)
            log.info(
                "resuming from the checkpoint in %s: epoch %d, step %d",
                self.backup_dir,
                self.resumed_at[0] + 1,
                self.resumed_at[1],
            )
        self.history.resume(self.resumed_at[0] if self.resumed_at else 0)

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq != "epoch" and batch == self.steps_per_epoch - 1:
            # The epoch-end backup follows the epoch's scoring: a save here would resume a run killed while
            # scoring at the next epoch, without this one's scores. The next N steps count from that backup.
            self._training_state.backup_if_preempted()
            self._batches_count = 0
            return
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            super().on_epoch_end(epoch, logs)
        else:
            self._backup(epoch=epoch, batch=self.steps_per_epoch - 1)


class StepBudget(tf_keras.callbacks.Callback):
    """Stops training after ``max_steps`` steps in all, within a longer schedule (train's ``--max-steps``).

    Keras still ends the epoch it stops in (``on_epoch_end``: the scores, the curves, the checkpoint), so a capped
    run is scored where it stopped. A resumed run counts the steps its checkpoint holds.
    """

    def __init__(self, max_steps: int, steps_per_epoch: int):
        super().__init__()
        self.max_steps, self.steps_per_epoch = max_steps, steps_per_epoch
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch * self.steps_per_epoch + batch + 1 >= self.max_steps:
            self.model.stop_training = True


class MedianStopping(tf_keras.callbacks.Callback):
    """Records each epoch's validation accuracy in the folder the trials of a search share, and stops the run
    after an epoch but its last when the accuracy is below the median of at least two other runs' running averages
    up to that epoch (tasks/training/early_stopping.py). Runs after ``ValidationScorer``, whose ``history`` holds the
    accuracies (of the epochs a resumed run's checkpoint holds too).

    :param folder: the folder the trials share, local or remote.
    :param run: this run's name among the trials (``early_stopping.run_name``).
    :param last_epoch: the last epoch (from 1) this run trains.
    """

    def __init__(self, folder: str, run: str, history: EpochHistory, last_epoch: int):
        super().__init__()
        self.folder, self.run, self.history, self.last_epoch = folder, run, history, last_epoch
        self.stopped_after: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        from tasks.training import early_stopping

        accuracies = [record["accuracy"] for record in self.history.records]
        early_stopping.record(self.folder, self.run, accuracies)
        if epoch + 1 >= self.last_epoch:
            return
        peers = early_stopping.peer_accuracies(self.folder, self.run, epoch + 1)
        median = early_stopping.median_to_beat(accuracies[-1], peers)
        if median is not None:
            log.info(
                "early stopping after epoch %d: validation accuracy %.4f is below the median %.4f of %d other runs'"
                " running averages",
                epoch + 1,
                accuracies[-1],
                median,
                len(peers),
            )
            self.stopped_after = epoch + 1
            self.model.stop_training = True
