"""The promotion gate: each rule rejects when it should, and every reason names its rule and numbers."""

import pytest

from tasks.evaluation.gate import Thresholds, decide

THRESHOLDS = Thresholds(min_accuracy=0.80, min_f1=0.85, max_int8_loss=0.01, champion_margin=0.01)
GOOD = {"accuracy": 0.88, "f1": 0.91}
INT8 = {"chosen_precision": "int8", "relative_accuracy_loss": 0.004}


def failed(decision) -> list[str]:
    return [check.rule for check in decision.checks if not check.passed]


def test_a_good_candidate_is_promoted_and_every_rule_is_reported():
    result = decide(GOOD, THRESHOLDS, champion={"accuracy": 0.885, "f1": 0.9}, quantization=INT8).as_dict()
    assert result["decision"] == "promote"
    assert result["reasons"] == [
        "min_accuracy: pass: accuracy 0.8800 >= minimum 0.8000",
        "min_f1: pass: F1 0.9100 >= minimum 0.8500",
        "max_int8_loss: pass: INT8 relative accuracy loss 0.40% <= 1.00%",
        "champion_margin: pass: accuracy 0.8800 vs champion 0.8850: within the margin of 0.0100",
    ]
    assert [rule["rule"] for rule in result["rules"]] == ["min_accuracy", "min_f1", "max_int8_loss", "champion_margin"]


@pytest.mark.parametrize(
    ("candidate", "champion", "quantization", "rule", "reason"),
    [
        ({"accuracy": 0.79, "f1": 0.9}, None, None, "min_accuracy", "accuracy 0.7900 is below the minimum 0.8000"),
        ({"accuracy": 0.88, "f1": 0.8}, None, None, "min_f1", "F1 0.8000 is below the minimum 0.8500"),
        (
            GOOD,
            None,
            {"chosen_precision": "int8", "relative_accuracy_loss": 0.02},
            "max_int8_loss",
            "INT8 relative accuracy loss 2.00% is above 1.00%",
        ),
        (
            GOOD,
            None,
            {"chosen_precision": "bf16", "relative_accuracy_loss": 0.015},
            "max_int8_loss",
            "BF16 relative accuracy loss 1.50% is above 1.00%",
        ),
        (
            GOOD,
            None,
            {"chosen_precision": "int8"},
            "max_int8_loss",
            "quantization.json names INT8 but records no relative_accuracy_loss",
        ),
        (
            GOOD,
            {"accuracy": 0.9, "f1": 0.93},
            None,
            "champion_margin",
            "accuracy 0.8800 vs champion 0.9000: 0.0200 worse, more than the margin of 0.0100",
        ),
    ],
)
def test_each_rule_rejects_with_its_numbers(candidate, champion, quantization, rule, reason):
    decision = decide(candidate, THRESHOLDS, champion=champion, quantization=quantization)
    result = decision.as_dict()
    assert result["decision"] == "reject" and failed(decision) == [rule]
    assert f"{rule}: FAIL: {reason}" in result["reasons"]


def test_every_failing_rule_is_listed_at_once():
    decision = decide({"accuracy": 0.5, "f1": 0.1}, THRESHOLDS, champion={"accuracy": 0.9, "f1": 0.9})
    assert failed(decision) == ["min_accuracy", "min_f1", "champion_margin"]


def test_boundaries_pass_and_fp32_fallbacks_have_no_int8_loss():
    exact = {"accuracy": 0.80, "f1": 0.85}
    decision = decide(
        exact,
        THRESHOLDS,
        champion={"accuracy": 0.81, "f1": 0.9},
        quantization={"chosen_precision": "fp32", "reason": "no INT8 recipe kept accuracy"},
    )
    assert decision.promote
    assert "max_int8_loss: pass: quantize kept FP32 (no INT8 recipe kept accuracy): no loss" in [
        str(check) for check in decision.checks
    ]


def test_a_champion_that_is_worse_never_blocks():
    assert decide(GOOD, THRESHOLDS, champion={"accuracy": 0.5, "f1": 0.5}).promote
