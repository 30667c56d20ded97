"""``python -m tasks train``: fine-tune a BERT paraphrase classifier with Intel-optimised TensorFlow.

Phases, in order: CPU tuning, the cluster and its strategy, data, model, checkpoints, training, export.

Output (the chief worker writes it to ``.<output>.partial`` and renames it into place)::

    saved_model/      FP32 SavedModel, signature serving_default(input_ids, attention_mask, token_type_ids) -> logits
    tokenizer/        the tokenizer the data was staged with
    config.json       the transformers config (labels, sizes)
    metrics.json      train and validation loss, validation accuracy/F1 per epoch, samples/s, wall time, precision
    model_card.json   base model, data fingerprint, hyper-parameters, package versions, CPU flags, the per-epoch
                      history (the evaluate step's report draws the learning curve from it)
    README.md         the same as a Hugging Face model card (YAML metadata with model-index)
    checkpoints/      the last training checkpoint and the per-epoch history so far, history.json (unless
                      --checkpoint-dir puts them elsewhere)
    tensorboard/      TensorBoard events: train/ (loss, learning rate, samples/s per step; loss per epoch) and
                      validation/ (loss, accuracy, F1 per epoch); ``tensorboard --logdir`` on the output shows them

A tuning trial (``--score-only``) writes only metrics.json and tensorboard/. The learning rate and epochs default
to the base model's size (tasks/training/defaults.py), or to the search's best setting with ``--tuning``, whose
trials the model card then lists. ``--max-steps`` stops a run early within its own schedule;
``--early-stopping-dir`` stops a trial doing worse than the others (tasks/training/early_stopping.py).

A crashed run leaves ``.<output>.partial`` behind; the same command resumes from its checkpoint, its curves
continue and its metrics and history cover every epoch, those of the killed run included. A run with other settings (a ``run_config.json`` that differs) starts over instead.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from tasks.config import TRAINING_METRICS, TrainArguments
from tasks.data.splits import read_manifest, tokenizer_folder
from tasks.errors import ConfigError, DataError, ModelError
from tasks.runtime import cpu, model_card
from tasks.runtime.outputs import atomic_output, write_json
from tasks.training import defaults
from tasks.training.distributed import TrainingCluster, cluster_from_environment, strategy_for

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"
TENSORBOARD = "tensorboard"
# The per-epoch figures a model card keeps, for the learning curve of the evaluate step's report.
HISTORY_KEYS = ("epoch", "loss", "val_loss", "accuracy", "f1")
# Flags that say where things go, not how the model is trained.
_NOT_HYPERPARAMETERS = (
    "data",
    "output",
    "checkpoint_dir",
    "tensorboard_dir",
    "early_stopping_dir",
    "score_only",
    "tuning",
)
# The hyper-parameters metrics.json states, as the run resolved them (tasks/training/defaults.py, or --tuning).
_TRAINING_SETTING = ("learning_rate", "epochs", "batch_size", "warmup_ratio", "weight_decay")
_PACKAGES = ("tensorflow", "tf-keras", "transformers", "datasets", "numpy", "neural-compressor-tf")
# Settings that change what a checkpoint means; a checkpoint written under others is not resumed.
_RUN_IDENTITY = (
    "model",
    "epochs",
    "batch_size",
    "learning_rate",
    "warmup_ratio",
    "weight_decay",
    "max_seq_length",
    "precision",
    "padding",
    "seed",
    "max_steps",
)


def load_data(args: TrainArguments, manifest: dict):
    """Train and validation splits, re-tokenised from their text when --max-seq-length differs from staging."""
    from transformers import AutoTokenizer

    from tasks.data.splits import load_split

    data = Path(args.data)
    staged_length = manifest["max_seq_length"]
    max_seq_length = args.max_seq_length or staged_length
    tokenizer = None
    if max_seq_length != staged_length:
        log.info("re-tokenising to %d tokens (staged at %d)", max_seq_length, staged_length)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(data))
    train = load_split(data, "train", tokenizer, max_seq_length)
    validation = load_split(data, "validation", tokenizer, max_seq_length)
    if min(train.labels.min(initial=0), validation.labels.min(initial=0)) < 0:
        raise DataError(f"{data}: train and validation must be labelled (found label -1)")
    return train, validation, max_seq_length


def check_vocabulary(model, manifest: dict) -> None:
    staged, model_size = manifest["tokenizer"]["vocab_size"], model.config.vocab_size
    if staged > model_size:
        raise ModelError(
            f"the data was tokenised with {manifest['tokenizer']['source']} ({staged} tokens), but the model's "
            f"vocabulary has {model_size}: stage the data again with --tokenizer set to the model"
        )


def prepare_checkpoints(folder: Path, identity: dict) -> None:
    """Keep ``folder``'s checkpoint only if it was written by a run with the same identity."""
    marker = folder / RUN_CONFIG
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous == identity:
            return
        changed = sorted(key for key in identity.keys() | previous.keys() if identity.get(key) != previous.get(key))
        log.warning("checkpoints in %s were written with other settings (%s): starting over", folder, changed)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(marker, identity)


