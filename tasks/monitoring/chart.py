"""``monitoring.png``: the window's token lengths beside the baseline's, and each statistic against its threshold."""

from __future__ import annotations

from pathlib import Path

from tasks.monitoring import statistics

_BASELINE, _TRAFFIC, _DRIFT = "#7f7f7f", "#1f77b4", "#d62728"
# Departures beyond this many thresholds are drawn this long; their label gives the value.
_LONGEST_BAR = 3.0


def write(report: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = draw(report)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw(report: dict):
    """Left: the share of pairs in each token-length bin, baseline and window. Right: each statistic's departure
    from the baseline as a share of its threshold (drift beyond 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (lengths, departures) = plt.subplots(1, 2, figsize=(11, 3.8))
    length_panel(lengths, report["token_length"])
    departure_panel(departures, report["statistics"])
    window = report["window"]
    figure.suptitle(
        f"{report['status']}: {report['records']} pair(s) from {window['start']} to {window['end']}", fontsize=10
    )
    figure.tight_layout()
    return figure


def bin_labels(edges: list[float]) -> list[str]:
    """``<=12``, ``13-15``, ..., ``>40``: the token lengths each bin holds (edges are whole token counts)."""
    bounds = [int(edge) for edge in edges]
    inner = [
        f"{low + 1}-{high}" if high > low + 1 else f"{high}" for low, high in zip(bounds, bounds[1:], strict=False)
    ]
    return [f"<={bounds[0]}", *inner, f">{bounds[-1]}"] if bounds else ["all"]


def length_panel(axis, token_length: dict) -> None:
    labels = bin_labels(token_length["edges"])
    positions = range(len(labels))
    width = 0.4
    axis.bar(
        [p - width / 2 for p in positions], token_length["baseline_shares"], width, color=_BASELINE, label="baseline"
    )
    if token_length["traffic_shares"] is not None:
        axis.bar(
            [p + width / 2 for p in positions], token_length["traffic_shares"], width, color=_TRAFFIC, label="window"
        )
    axis.set_xticks(list(positions), labels, fontsize=7, rotation=45)
    axis.set_xlabel("tokens per pair (the baseline's decile bins)", fontsize=8)
    axis.set_ylabel("share of pairs", fontsize=8)
    axis.set_title("token lengths", fontsize=9)
    axis.legend(fontsize=7)


def departure_panel(axis, entries: list[dict]) -> None:
    names = [entry["name"] for entry in entries]
    ratios, colours, notes = [], [], []
    for entry in entries:
        if entry["status"] == statistics.NO_REFERENCE:
            ratios.append(0.0)
            colours.append(_BASELINE)
            notes.append("no reference")
            continue
        departure = statistics.RULES[entry["name"]].departure(entry["value"], entry["baseline"])
        ratios.append(min(max(departure, 0.0) / entry["threshold"], _LONGEST_BAR))
        colours.append(_DRIFT if entry["status"] == statistics.DRIFT else _TRAFFIC)
        notes.append(f"{entry['value']:.3g} (baseline {entry['baseline']:.3g}, threshold {entry['threshold']:g})")
    bars = axis.barh(range(len(names)), ratios, color=colours)
    axis.bar_label(bars, notes, fontsize=7, padding=2)
    axis.axvline(1.0, color=_DRIFT, linestyle="--", linewidth=1)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, _LONGEST_BAR * 2.2)  # room for the labels
    axis.set_xlabel(
        f"departure from the baseline / threshold (drift beyond 1; bars end at {_LONGEST_BAR:g})", fontsize=8
    )
    axis.set_title("statistics", fontsize=9)
