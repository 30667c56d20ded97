"""INT8 candidates: post-training static quantisation with Intel Neural Compressor.

INC's ``autotune`` tries a ladder of recipes (fastest first) and stops at the first whose accuracy on the
validation split is within ``--tolerance`` of the FP32 model's. Calibration samples the TRAIN split only. The
chosen INT8 graph is exported with the FP32 model's serving signature; the compression step then scores and
times it in fresh processes with plain TensorFlow, beside FP32 and any other candidate.

What the recipes do and leave out (measured with ``bench/precision_ladder.py`` on MiniLM):

- every dense MatMul (Q/K/V, attention output, both feed-forward layers, pooler, classifier) runs as an
  oneDNN INT8 MatMul with fused bias and dequantise; later recipes keep the most sensitive ones in FP32.
- attention's BatchMatMuls, embeddings, LayerNorm, GELU and softmax stay FP32: INC 3.10 has no INT8
  pattern for an activation-by-activation BatchMatMul in this graph.
- the signature keeps a dynamic sequence length, so the server pads each batch to its length bucket.
- without INT8 dot-product instructions (AVX512_VNNI, AVX_VNNI, AMX) oneDNN computes INT8 with AVX2 and
  the model is no faster than FP32: the compression step measures that and keeps FP32.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tasks.compression.ladder import relative_loss
from tasks.config import QuantizeArguments
from tasks.errors import ConfigError, ModelError, describe
from tasks.evaluation.measure import saved_model_folder
from tasks.training.export import SIGNATURE_INPUTS, SIGNATURE_OUTPUT

log = logging.getLogger(__name__)

# Regular expressions over graph node names (INC matches them with re.match).
_HEAD = [".*/pooler/.*", ".*/classifier/.*"]
_FEED_FORWARD_OUTPUT = [".*/layer_._\\d+/output/dense/.*"]
_FIRST_FEED_FORWARD_OUTPUT = [".*/layer_._0/output/dense/.*"]


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    options: dict = field(default_factory=dict)
    fp32_ops: tuple[str, ...] = ()

    def config(self):
        from neural_compressor.tensorflow import StaticQuantConfig

        config = StaticQuantConfig(**self.options)
        for pattern in self.fp32_ops:
            config.set_local(pattern, StaticQuantConfig(weight_dtype="fp32", act_dtype="fp32"))
        return config

    def as_dict(self) -> dict:
        return asdict(self) | {"fp32_ops": list(self.fp32_ops)}


# Tried in this order; each later one gives back some speed for accuracy. The first encoder layer's
# feed-forward output carries the widest activation range in BERT models, so it goes back to FP32 first.
RECIPES = (
    Recipe("int8-dense", "all dense MatMuls INT8, symmetric per-tensor min-max"),
    Recipe(
        "int8-fp32-head-and-first-ffn-output",
        "INT8 except the pooler, classifier and the first layer's feed-forward output",
        fp32_ops=tuple(_HEAD + _FIRST_FEED_FORWARD_OUTPUT),
    ),
    Recipe(
        "int8-dense-per-channel-kl",
        "all dense MatMuls INT8, per-channel weights, KL-calibrated activations",
        {"weight_granularity": "per_channel", "act_algorithm": "kl"},
    ),
    Recipe(
        "int8-fp32-head-and-ffn-output",
        "INT8 except the pooler, classifier and every feed-forward output layer",
        fp32_ops=tuple(_HEAD + _FEED_FORWARD_OUTPUT),
    ),
)


class CalibrationData:
    """INC's dataloader protocol: ``batch_size`` and batches of ``(features by input name, labels)``."""

    def __init__(self, split, batch_size: int, max_seq_length: int):
        from tasks.evaluation.measure import batches

        self.batch_size = batch_size
        self._batches = [
            ({name: features[name].numpy() for name in SIGNATURE_INPUTS}, labels)
            for features, labels in batches(split, batch_size, max_seq_length)
        ]

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self):
        return iter(self._batches)