def classification_loss(labels, logits):
    """Cross-entropy on float32 logits, so bf16 compute never reaches the loss."""
    import tensorflow as tf
    import tf_keras

    return tf_keras.losses.sparse_categorical_crossentropy(labels, tf.cast(logits, tf.float32), from_logits=True)


def build_model(args: TrainArguments, total_steps: int):
    """The compiled classifier and its learning-rate schedule (learning rate by step index, for the logs)."""
    from transformers import create_optimizer

    from tasks.runtime.models import load_classifier

    model = load_classifier(args.model)
    optimizer, schedule = create_optimizer(
        init_lr=args.learning_rate,
        num_train_steps=total_steps,
        num_warmup_steps=int(args.warmup_ratio * total_steps),
        weight_decay_rate=args.weight_decay,
    )
    model.compile(optimizer=optimizer, loss=classification_loss)
    return model, lambda step: float(schedule(step))


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@dataclass(frozen=True)
class Schedule:
    """A run's steps: ``epochs`` whole passes over the data, which the learning-rate schedule (warm-up, decay) spans;
    a run capped at ``max_steps`` takes the first of those steps and stops, within its last epoch."""

    epochs: int
    steps_per_epoch: int
    max_steps: int = 0

    @classmethod
    def of(cls, pairs: int, global_batch_size: int, epochs: int, max_steps: int = 0) -> Schedule:
        return cls(epochs, math.ceil(pairs / global_batch_size), max_steps)

    @property
    def total_steps(self) -> int:
        """The steps of the whole schedule: what the learning rate decays over."""
        return self.epochs * self.steps_per_epoch

    @property
    def steps(self) -> int:
        """The steps this run takes."""
        return min(self.max_steps or self.total_steps, self.total_steps)

    @property
    def epochs_to_run(self) -> int:
        """The epochs this run starts (its last one cut short when capped)."""
        return math.ceil(self.steps / self.steps_per_epoch)


@dataclass(frozen=True)
class TrainingRun:
    """What one invocation trains with: its arguments, its place in the cluster, the CPU plan, the data."""

    args: TrainArguments
    cluster: TrainingCluster
    plan: cpu.CpuPlan
    manifest: dict
    tuning: dict | None = None  # the search's tuning.json (--tuning)

    @property
    def data(self) -> Path:
        return Path(self.args.data)

    @property
    def identity(self) -> dict:
        """The settings a checkpoint must share to be resumed."""
        return {key: getattr(self.args, key) for key in _RUN_IDENTITY} | {
            "data_fingerprint": self.manifest["fingerprint"],
            "workers": self.cluster.workers,
            "resolved_precision": self.plan.precision,
        }


@dataclass
class Trained:
    model: object
    epochs: list[dict]
    progress: object
    stopped_early: bool = False
    # The train split's part of the traffic baseline, and the validation split's size (its predictions' part is
    # in the last epoch's record).
    data_baseline: dict | None = None
    validation_pairs: int = 0


