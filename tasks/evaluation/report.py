"""The human-readable side of an evaluation: ``report.md`` and ``report.png``.

The chart sets the FP32 model (as measured when it was quantised), the candidate, and the champion side
by side: accuracy, then batch-1 latency; then the candidate's learning curve (training and validation loss,
validation accuracy and F1 per epoch) from the training history its model card carries. A model trained before
the history was recorded has none: the panel says so.
"""

from __future__ import annotations

from pathlib import Path

_COLUMNS = (
    ("accuracy", "accuracy", "{:.4f}"),
    ("f1", "F1", "{:.4f}"),
    ("latency_ms_b1_p50", "latency b1 p50 (ms)", "{:.2f}"),
    ("latency_ms_b1_p99", "latency b1 p99 (ms)", "{:.2f}"),
    ("throughput_b32", "throughput b32 (pairs/s)", "{:.1f}"),
    ("size_mb", "size (MB)", "{:.1f}"),
)


_FP32_ROW = "FP32 before compression"
CURVE_TITLE = "learning curve of the candidate's training"
NO_HISTORY = "No training history: the model's card has none (it was trained before curves were recorded)."
# Per-epoch keys of the training history (tasks.runtime.model_card.TRAINING_HISTORY) and how the report names them.
_CURVES = (
    ("loss", "training loss"),
    ("val_loss", "validation loss"),
    ("accuracy", "validation accuracy"),
    ("f1", "validation F1"),
)
# One colour per curve: the two scales' own colour cycles would repeat each other's.
_CURVE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def compared_models(evaluation: dict, quantization: dict | None) -> dict[str, dict]:
    """Name -> metrics of every model the report shows, candidate first."""
    precision = evaluation["precision"].upper()
    models = {f"candidate ({precision})": evaluation}
    if quantization and quantization.get("fp32") and precision != "FP32":
        models[_FP32_ROW] = quantization["fp32"]
    if evaluation.get("champion"):
        models["champion"] = evaluation["champion"]
    return models


def markdown(evaluation: dict, models: dict[str, dict], history: list[dict]) -> str:
    header = "| model | " + " | ".join(title for _, title, _ in _COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(_COLUMNS)
    rows = [
        f"| {name} | "
        + " | ".join(fmt.format(metrics[key]) if key in metrics else "" for key, _, fmt in _COLUMNS)
        + " |"
        for name, metrics in models.items()
    ]
    reasons = "\n".join(f"- {reason}" for reason in evaluation["reasons"])
    curve = learning_curve_table(history)
    notes = ""
    if _FP32_ROW in models:
        notes = "\nThe FP32 row was measured by the quantize step on the validation split.\n"
    return (
        f"# Evaluation: {evaluation['decision'].upper()}\n\n"
        f"Model `{evaluation['model']}` on the {evaluation['split']} split ({evaluation['pairs']} pairs).\n\n"
        f"{header}\n{rule}\n" + "\n".join(rows) + f"\n{notes}\n## Rules\n\n{reasons}\n\n"
        f"## Learning curve\n\n{curve}\n\n![chart](report.png)\n"
    )


def learning_curve_table(history: list[dict]) -> str:
    if not history:
        return NO_HISTORY
    rows = [
        f"| {epoch['epoch']} | " + " | ".join(_figure(epoch.get(key)) for key, _ in _CURVES) + " |" for epoch in history
    ]
    header = "| epoch | " + " | ".join(title for _, title in _CURVES) + " |"
    return "\n".join([header, "|---:|" + "---:|" * len(_CURVES), *rows])


def _figure(value) -> str:
    return "" if value is None else f"{value:.4f}"


def chart(models: dict[str, dict], history: list[dict], path: Path) -> None:
    figure = draw(models, history)
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)


def draw(models: dict[str, dict], history: list[dict]):
    """The report's figure: accuracy and latency bars, then the learning curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    colours = ["#1f77b4", "#7f7f7f", "#ff7f0e"][: len(names)]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13.5, 3.6))
    for axis, key, title in (
        (left, "accuracy", "accuracy (higher is better)"),
        (middle, "latency_ms_b1_p50", "latency at batch 1, p50 ms (lower is better)"),
    ):
        values = [models[name][key] for name in names]
        bars = axis.bar(range(len(names)), values, color=colours)
        axis.bar_label(bars, fmt="%.3f" if key == "accuracy" else "%.1f")
        axis.set_xticks(range(len(names)), [name.replace(" (", "\n(") for name in names], fontsize=8)
        axis.set_title(title, fontsize=9)
        if key == "accuracy":
            axis.set_ylim(0, 1.05)
    learning_curve(right, history)
    figure.tight_layout()
    return figure


def learning_curve(axis, history: list[dict]) -> None:
    """Losses on the left scale, validation accuracy and F1 on a 0-1 scale on the right, per epoch."""
    axis.set_title(CURVE_TITLE, fontsize=9)
    if not history:
        axis.text(0.5, 0.5, NO_HISTORY, ha="center", va="center", wrap=True, fontsize=8, transform=axis.transAxes)
        axis.set_axis_off()
        return
    epochs = [epoch["epoch"] for epoch in history]
    scores = axis.twinx()
    for (key, title), colour in zip(_CURVES, _CURVE_COLOURS, strict=True):
        values = [epoch.get(key) for epoch in history]
        if all(value is None for value in values):
            continue  # a history written before validation loss was recorded
        target = axis if "loss" in key else scores
        style = "--" if target is scores else "-"
        target.plot(epochs, values, marker="o", linestyle=style, color=colour, label=title)
    axis.set_xlabel("epoch", fontsize=8)
    axis.set_ylabel("loss", fontsize=8)
    axis.set_xticks(epochs)
    scores.set_ylim(0, 1.05)
    scores.set_ylabel("validation score", fontsize=8)
    lines = axis.get_legend_handles_labels()[0] + scores.get_legend_handles_labels()[0]
    axis.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="best")


def write_report(folder: Path, evaluation: dict, quantization: dict | None, history: list[dict] | None = None) -> None:
    """``report.md`` and ``report.png``; ``history`` is the candidate's per-epoch training figures, if known."""
    models = compared_models(evaluation, quantization)
    (folder / "report.md").write_text(markdown(evaluation, models, history or []))
    chart(models, history or [], folder / "report.png")