def calibration_sample(split, size: int, seed: int):
    """``size`` pairs drawn from ``split`` without replacement (all of it when smaller)."""
    import tensorflow as tf

    from tasks.data.splits import Split

    if size >= len(split):
        return split
    chosen = np.sort(np.random.default_rng(seed).choice(len(split), size=size, replace=False))
    return Split(tf.gather(split.input_ids, chosen), tf.gather(split.token_type_ids, chosen), split.labels[chosen])


def graph_function(model):
    """A callable ``f(input_ids, attention_mask, token_type_ids) -> logits`` over an INC model's frozen graph.

    Freezing keeps the signature's input names as placeholder names; the one output is the logits.
    """
    import tensorflow as tf

    outputs = model.output_tensor_names
    if len(outputs) != 1 or set(model.input_tensor_names) != set(SIGNATURE_INPUTS):
        raise ModelError(
            f"the frozen graph has inputs {model.input_tensor_names} and outputs {outputs}; "
            f"expected {list(SIGNATURE_INPUTS)} and one logits output"
        )
    graph_def = model.graph_def
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    feeds = [wrapped.graph.get_tensor_by_name(f"{name}:0") for name in SIGNATURE_INPUTS]
    return wrapped.prune(feeds, wrapped.graph.get_tensor_by_name(f"{outputs[0]}:0"))


def export_graph(model, folder: Path) -> None:
    """Save an INC model's GraphDef as a SavedModel with the FP32 model's serving signature."""
    import tensorflow as tf

    logits = graph_function(model)
    module = tf.Module()
    module.logits = logits
    specs = [tf.TensorSpec([None, None], tf.int32, name=name) for name in SIGNATURE_INPUTS]

    @tf.function(input_signature=specs)
    def serve(input_ids, attention_mask, token_type_ids):
        return {SIGNATURE_OUTPUT: module.logits(input_ids, attention_mask, token_type_ids)}

    tf.saved_model.save(module, str(folder), signatures={"serving_default": serve})


def recipe(name: str) -> Recipe:
    return next(recipe for recipe in RECIPES if recipe.name == name)


def planned_recipes(args: QuantizeArguments) -> tuple[Recipe, ...]:
    """The recipes to try, in order: ``--recipes`` (default the whole ladder), at most ``--max-trials``."""
    if not args.recipes:
        return RECIPES[: args.max_trials]
    by_name = {recipe.name: recipe for recipe in RECIPES}
    names = [name.strip() for name in args.recipes.split(",")]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConfigError(f"--recipes names no recipe {', '.join(unknown)}; the recipes: {', '.join(by_name)}")
    return tuple(by_name[name] for name in names)[: args.max_trials]


class Trials:
    """INC's evaluation callback: scores each model it is given and remembers the results in order.

    ``autotune`` calls it once for the FP32 baseline, then once per recipe of ``recipes``, in order.
    """

    def __init__(self, validation_batches, tolerance: float, recipes: tuple[Recipe, ...]):
        self.batches = validation_batches
        self.tolerance = tolerance
        self.recipes = recipes
        self.baseline: float | None = None
        self.results: list[dict] = []
        self._since = time.perf_counter()

    def __call__(self, model) -> float:
        logits = graph_function(model)
        correct = total = 0
        for features, labels in self.batches:
            predictions = np.argmax(logits(*(features[name] for name in SIGNATURE_INPUTS)).numpy(), axis=-1)
            correct += int(np.sum(predictions == labels))
            total += len(labels)
        accuracy = correct / total
        seconds, self._since = time.perf_counter() - self._since, time.perf_counter()
        if self.baseline is None:
            self.baseline = accuracy
            log.info("FP32 baseline: validation accuracy %.4f", accuracy)
            return accuracy
        recipe = self.recipes[len(self.results)]
        loss = relative_loss(self.baseline, accuracy)
        int8_ops = count_int8_ops(model.graph_def)
        accepted = loss <= self.tolerance and int8_ops > 0
        self.results.append(
            {
                "trial": len(self.results) + 1,
                "recipe": recipe.name,
                "accuracy": round(accuracy, 4),
                "relative_accuracy_loss": round(loss, 4),
                "int8_ops": int8_ops,
                "accepted": accepted,
                "seconds": round(seconds, 1),
            }
        )
        log.info(
            "trial %d/%d (%s, quantised and scored in %.0f s): %d INT8 ops, validation accuracy %.4f, "
            "relative loss %.2f%% (tolerance %.2f%%): %s",
            len(self.results),
            len(self.recipes),
            recipe.name,
            seconds,
            int8_ops,
            accuracy,
            100 * loss,
            100 * self.tolerance,
            "accepted" if accepted else "rejected",
        )
        # A graph INC left without INT8 ops would pass on accuracy alone; scoring it 0 keeps autotune going.
        return accuracy if int8_ops else 0.0

    def chosen(self) -> dict | None:
        """The trial whose model ``autotune`` returns: the first within tolerance, else none."""
        return next((trial for trial in self.results if trial["accepted"]), None)

    def best(self) -> dict | None:
        return max(self.results, key=lambda trial: trial["accuracy"], default=None)


