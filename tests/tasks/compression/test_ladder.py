"""The precision ladder's rule on measured figures, on each CPU the suite meets (forced, whatever runs the tests)."""

import pytest

from tasks.compression import ladder
from tasks.runtime import cpu
from tests.tasks.isas import ISAS, cpuinfo

# The AVX2-only host of the issue: INT8 slightly slower than FP32 at batch 32 and slower at batch 1.
FP32 = {"accuracy": 0.9, "f1": 0.9, "latency_ms_b1_p50": 39.1, "latency_ms_b1_p99": 41.0, "throughput_b32": 55.87}
INT8_ON_AVX2 = FP32 | {"accuracy": 0.8933, "latency_ms_b1_p50": 45.5, "throughput_b32": 55.64}
INT8_ON_VNNI = FP32 | {"accuracy": 0.8967, "latency_ms_b1_p50": 23.3, "throughput_b32": 116.2}
BF16_ON_AMX = FP32 | {"accuracy": 0.9, "latency_ms_b1_p50": 30.0, "throughput_b32": 90.0}


def hardware(tmp_path, isa: str) -> dict:
    return cpu.hardware("ml.c6i.xlarge", cpuinfo(tmp_path, ISAS[isa]))


def decide(measured: dict, host: dict, *, failures=None, skipped=None, tolerance=0.01, min_speedup=1.1):
    return ladder.decide(
        {"fp32": FP32} | measured,
        failures or {},
        skipped or {},
        host,
        tolerance=tolerance,
        min_speedup=min_speedup,
    )


@pytest.mark.parametrize(("isa", "bf16_offered"), [("avx2-only", False), ("avx512-vnni", False), ("amx", True)])
def test_bf16_is_a_candidate_only_where_the_cpu_has_bf16_instructions(tmp_path, isa, bf16_offered):
    offered, skipped = ladder.offered(("fp32", "bf16", "int8"), hardware(tmp_path, isa))
    assert offered == (("bf16", "int8") if bf16_offered else ("int8",))
    refusal = "BF16 is not a candidate: this CPU has no bf16 instructions (AVX512_BF16 or AMX)"
    assert skipped == ({} if bf16_offered else {"bf16": refusal})
    assert ladder.offered(("fp32",), hardware(tmp_path, isa)) == ((), {})


def test_the_hardware_record_names_the_cpu_its_features_and_the_target(tmp_path):
    host = hardware(tmp_path, "avx512-vnni")
    assert host["cpu_model"] == "Test CPU" and host["target"] == "ml.c6i.xlarge" and host["cores"] >= 1
    assert host["isa"] == {
        "avx2": True,
        "avx512f": True,
        "avx_vnni": False,
        "avx512_vnni": True,
        "avx512_bf16": False,
        "amx_bf16": False,
        "amx_int8": False,
        "amx_tile": False,
    }
    assert host["int8_dot_product_instructions"] and not host["bf16_instructions"]


def test_an_avx2_host_never_ships_int8_slower_than_fp32_and_says_why(tmp_path):
    decision = decide({"int8": INT8_ON_AVX2}, hardware(tmp_path, "avx2-only"), min_speedup=1.0)
    assert decision.chosen == "fp32"
    int8 = decision.verdicts["int8"]
    assert int8.speedup_b32 == pytest.approx(55.64 / 55.87) and int8.speedup_b32 > 0.995  # would round to 1.00
    assert int8.rule == "batch_32"
    assert (
        int8.rejection == "INT8 runs 0.996x as fast as FP32 at batch 32 (55.6 vs 55.9 pairs/s), below --min-speedup 1"
    )
    assert decision.reason == (
        "no INT8 dot-product instructions (VNNI/AMX) on this CPU: INT8 0.996x at batch 32, 0.859x at batch 1; "
        "shipping FP32"
    )


