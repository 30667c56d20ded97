"""The precision ladder's rule: which measured candidate ships, and why the others do not.

A candidate (BF16, INT8) ships only if, against FP32 measured in the same fresh processes on the same CPU,

1. its relative accuracy loss is within ``--tolerance``,
2. it is at least ``--min-speedup`` times as fast at batch 32, and
3. it is not slower at batch 1 (p50),

each on unrounded figures. Of those that pass, the fastest at batch 32 ships; when none passes, FP32 does. Every
rejection says which rule it broke, with the numbers, and names the missing instructions when the CPU lacks what
makes the candidate fast (``--min-speedup 0`` waives rules 2 and 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.config import PRECISIONS

BASELINE = PRECISIONS[0]
# What each precision needs from the CPU to run fast, as ``tasks.runtime.cpu.hardware`` records it.
INSTRUCTIONS = {
    "bf16": ("bf16_instructions", "bf16 instructions (AVX512_BF16 or AMX)"),
    "int8": ("int8_dot_product_instructions", "INT8 dot-product instructions (VNNI/AMX)"),
}


# The rules that ask a candidate to be faster than FP32; a candidate that breaks one on a CPU without its
# instructions is explained by what the CPU lacks.
SPEED_RULES = ("batch_32", "batch_1")


@dataclass(frozen=True)
class Verdict:
    """One candidate against FP32: its figures and ratios, and why it may not ship ("" when it may)."""

    precision: str
    figures: dict | None
    relative_accuracy_loss: float | None = None
    speedup_b32: float | None = None
    speedup_b1_p50: float | None = None
    rejection: str = ""
    rule: str = ""  # the rule it broke, "" when it may ship: "unmeasured", "accuracy" or one of SPEED_RULES

    def as_dict(self) -> dict:
        return {
            "figures": self.figures,
            "relative_accuracy_loss": _rounded(self.relative_accuracy_loss),
            "speedup_b32": _rounded(self.speedup_b32),
            "speedup_b1_p50": _rounded(self.speedup_b1_p50),
            "rejection": self.rejection or None,
            "rule": self.rule or None,
        }


@dataclass(frozen=True)
class Decision:
    chosen: str
    verdicts: dict[str, Verdict]
    reason: str


def offered(candidates: tuple[str, ...], hardware: dict) -> tuple[tuple[str, ...], dict[str, str]]:
    """The candidates worth building on this CPU, and why each other one is not: BF16 only with bf16 instructions
    (without them TensorFlow emulates it, many times slower than FP32)."""
    built, skipped = [], {}
    for precision in candidates:
        if precision == BASELINE:
            continue
        if precision == "bf16" and not hardware[INSTRUCTIONS["bf16"][0]]:
            skipped[precision] = f"BF16 is not a candidate: this CPU has no {INSTRUCTIONS['bf16'][1]}"
        else:
            built.append(precision)
    return tuple(built), skipped


def relative_loss(baseline: float, accuracy: float) -> float:
    """Accuracy lost against ``baseline``, as a share of it (negative: gained)."""
    return (baseline - accuracy) / baseline if baseline else 0.0


def judge(precision: str, fp32: dict, figures: dict, tolerance: float, min_speedup: float) -> Verdict:
    """A measured candidate against FP32, by the three rules in order."""
    name = precision.upper()
    loss = relative_loss(fp32["accuracy"], figures["accuracy"])
    b32 = figures["throughput_b32"] / fp32["throughput_b32"]
    b1 = fp32["latency_ms_b1_p50"] / figures["latency_ms_b1_p50"]
    verdict = Verdict(precision, figures, loss, b32, b1)
    if loss > tolerance + 1e-9:
        rule, rejection = (
            "accuracy",
            (
                f"{name} loses {loss:.2%} accuracy ({figures['accuracy']:.4f} vs FP32 {fp32['accuracy']:.4f}), "
                f"above the {tolerance:.2%} tolerance"
            ),
        )
    elif min_speedup and b32 < min_speedup:
        rule, rejection = (
            "batch_32",
            (
                f"{name} runs {b32:.3f}x as fast as FP32 at batch 32 ({figures['throughput_b32']:.1f} vs "
                f"{fp32['throughput_b32']:.1f} pairs/s), below --min-speedup {min_speedup:g}"
            ),
        )
    elif min_speedup and b1 < 1:
        rule, rejection = (
            "batch_1",
            (
                f"{name} is slower than FP32 at batch 1: p50 {figures['latency_ms_b1_p50']:.1f} ms vs "
                f"{fp32['latency_ms_b1_p50']:.1f} ms ({b1:.3f}x)"
            ),
        )
    else:
        return verdict
    return Verdict(precision, figures, loss, b32, b1, rejection, rule)


def decide(
    measured: dict[str, dict],
    failures: dict[str, str],
    skipped: dict[str, str],
    hardware: dict,
    *,
    tolerance: float,
    min_speedup: float,
) -> Decision:
    """Choose among ``measured`` (figures by precision, FP32 included); ``failures`` and ``skipped`` hold the
    candidates that never reached a measurement, with their reason."""
    fp32 = measured[BASELINE]
    verdicts = {BASELINE: Verdict(BASELINE, fp32, 0.0, 1.0, 1.0)}
    for precision, figures in measured.items():
        if precision != BASELINE:
            verdicts[precision] = judge(precision, fp32, figures, tolerance, min_speedup)
    for precision, why in (failures | skipped).items():
        verdicts[precision] = Verdict(precision, None, rejection=why, rule="unmeasured")
    passing = [verdict for verdict in verdicts.values() if verdict.precision != BASELINE and not verdict.rejection]
    chosen = max(passing, key=lambda verdict: verdict.speedup_b32, default=verdicts[BASELINE])
    return Decision(chosen.precision, verdicts, _reason(chosen, verdicts, hardware, tolerance))


def _reason(chosen: Verdict, verdicts: dict[str, Verdict], hardware: dict, tolerance: float) -> str:
    others = [_explained(verdict, hardware) for verdict in verdicts.values() if verdict.rejection]
    if chosen.precision == BASELINE:
        return "; ".join(others + ["shipping FP32"]) if others else "no candidate but FP32 was asked for"
    loss = chosen.relative_accuracy_loss
    change = f"loses {loss:.2%}" if loss >= 0 else f"gains {-loss:.2%}"
    shipped = (
        f"{chosen.precision.upper()} {change} accuracy against FP32 (tolerance {tolerance:.2%}) "
        f"and runs {chosen.speedup_b32:.3f}x as fast as FP32 at batch 32 and {chosen.speedup_b1_p50:.3f}x at batch 1"
    )
    beaten = [
        f"{verdict.precision.upper()} also qualified at {verdict.speedup_b32:.3f}x"
        for verdict in verdicts.values()
        if verdict.precision not in (BASELINE, chosen.precision) and not verdict.rejection
    ]
    return "; ".join([shipped, *beaten, *others])


def _explained(verdict: Verdict, hardware: dict) -> str:
    """A speed rejection on a CPU without the candidate's instructions says so first, with both ratios."""
    key, instructions = INSTRUCTIONS.get(verdict.precision, (None, ""))
    if key and verdict.rule in SPEED_RULES and not hardware[key]:
        return (
            f"no {instructions} on this CPU: {verdict.precision.upper()} {verdict.speedup_b32:.3f}x at batch 32, "
            f"{verdict.speedup_b1_p50:.3f}x at batch 1"
        )
    return verdict.rejection


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
