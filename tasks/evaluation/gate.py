"""The promotion gate: may a candidate model replace the one in production?

Every rule is checked and reported, pass or fail, so a rejected run says everything that is wrong at
once and a promoted run shows what it was held to. The candidate is promoted only if every rule passes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Thresholds:
    min_accuracy: float
    min_f1: float
    max_int8_loss: float
    champion_margin: float


@dataclass(frozen=True)
class Check:
    rule: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {'pass' if self.passed else 'FAIL'}: {self.detail}"


@dataclass(frozen=True)
class Decision:
    checks: tuple[Check, ...]

    @property
    def promote(self) -> bool:
        return all(check.passed for check in self.checks)

    def as_dict(self) -> dict:
        return {
            "decision": "promote" if self.promote else "reject",
            "reasons": [str(check) for check in self.checks],
            "rules": [asdict(check) for check in self.checks],
        }


def _minimum(rule: str, name: str, value: float, minimum: float) -> Check:
    if value >= minimum:
        return Check(rule, True, f"{name} {value:.4f} >= minimum {minimum:.4f}")
    return Check(rule, False, f"{name} {value:.4f} is below the minimum {minimum:.4f}")


def _int8_loss(quantization: dict | None, limit: float) -> Check:
    """The compressed model's relative accuracy loss against FP32 (INT8 or BF16: whatever quantize shipped)."""
    rule = "max_int8_loss"
    if quantization is None:
        return Check(rule, True, "not a quantised model (no quantization.json): no compression loss to bound")
    precision = quantization.get("chosen_precision")
    if precision == "fp32":
        return Check(rule, True, f"quantize kept FP32 ({quantization.get('reason', 'no reason given')}): no loss")
    name = str(precision).upper()
    loss = quantization.get("relative_accuracy_loss")
    if loss is None:
        return Check(rule, False, f"quantization.json names {name} but records no relative_accuracy_loss")
    if loss <= limit:
        return Check(rule, True, f"{name} relative accuracy loss {loss:.2%} <= {limit:.2%}")
    return Check(rule, False, f"{name} relative accuracy loss {loss:.2%} is above {limit:.2%}")


def _champion(candidate: dict, champion: dict | None, margin: float) -> Check:
    rule = "champion_margin"
    if champion is None:
        return Check(rule, True, "no champion given: nothing in production to compare with")
    gap = champion["accuracy"] - candidate["accuracy"]
    detail = f"accuracy {candidate['accuracy']:.4f} vs champion {champion['accuracy']:.4f}"
    if gap <= margin + 1e-12:
        return Check(rule, True, f"{detail}: within the margin of {margin:.4f}")
    return Check(rule, False, f"{detail}: {gap:.4f} worse, more than the margin of {margin:.4f}")


def decide(candidate: dict, thresholds: Thresholds, *, champion: dict | None = None, quantization: dict | None = None):
    """Check ``candidate`` (metrics with ``accuracy`` and ``f1``) against every rule."""
    return Decision(
        (
            _minimum("min_accuracy", "accuracy", candidate["accuracy"], thresholds.min_accuracy),
            _minimum("min_f1", "F1", candidate["f1"], thresholds.min_f1),
            _int8_loss(quantization, thresholds.max_int8_loss),
            _champion(candidate, champion, thresholds.champion_margin),
        )
    )
