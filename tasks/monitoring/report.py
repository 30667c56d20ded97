"""``monitoring.json``: the window, the traffic it held, each statistic against its threshold, and the verdict.

The verdict (``status``) is ``not_enough_data`` when the window holds fewer than ``--min-records`` pairs
(whatever the statistics say: a few pairs are noise, never drift), else ``drift`` when any statistic drifted,
else ``ok``. The statistics of a window with too few pairs are still listed, for a person to read.
"""

from __future__ import annotations

from datetime import datetime

from tasks.config import MONITOR_DRIFT, MONITOR_NOT_ENOUGH_DATA, MONITOR_OK
from tasks.monitoring import records, statistics

CHART = "monitoring.png"


def build(args, window: tuple[datetime, datetime], traffic, reference, entries: list[dict], notes: list[str]) -> dict:
    """The report of one monitor run.

    :param args: the step's MonitorArguments.
    :param window: its (start, end).
    :param traffic: the window's pairs (tasks.monitoring.traffic.Traffic).
    :param reference: the baseline and where it came from (tasks.monitoring.reference.Reference).
    :param entries: each statistic's entry (tasks.monitoring.statistics.compare).
    :param notes: what a reader must know to trust the figures (tasks.monitoring.baseline.length_notes).
    """
    enough = len(traffic) >= args.min_records
    drifted = [entry["name"] for entry in entries if entry["status"] == statistics.DRIFT] if enough else []
    edges = reference.baseline["token_length"]["edges"]
    return {
        "status": (MONITOR_DRIFT if drifted else MONITOR_OK) if enough else MONITOR_NOT_ENOUGH_DATA,
        "window": {"start": records.stamp(window[0]), "end": records.stamp(window[1])},
        "records": len(traffic),
        "min_records": args.min_records,
        "model_versions": dict(sorted(traffic.model_versions.items())),
        "capture": args.capture,
        "baseline": args.baseline,
        "baseline_kind": reference.kind,
        "statistics": entries,
        "drifted": drifted,
        "notes": notes,
        "token_length": {
            "max_seq_length": reference.baseline.get("max_seq_length"),
            "edges": edges,
            "baseline_shares": reference.baseline["token_length"]["shares"],
            "traffic_shares": [round(share, 6) for share in statistics.bin_shares(traffic.lengths, edges)]
            if len(traffic)
            else None,
        },
    }