def fit(run: TrainingRun, strategy, checkpoints: Path, events: Path | None) -> Trained:
    """Train; ``events`` is the TensorBoard events folder (None: write none, as on a worker other than the chief)."""
    import tf_keras

    from tasks.data.splits import make_dataset
    from tasks.training.callbacks import (
        HISTORY,
        EpochHistory,
        MedianStopping,
        ProgressLogger,
        ResumableBackup,
        StepBudget,
        TensorBoardWriter,
        ValidationScorer,
    )

    args, workers = run.args, run.cluster.workers
    train, validation, max_seq_length = load_data(args, run.manifest)
    global_batch_size = args.batch_size * workers
    plan = Schedule.of(len(train), global_batch_size, args.epochs, args.max_steps)
    steps_per_epoch = plan.steps_per_epoch
    log.info(
        "training on %d pairs (validation %d): %d epoch(s) x %d steps%s, batch %d x %d worker(s), max length %d, "
        "padding %s",
        len(train),
        len(validation),
        plan.epochs,
        steps_per_epoch,
        f", stopping after {plan.steps} steps" if plan.steps < plan.total_steps else "",
        args.batch_size,
        workers,
        max_seq_length,
        args.padding,
    )

    def train_batches(input_context=None):
        return make_dataset(
            train,
            args.batch_size,
            max_seq_length,
            padding=args.padding,
            shuffle_seed=args.seed,
            input_context=input_context,
        )

    with strategy.scope():
        model, learning_rate = build_model(args, plan.total_steps)
    check_vocabulary(model, run.manifest)

    progress = ProgressLogger(
        args.log_every, steps_per_epoch, plan.epochs, global_batch_size, learning_rate, total_steps=plan.steps
    )
    validation_batches = make_dataset(validation, args.batch_size, max_seq_length, padding=args.padding)
    # The chief alone keeps the history with the checkpoint: the workers may share the checkpoint folder.
    history = EpochHistory(checkpoints / HISTORY if run.cluster.is_chief else None)
    scorer = ValidationScorer(validation_batches, classification_loss, history)
    stopping = None
    if args.early_stopping_dir:
        from tasks.training.early_stopping import run_name

        stopping = MedianStopping(args.early_stopping_dir, run_name(run.identity), history, plan.epochs_to_run)
    budget = StepBudget(plan.steps, steps_per_epoch) if plan.steps < plan.total_steps else None
    backup = ResumableBackup(str(checkpoints / "backup"), args.checkpoint_every, steps_per_epoch, history)
    # An epoch's scores and curves are written before its checkpoint: a run killed in between scores it again.
    curves = TensorBoardWriter(events, steps_per_epoch, global_batch_size, backup, learning_rate) if events else None
    callbacks = [scorer, stopping, budget, curves, backup, progress]
    try:
        model.fit(
            tf_keras.utils.experimental.DatasetCreator(train_batches),
            epochs=plan.epochs_to_run,
            steps_per_epoch=steps_per_epoch,
            callbacks=[callback for callback in callbacks if callback is not None],
            verbose=0,
        )
    finally:
        if curves:
            curves.close()
    return Trained(
        model,
        history.records,
        progress,
        stopped_early=bool(stopping and stopping.stopped_after),
        data_baseline=None
        if args.score_only or not run.cluster.is_chief
        else training_data_baseline(train, run.data, max_seq_length),
        validation_pairs=len(validation),
    )


def training_data_baseline(train, data: Path, max_seq_length: int) -> dict:
    """The train split's part of the traffic baseline (tasks/monitoring/baseline.py): its pairs' token lengths
    (as trained: re-tokenised when --max-seq-length asked), the unknown tokens among them, its labels, and the
    ``max_seq_length`` they were cut at."""
    import numpy as np

    from tasks.monitoring import baseline

    unknown_id = baseline.unknown_token_id(tokenizer_folder(data))
    token_ids = train.input_ids.flat_values.numpy()
    unknown = 0 if unknown_id is None else int(np.count_nonzero(token_ids == unknown_id))
    return baseline.of_training_data(train.input_ids.row_lengths().numpy(), unknown, train.labels, max_seq_length)