def count_int8_ops(graph_def) -> int:
    """Nodes running INT8 kernels (INC's ``Quantized*`` ops), including inside graph functions."""
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    return sum(node.op.startswith(("Quantized", "_QuantizedMatMul", "_MklQuantized")) for node in nodes)


def calibration_data(args: QuantizeArguments, manifest: dict) -> CalibrationData:
    """A seeded sample of the TRAIN split: the pairs the model is scored on never set INT8 ranges."""
    from tasks.data import splits

    train = splits.load_split(Path(args.data), "train")
    sample = calibration_sample(train, args.calibration_size, args.seed)
    return CalibrationData(sample, args.batch_size, manifest["max_seq_length"])


def autotune_int8(args: QuantizeArguments, model_dir: Path, manifest: dict, trials: Trials):
    """Run INC's autotune over the trials' recipes; the INT8 model within tolerance, or None."""
    os.environ.setdefault("LOGLEVEL", "ERROR")  # INC's own logger; it prints whole node lists at WARNING
    # INC probes the SavedModel as a Keras model and calls TF1 graph utilities: warnings about INC's
    # internals, once per trial, that a user cannot act on.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    from neural_compressor.common.base_tuning import TuningConfig
    from neural_compressor.tensorflow import Model, autotune

    calibration = calibration_data(args, manifest)
    recipes = trials.recipes
    log.info(
        "calibrating on %d train pairs; up to %d recipe(s): %s",
        args.calibration_size,
        len(recipes),
        ", ".join(recipe.name for recipe in recipes),
    )
    tuning = TuningConfig(
        config_set=[recipe.config() for recipe in recipes], tolerable_loss=args.tolerance, max_trials=len(recipes)
    )
    quantized = autotune(
        Model(str(saved_model_folder(model_dir))),
        tuning,
        eval_fn=trials,
        calib_dataloader=calibration,
        calib_iteration=len(calibration),
    )
    return quantized if trials.chosen() is not None else None


def try_int8(args: QuantizeArguments, model_dir: Path, manifest: dict, trials: Trials, folder: Path) -> str:
    """Quantise into ``folder``; the reason INT8 is not an option, or "" when ``folder`` holds a candidate."""
    try:
        quantized = autotune_int8(args, model_dir, manifest, trials)
        if quantized is None:
            best = trials.best()
            return (
                f"no INT8 recipe kept accuracy within {args.tolerance:.2%} of FP32 ({trials.baseline:.4f}); "
                f"best: {best['recipe']} at {best['accuracy']:.4f}, a relative loss of {best['relative_accuracy_loss']:.2%}"
            )
        export_graph(quantized, folder)
    except Exception as error:  # INC and TensorFlow raise many types; the FP32 model still ships
        log.warning("INT8 quantisation failed", exc_info=True)
        return f"INT8 quantisation failed: {describe(error)}"
    return ""


def validation_batches(data: Path, manifest: dict, batch_size: int) -> list:
    from tasks.data.splits import load_split
    from tasks.evaluation.measure import batches

    return batches(load_split(data, "validation"), batch_size, manifest["max_seq_length"])
