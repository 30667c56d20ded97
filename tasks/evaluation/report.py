"""The human-readable side of an evaluation: ``report.md`` and ``report.png``.

The chart sets the FP32 model (as measured when it was quantised), the candidate, and the champion side
by side: accuracy on the left, batch-1 latency on the right.
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


def compared_models(evaluation: dict, quantization: dict | None) -> dict[str, dict]:
    """Name -> metrics of every model the report shows, candidate first."""
    precision = evaluation["precision"].upper()
    models = {f"candidate ({precision})": evaluation}
    if quantization and quantization.get("fp32") and precision != "FP32":
        models["FP32 before compression"] = quantization["fp32"]
    if evaluation.get("champion"):
        models["champion"] = evaluation["champion"]
    return models


def markdown(evaluation: dict, models: dict[str, dict]) -> str:
    header = "| model | " + " | ".join(title for _, title, _ in _COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(_COLUMNS)
    rows = [
        f"| {name} | "
        + " | ".join(fmt.format(metrics[key]) if key in metrics else "" for key, _, fmt in _COLUMNS)
        + " |"
        for name, metrics in models.items()
    ]
    reasons = "\n".join(f"- {reason}" for reason in evaluation["reasons"])
    notes = ""
    if "FP32 before quantisation" in models:
        notes = "\nThe FP32 row was measured by the quantize step on the validation split.\n"
    return (
        f"# Evaluation: {evaluation['decision'].upper()}\n\n"
        f"Model `{evaluation['model']}` on the {evaluation['split']} split ({evaluation['pairs']} pairs).\n\n"
        f"{header}\n{rule}\n" + "\n".join(rows) + f"\n{notes}\n## Rules\n\n{reasons}\n\n![chart](report.png)\n"
    )


def chart(models: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(models)
    colours = ["#1f77b4", "#7f7f7f", "#ff7f0e"][: len(names)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, key, title in (
        (left, "accuracy", "accuracy (higher is better)"),
        (right, "latency_ms_b1_p50", "latency at batch 1, p50 ms (lower is better)"),
    ):
        values = [models[name][key] for name in names]
        bars = axis.bar(range(len(names)), values, color=colours)
        axis.bar_label(bars, fmt="%.3f" if key == "accuracy" else "%.1f")
        axis.set_xticks(range(len(names)), [name.replace(" (", "\n(") for name in names], fontsize=8)
        axis.set_title(title, fontsize=9)
        if key == "accuracy":
            axis.set_ylim(0, 1.05)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(folder: Path, evaluation: dict, quantization: dict | None) -> None:
    models = compared_models(evaluation, quantization)
    (folder / "report.md").write_text(markdown(evaluation, models))
    chart(models, folder / "report.png")
