"""The human-readable side of an evaluation: ``report.md`` and ``report.png``.

The chart sets the FP32 model (as measured when it was quantised), the candidate, and the champion side
by side: accuracy, then batch-1 latency; then the candidate's learning curve (training and validation loss,
validation accuracy and F1 per epoch) from the training history its model card carries. A model trained before
the history was recorded has none: the panel says so. When a search chose the candidate's setting (the card's
``tuning``), a last panel shows each trial's validation accuracy by learning rate, and report.md lists the trials.
"""

from __future__ import annotations

from pathlib import Path

from tasks.tuning.results import STOPPED

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
TUNING_TITLE = "tuning: validation accuracy by learning rate"
# The setting's columns in the tuning table: the dimension, its title, its format.
_SETTING_COLUMNS = (
    ("learning_rate", "learning rate", "{:.3g}"),
    ("epochs", "epochs", "{}"),
    ("batch_size", "batch size", "{}"),
    ("warmup_ratio", "warm-up", "{:.3g}"),
    ("weight_decay", "weight decay", "{:.3g}"),
)


def compared_models(evaluation: dict, quantization: dict | None) -> dict[str, dict]:
    """Name -> metrics of every model the report shows, candidate first."""
    precision = evaluation["precision"].upper()
    models = {f"candidate ({precision})": evaluation}
    if quantization and quantization.get("fp32") and precision != "FP32":
        models[_FP32_ROW] = quantization["fp32"]
    if evaluation.get("champion"):
        models["champion"] = evaluation["champion"]
    return models


def markdown(evaluation: dict, models: dict[str, dict], history: list[dict], tuning: dict | None = None) -> str:
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
        f"## Learning curve\n\n{curve}\n\n"
        + (f"## Tuning\n\n{tuning_table(tuning)}\n\n" if tuning else "")
        + "![chart](report.png)\n"
    )


def tuning_table(tuning: dict) -> str:
    """The search that chose the candidate's setting: every trial's setting, score and status, the best marked."""
    best = tuning["best"]["name"]
    header = "| trial | " + " | ".join(title for _, title, _ in _SETTING_COLUMNS) + " | accuracy | F1 | status |"
    rows = []
    for trial in tuning["trials"]:
        setting = trial["setting"]
        name = f"**{trial['name']}** (best)" if trial["name"] == best else trial["name"]
        cells = [fmt.format(setting[key]) for key, _, fmt in _SETTING_COLUMNS]
        status = trial.get("status") or ""
        if status == STOPPED and trial.get("epochs_run"):
            status += f" after epoch {trial['epochs_run']}"
        rows.append(
            f"| {name} | " + " | ".join(cells) + f" | {_figure(trial.get('accuracy'))} | {_figure(trial.get('f1'))}"
            f" | {status} |"
        )
    rule = "|---|" + "---:|" * (len(_SETTING_COLUMNS) + 2) + "---|"
    source = f"The {tuning.get('objective') or 'validation accuracy'} of each trial of the search {tuning.get('uri')}"
    return "\n".join([f"{source}; the candidate was trained with the best setting.", "", header, rule, *rows])


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


def chart(models: dict[str, dict], history: list[dict], path: Path, tuning: dict | None = None) -> None:
    figure = draw(models, history, tuning)
    figure.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(figure)


def draw(models: dict[str, dict], history: list[dict], tuning: dict | None = None):
    """The report's figure: accuracy and latency bars, then the learning curve, then the search if there was one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    colours = ["#1f77b4", "#7f7f7f", "#ff7f0e"][: len(names)]
    panels = 4 if tuning else 3
    figure, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.6))
    left, middle, right = axes[:3]
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
    if tuning:
        tuning_panel(axes[3], tuning)
    figure.tight_layout()
    return figure


def tuning_panel(axis, tuning: dict) -> None:
    """Each scored trial's validation accuracy by its learning rate (log scale): filled when it ran its budget,
    hollow when stopped early; the best trial marked with a star."""
    axis.set_title(TUNING_TITLE, fontsize=9)
    scored = [trial for trial in tuning["trials"] if trial.get("accuracy") is not None]
    for stopped, label in ((False, "trial"), (True, "trial stopped early")):
        chosen = [trial for trial in scored if (trial.get("status") == STOPPED) == stopped]
        if chosen:
            axis.scatter(
                [trial["setting"]["learning_rate"] for trial in chosen],
                [trial["accuracy"] for trial in chosen],
                facecolors="none" if stopped else "#1f77b4",
                edgecolors="#1f77b4",
                label=label,
            )
    best = tuning["best"]
    axis.scatter(
        [best["setting"]["learning_rate"]],
        [best["accuracy"]],
        marker="*",
        s=180,
        color="#d62728",
        zorder=3,
        label=f"best: {best['name']} ({best['accuracy']:.3f})",
    )
    axis.set_xscale("log")
    axis.set_xlabel("learning rate", fontsize=8)
    axis.set_ylabel("validation accuracy", fontsize=8)
    failed = len(tuning["trials"]) - len(scored)
    if failed:
        axis.text(0.02, 0.02, f"{failed} failed trial(s) not shown", fontsize=7, transform=axis.transAxes)
    axis.legend(fontsize=7, loc="best")


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


def write_report(
    folder: Path,
    evaluation: dict,
    quantization: dict | None,
    history: list[dict] | None = None,
    tuning: dict | None = None,
) -> None:
    """``report.md`` and ``report.png``; ``history`` is the candidate's per-epoch training figures, if known;
    ``tuning`` the search that chose its setting (its model card's), if any."""
    models = compared_models(evaluation, quantization)
    (folder / "report.md").write_text(markdown(evaluation, models, history or [], tuning))
    chart(models, history or [], folder / "report.png", tuning)