def test_a_candidate_slower_at_batch_1_is_refused_even_when_faster_at_batch_32(tmp_path):
    slow_b1 = INT8_ON_VNNI | {"latency_ms_b1_p50": 40.0}
    decision = decide({"int8": slow_b1}, hardware(tmp_path, "avx512-vnni"))
    assert decision.chosen == "fp32"
    assert decision.verdicts["int8"].rule == "batch_1"
    assert decision.reason == ("INT8 is slower than FP32 at batch 1: p50 40.0 ms vs 39.1 ms (0.978x); shipping FP32")


def test_accuracy_is_checked_before_speed(tmp_path):
    lossy = INT8_ON_VNNI | {"accuracy": 0.8}
    decision = decide({"int8": lossy}, hardware(tmp_path, "avx2-only"))
    assert decision.chosen == "fp32" and decision.verdicts["int8"].rule == "accuracy"
    assert (
        decision.reason
        == "INT8 loses 11.11% accuracy (0.8000 vs FP32 0.9000), above the 1.00% tolerance; shipping FP32"
    )


def test_the_fastest_passing_candidate_ships(tmp_path):
    decision = decide({"bf16": BF16_ON_AMX, "int8": INT8_ON_VNNI}, hardware(tmp_path, "amx"))
    assert decision.chosen == "int8"
    assert decision.reason == (
        "INT8 loses 0.37% accuracy against FP32 (tolerance 1.00%) and runs 2.080x as fast as FP32 at batch 32 and 1.678x at "
        "batch 1; BF16 also qualified at 1.611x"
    )
    lossy_int8 = decide({"bf16": BF16_ON_AMX, "int8": INT8_ON_VNNI | {"accuracy": 0.85}}, hardware(tmp_path, "amx"))
    assert lossy_int8.chosen == "bf16"
    assert lossy_int8.reason.startswith("BF16 loses 0.00% accuracy against FP32 (tolerance 1.00%) and runs 1.611x")
    assert "; INT8 loses 5.56% accuracy" in lossy_int8.reason


def test_a_candidate_more_accurate_than_fp32_says_it_gains(tmp_path):
    better = INT8_ON_VNNI | {"accuracy": 0.9104}
    decision = decide({"int8": better}, hardware(tmp_path, "avx2-only"))
    assert decision.chosen == "int8" and decision.reason.startswith("INT8 gains 1.16% accuracy against FP32")


def test_the_default_speed_rule_wants_ten_percent(tmp_path):
    from tasks.config import QuantizeArguments

    assert QuantizeArguments(model="m", data="d", output="o").min_speedup == 1.1
    barely = INT8_ON_VNNI | {"throughput_b32": 55.87 * 1.05}
    decision = decide({"int8": barely}, hardware(tmp_path, "avx512-vnni"))
    assert decision.chosen == "fp32"
    assert decision.reason == (
        "INT8 runs 1.050x as fast as FP32 at batch 32 (58.7 vs 55.9 pairs/s), below --min-speedup 1.1; shipping FP32"
    )


def test_min_speedup_0_waives_both_speed_rules(tmp_path):
    decision = decide({"int8": INT8_ON_AVX2}, hardware(tmp_path, "avx2-only"), min_speedup=0)
    assert decision.chosen == "int8" and not decision.verdicts["int8"].rejection


def test_unmeasured_candidates_keep_their_reason(tmp_path):
    decision = decide(
        {},
        hardware(tmp_path, "avx2-only"),
        failures={"int8": "INT8 quantisation failed: ValueError: boom"},
        skipped={"bf16": "BF16 is not a candidate: this CPU has no bf16 instructions (AVX512_BF16 or AMX)"},
    )
    assert decision.chosen == "fp32"
    assert decision.reason == (
        "INT8 quantisation failed: ValueError: boom; BF16 is not a candidate: this CPU has no bf16 instructions "
        "(AVX512_BF16 or AMX); shipping FP32"
    )
    assert decision.verdicts["int8"].as_dict()["rule"] == "unmeasured"
    assert decide({}, hardware(tmp_path, "amx")).reason == "no candidate but FP32 was asked for"