def card_traffic_baseline(trained: Trained) -> dict:
    """The card's traffic baseline: the train split's figures, with the final model's validation predictions'."""
    from tasks.config import LOW_CONFIDENCE
    from tasks.monitoring import baseline

    final = trained.epochs[-1] if trained.epochs else {}
    return baseline.with_validation(trained.data_baseline, final, trained.validation_pairs, LOW_CONFIDENCE)


@contextmanager
def worker_scratch(output: str, index: int) -> Iterator[Path]:
    """Non-chief worker ``index``'s checkpoint folder: never published, kept after a crash, removed after
    success. One per worker: the workers share the volume and finish at different times, and the first to
    finish must not remove the checkpoints another still writes."""
    output_path = Path(output).absolute()
    folder = output_path.parent / f".{output_path.name}.worker-{index}"
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run(args: TrainArguments) -> None:
    started = time.perf_counter()
    tuning = None
    if args.tuning:
        from tasks.tuning import results

        tuning = results.load(args.tuning)
        args = results.with_best_setting(args, tuning)
    args = defaults.resolved(args)
    cluster = cluster_from_environment()
    if args.early_stopping_dir and cluster.workers > 1:
        raise ConfigError(
            f"--early-stopping-dir needs a run on one worker, not {cluster.workers}: each worker would decide alone"
            " whether to stop (a tuning trial runs on one)"
        )
    plan = cpu.configure_environment(args.precision)
    import tensorflow as tf
    import tf_keras

    cpu.configure_tensorflow(plan)
    # A multi-worker strategy configures collective ops, which TensorFlow allows only before its first op.
    strategy = strategy_for(cluster)
    tf_keras.utils.set_random_seed(args.seed)
    training = TrainingRun(args, cluster, plan, read_manifest(Path(args.data)), tuning)
    log.info("worker %d of %d%s", cluster.index + 1, cluster.workers, " (chief)" if cluster.is_chief else "")

    workspace = (
        atomic_output(args.output, resumable=True) if cluster.is_chief else worker_scratch(args.output, cluster.index)
    )
    with workspace as work:
        checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else work / "checkpoints"
        prepare_checkpoints(checkpoints, training.identity)
        events = None
        if cluster.is_chief:
            from tasks.training.callbacks import claim_events_folder

            events = Path(args.tensorboard_dir) if args.tensorboard_dir else work / TENSORBOARD
            owner = training.identity | {"output": str(Path(args.output).absolute())}
            claim_events_folder(events, owner, shared=bool(args.tensorboard_dir))
        trained = fit(training, strategy, checkpoints, events)
        if not cluster.is_chief:
            log.info("worker %d done; the chief writes the model", cluster.index + 1)
            return
        if events != work / TENSORBOARD:
            shutil.copytree(events, work / TENSORBOARD, dirs_exist_ok=True)
        if args.score_only:
            write_scores(training, trained, work, checkpoints, time.perf_counter() - started)
            return
        write_model(training, trained, work, time.perf_counter() - started)
    log.info("model written to %s (TensorFlow %s)", args.output, tf.__version__)


def training_metrics(run: TrainingRun, trained: Trained, wall_time: float) -> dict:
    final = trained.epochs[-1] if trained.epochs else {}
    progress = trained.progress
    return {
        "accuracy": final.get("accuracy"),
        "f1": final.get("f1"),
        "confusion_matrix": final.get("confusion_matrix"),
        "train_loss": final.get("loss"),
        "validation_loss": final.get("val_loss"),
        "epochs": trained.epochs,
        "samples_per_second": round(progress.samples_per_second, 2),
        "steady_samples_per_second": round(progress.steady_samples_per_second, 2),
        "train_seconds": round(progress.train_seconds, 2),
        "wall_time_seconds": round(wall_time, 2),
        "steps": len(progress.step_times),
        "precision": run.plan.precision,
        "padding": run.args.padding,
        "workers": run.cluster.workers,
        "hyperparameters": {name: getattr(run.args, name) for name in _TRAINING_SETTING},
        "epochs_run": len(trained.epochs),
        "stopped_early": trained.stopped_early,
    }


