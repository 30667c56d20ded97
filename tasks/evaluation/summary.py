"""``python -m tasks summary``: what a pipeline run produced, for people: the precisions measured, the gate, the
endpoint, and the CPU the figures came from."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.config import PRECISIONS, SummaryArguments
from tasks.endpoint import state as endpoint_state
from tasks.runtime import cpu, digest

_CURL_BODY = {"instances": [{"sentence1": "The company posted a profit.", "sentence2": "The firm reported earnings."}]}


def run(args: SummaryArguments) -> None:
    folder = Path(args.run_folder)
    lines = [f"run folder: {folder}"]
    quantization = _read(_step_output(folder, "quantized") / "quantization.json")
    if quantization:
        lines.append(f"{'':8}{'accuracy':>9}{'F1':>8}{'b1 p50 ms':>11}{'b32 pairs/s':>13}")
        for precision in PRECISIONS:
            figures = quantization.get(precision) or {}
            if figures:
                lines.append(
                    f"{precision.upper():<8}{figures['accuracy']:>9.4f}{figures['f1']:>8.4f}"
                    f"{figures['latency_ms_b1_p50']:>11.1f}{figures['throughput_b32']:>13.1f}"
                )
        lines.append(f"shipped precision: {quantization['chosen_precision']} ({quantization['reason']})")
        if quantization.get("hardware"):
            lines.append(f"measured on: {cpu.describe_hardware(quantization['hardware'])}")
    evaluation = _read(_step_output(folder, "evaluation") / "evaluation.json")
    if evaluation:
        lines.append(f"gate decision: {evaluation['decision'].upper()}")
        lines += [f"  {reason}" for reason in evaluation["reasons"]]
    if not quantization and not evaluation:
        lines.append(
            "nothing was trained in this run: see the train task's log (cached: the production model was"
            " trained on the same data and configuration)"
        )
    state = endpoint_state.read(args.state) if args.state else None
    if state and state.get("current") and endpoint_state.pid_alive(state["pid"]):
        lines.append(f"endpoint: {state['url']} serving {state['current']['version']}")
        body = json.dumps(_CURL_BODY)
        lines.append(f"try: curl -s -H 'Content-Type: application/json' -d '{body}' {state['url']}/invocations")
    else:
        lines.append("endpoint: not running")
    print("\n".join(lines))


def _step_output(run_folder: Path, step: str) -> Path:
    """The step's last complete output in the run: of its try folders (``STEP/tryN``), the last one sealed."""
    tries = [path for path in (run_folder / step).glob("try*") if path.is_dir() and digest.sealed(path)]
    if not tries:
        return run_folder / step
    return max(tries, key=lambda path: (path / digest.DIGEST_FILE).stat().st_mtime_ns)


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
