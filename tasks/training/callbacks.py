"""Keras callbacks of the train step: progress lines, per-epoch validation, resumable checkpoints."""

from __future__ import annotations

import logging
import time

import numpy as np
import tf_keras

from tasks.evaluation.scores import classification_scores

log = logging.getLogger("tasks.training.train")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class ProgressLogger(tf_keras.callbacks.Callback):
    """Logs loss, samples/s and ETA every ``every`` steps, and keeps the training throughput.

    Validation time is excluded from the throughput. ``steady_samples_per_second`` leaves out the first
    half of the steps, where graph tracing for each new batch shape dominates.
    """

    def __init__(self, every: int, steps_per_epoch: int, epochs: int, global_batch_size: int):
        super().__init__()
        self.every, self.steps_per_epoch, self.epochs = every, steps_per_epoch, epochs
        self.global_batch_size = global_batch_size
        self.total_steps = steps_per_epoch * epochs
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
        if step % self.every and step != self.steps_per_epoch:
            return
        window = max(now - self._window_start, 1e-9)
        rate = ((batch % self.every) + 1) * self.global_batch_size / window
        done = self._epoch * self.steps_per_epoch + step
        recent = self.step_times[-self.every :]
        eta = (self.total_steps - done) * sum(recent) / len(recent)
        log.info(
            "epoch %d/%d step %d/%d: loss %.4f | %.1f samples/s | ETA %s",
            self._epoch + 1,
            self.epochs,
            step,
            self.steps_per_epoch,
            (logs or {}).get("loss", float("nan")),
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


class ValidationScorer(tf_keras.callbacks.Callback):
    """Scores the whole validation split at each epoch end and adds ``val_accuracy``/``val_f1`` to the logs.

    It runs the model locally on each worker (no collective ops), so every worker of a multi-worker job
    scores the same full split and none waits for another.
    """

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset
        self.history: list[dict] = []
        self._predict = None

    def predictions(self) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        if self._predict is None:
            self._predict = tf.function(
                lambda features: tf.argmax(self.model(features, training=False).logits, axis=-1, output_type=tf.int32),
                reduce_retracing=True,
            )
        labels, predictions = [], []
        for features, label in self.dataset:
            predictions.append(self._predict(features).numpy())
            labels.append(label.numpy())
        return np.concatenate(labels), np.concatenate(predictions)

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        scores = classification_scores(*self.predictions())
        record = {"epoch": epoch + 1, "loss": (logs or {}).get("loss"), **scores}
        self.history.append(record)
        if logs is not None:
            logs["val_accuracy"], logs["val_f1"] = scores["accuracy"], scores["f1"]
        log.info(
            "epoch %d: train loss %.4f, validation accuracy %.4f, F1 %.4f (scored in %.1fs)",
            epoch + 1,
            record["loss"] or float("nan"),
            scores["accuracy"],
            scores["f1"],
            time.perf_counter() - start,
        )


class ResumableBackup(tf_keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that saves every ``every_steps`` steps *and* at each epoch end.

    Keras saves either per epoch or per N steps; a crash late in an epoch should lose at most N steps,
    and a finished epoch should never be redone. The checkpoint is kept after training (it is part of the
    step's output), and a resumed run logs where it picks up.
    """

    def __init__(self, backup_dir: str, every_steps: int, steps_per_epoch: int):
        super().__init__(backup_dir, save_freq=every_steps or "epoch", delete_checkpoint=False)
        self.steps_per_epoch = steps_per_epoch
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

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            super().on_epoch_end(epoch, logs)
        else:
            self._backup(epoch=epoch, batch=self.steps_per_epoch - 1)