def training_card(run: TrainingRun, architecture: str, metrics: dict) -> dict:
    from tasks.serving.contract import LABELS
    from tasks.training.export import SIGNATURE_INPUTS, SIGNATURE_OUTPUT

    manifest = run.manifest
    return {
        "task": "paraphrase detection (sentence-pair classification, GLUE MRPC)",
        "architecture": architecture,
        "base_model": run.args.model,
        "labels": list(LABELS),
        "data": {
            "source": manifest["source"],
            "fingerprint": manifest["fingerprint"],
            "rows": {split: summary["rows"] for split, summary in manifest["splits"].items()},
            "tokenizer": manifest["tokenizer"]["source"],
        },
        "hyperparameters": {k: v for k, v in asdict(run.args).items() if k not in _NOT_HYPERPARAMETERS},
        "precision": {"training": run.plan.precision, "exported": "fp32"},
        "cpu": run.plan.as_dict(),
        "packages": package_versions(),
        "metrics": {"accuracy": metrics["accuracy"], "f1": metrics["f1"]},
        "evaluation_split": "validation",
        model_card.TRAINING_HISTORY: [{key: epoch.get(key) for key in HISTORY_KEYS} for epoch in metrics["epochs"]],
        "signature": {"inputs": list(SIGNATURE_INPUTS), "outputs": [SIGNATURE_OUTPUT]},
    } | ({model_card.TUNING: card_tuning(run.args.tuning, run.tuning)} if run.tuning else {})


def card_tuning(uri: str, tuning: dict) -> dict:
    """What a model card keeps of the search that chose its setting: where it is, the best trial and every
    trial's setting and score."""
    trial_keys = ("name", "setting", "accuracy", "f1", "status", "epochs_run")
    return {
        "uri": uri,
        "objective": tuning.get("objective"),
        "seed": tuning.get("seed"),
        "max_steps": tuning.get("max_steps"),
        "best": tuning["best"],
        "trials": [{key: trial.get(key) for key in trial_keys} for trial in tuning.get("trials", [])],
    }


def write_scores(run: TrainingRun, trained: Trained, work: Path, checkpoints: Path, wall_time: float) -> None:
    """A tuning trial's output (--score-only): metrics.json and tensorboard/, no model. Its checkpoint, the size of
    the model and its optimizer state, is removed once the trial succeeded: a search runs many."""
    metrics = training_metrics(run, trained, wall_time)
    write_json(work / TRAINING_METRICS, metrics)
    if checkpoints.is_relative_to(work):
        shutil.rmtree(checkpoints, ignore_errors=True)
    log_result(metrics, run.plan.precision)


def write_model(run: TrainingRun, trained: Trained, work: Path, wall_time: float) -> None:
    from tasks.training.export import fp32_copy, save_classifier

    exported = fp32_copy(trained.model)
    save_classifier(exported, work / "saved_model")
    exported.config.save_pretrained(work)
    shutil.copytree(tokenizer_folder(run.data), work / "tokenizer", dirs_exist_ok=True)
    metrics = training_metrics(run, trained, wall_time)
    write_json(work / TRAINING_METRICS, metrics)
    card = training_card(run, type(exported).__name__, metrics)
    model_card.write(work, card | {model_card.TRAFFIC_BASELINE: card_traffic_baseline(trained)})
    log_result(metrics, run.plan.precision)


def log_result(metrics: dict, precision: str) -> None:
    """The run's closing line (SageMaker's metric definitions must not read it as another epoch's point)."""
    log.info(
        "validation accuracy %.4f, F1 %.4f; %.1f samples/s (%.1f steady), %s precision",
        metrics["accuracy"],
        metrics["f1"],
        metrics["samples_per_second"],
        metrics["steady_samples_per_second"],
        precision,
    )
