"""``python -m tasks monitor``: compare a window of captured traffic with the model's traffic baseline.

Reads the baseline (``--baseline``: a model's card or a staged data folder), then the window's capture records
(``--capture``), measures the statistics (tasks/monitoring/statistics.py) and writes ``monitoring.json`` and
``monitoring.png`` into ``--output`` whole or not at all. Every verdict (ok, drift, not enough data) is a
success: the pipeline decides what to do about it. See docs/monitoring.md.
"""

from __future__ import annotations

import logging

from tasks.config import MONITORING_REPORT, MonitorArguments
from tasks.monitoring import baseline, chart, reference, report, statistics, traffic
from tasks.runtime.outputs import atomic_output, write_json

log = logging.getLogger(__name__)


def monitor(args: MonitorArguments) -> dict:
    """The report of ``args``' window (nothing written)."""
    window = args.window()
    found = reference.load(args.baseline)
    log.info("baseline: the %s of %s (%d train pairs)", found.kind, args.baseline, found.baseline["pairs"])
    read = traffic.read_window(args.capture, *window)
    everything = read.model_versions
    judged = read.newest_version()
    notes = other_versions(read, judged)
    if judged is not None:
        read = read.of_version(judged)
    notes += baseline.length_notes(read, found.baseline)
    for note in notes:
        log.warning("%s", note)
    pairs = read.clipped(found.baseline.get(baseline.MAX_SEQ_LENGTH))  # compared at the length trained at
    values = statistics.traffic_values(pairs, found.baseline, args.low_confidence)
    entries = statistics.compare(values, baseline.reference_values(found.baseline, args.low_confidence), args)
    return report.build(args, window, pairs, found, entries, notes) | {
        "model_version": judged,
        "model_versions": dict(sorted(everything.items())),
    }


def other_versions(read: traffic.Traffic, judged: str | None) -> list[str]:
    """A note on the pairs of versions other than ``judged`` (a rollout inside the window): they are left out,
    since the baseline is the model serving now, and another model's labels and confidence are not its drift."""
    others = {version: count for version, count in sorted(read.model_versions.items()) if version != judged}
    if not others:
        return []
    listed = ", ".join(f"{version}: {count}" for version, count in others.items())
    return [
        f"{sum(others.values())} pair(s) answered by other model versions ({listed}) left out: the window is judged on {judged}, the version serving at its end"
    ]


def run(args: MonitorArguments) -> None:
    result = monitor(args)
    with atomic_output(args.output) as work:
        write_json(work / MONITORING_REPORT, result)
        chart.write(result, work / report.CHART)
    for entry in result["statistics"]:
        log.info(
            "%s: %s (baseline %s, threshold %s): %s",
            entry["name"],
            entry["value"],
            entry["baseline"],
            entry["threshold"],
            entry["status"],
        )
    log.info(
        "%s: %d pair(s) in %s to %s (at least %d needed)%s",
        result["status"],
        result["records"],
        result["window"]["start"],
        result["window"]["end"],
        args.min_records,
        f", drifted: {', '.join(result['drifted'])}" if result["drifted"] else "",
    )
