"""``python -m tasks summary``: what a run produced, with every precision measured and the CPU it was measured on."""

import json

from tasks.config import SummaryArguments
from tasks.evaluation import summary
from tasks.runtime import digest

FIGURES = {"accuracy": 0.86, "f1": 0.89, "latency_ms_b1_p50": 39.1, "throughput_b32": 55.87}
HARDWARE = {"cpu_model": "AMD EPYC", "cores": 2, "isa": {"avx2": True, "avx512_vnni": False, "amx_int8": False}}


def run_folder(tmp_path, quantization: dict | None, try_folder: str = "try1") -> str:
    """A run folder whose quantize step wrote ``quantization`` into its try folder, sealed as a step seals it."""
    folder = tmp_path / "run"
    output = folder / "quantized" / try_folder
    output.mkdir(parents=True)
    (output.parent / f"{try_folder}.command.json").write_text("{}")  # recorded beside it before the step ran
    if quantization is not None:
        (output / "quantization.json").write_text(json.dumps(quantization))
        digest.seal(output)
    return str(folder)


def test_an_avx2_run_shows_each_measured_precision_the_reason_and_the_cpu(tmp_path, capsys):
    reason = "no INT8 dot-product instructions (VNNI/AMX) on this CPU: INT8 0.996x at batch 32; shipping FP32"
    quantization = {
        "fp32": FIGURES,
        "bf16": None,
        "int8": FIGURES | {"accuracy": 0.8533, "throughput_b32": 55.64},
        "chosen_precision": "fp32",
        "reason": reason,
        "hardware": HARDWARE,
    }
    summary.run(SummaryArguments(run_folder=run_folder(tmp_path, quantization)))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:4]] == ["FP32", "INT8"]  # no BF16 row: not measured here
    assert f"shipped precision: fp32 ({reason})" in lines
    assert "measured on: AMD EPYC, 2 core(s), ISA avx2" in lines
    assert lines[-1] == "endpoint: not running"


def test_a_cached_run_says_nothing_was_trained(tmp_path, capsys):
    summary.run(SummaryArguments(run_folder=run_folder(tmp_path, None)))
    assert "nothing was trained in this run" in capsys.readouterr().out


def test_the_last_complete_try_is_the_runs_output(tmp_path, capsys):
    first = {"fp32": FIGURES, "bf16": None, "int8": None, "chosen_precision": "fp32", "reason": "first try"}
    run_folder(tmp_path, first, "try1")
    folder = run_folder(tmp_path, first | {"reason": "second try"}, "try2")
    (tmp_path / "run" / "quantized" / "try3").mkdir()  # a try that never completed
    summary.run(SummaryArguments(run_folder=folder))
    assert "shipped precision: fp32 (second try)" in capsys.readouterr().out.splitlines()
