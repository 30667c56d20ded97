import os

import pytest

from tasks.config import CpuThreadsArguments
from tasks.runtime import cpu
from tests.tasks.isas import AMX, AUTO_PRECISION, ISAS, cpuinfo


@pytest.fixture(autouse=True)
def uncapped_onednn(monkeypatch):
    """These tests describe CPUs by their /proc/cpuinfo alone, whatever cap the session runs under."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n"
    )
    assert {"avx512_bf16", "amx_tile"} <= cpu.cpu_flags(tmp_path / "cpuinfo")
    assert cpu.cpu_flags(tmp_path / "absent") == frozenset()


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
    ids=["v2-quota", "v2-unlimited", "v1-quota", "v1-unlimited", "no-cgroup"],
)
def test_cgroup_cpu_limit(tmp_path, files, limit):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu.cgroup_cpu_limit(tmp_path) == limit


def test_available_cores_are_capped_by_the_container_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert cpu.available_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.available_cores(tmp_path) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("requested", "flags", "expected"),
    [
        ("auto", {"avx512_bf16"}, "bf16"),
        ("auto", {"amx_bf16"}, "bf16"),
        ("auto", {"avx512f"}, "fp32"),
        ("fp32", {"avx512_bf16"}, "fp32"),
        ("bf16", {"avx2"}, "bf16"),
    ],
)
def test_precision_resolution(requested, flags, expected):
    assert cpu.resolve_precision(requested, frozenset(flags)) == expected


@pytest.mark.parametrize("isa", ISAS)
def test_the_plan_follows_the_detected_isa(monkeypatch, isa):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(ISAS[isa].split()))
    plan = cpu.configure_environment("auto")
    assert plan.precision == AUTO_PRECISION[isa]
    assert set(plan.flags) == set(ISAS[isa].split()) & set(cpu.REPORTED_FLAGS)
    assert cpu.configure_environment("fp32").precision == "fp32"


@pytest.mark.parametrize("isa", ISAS)
def test_the_description_names_the_cpu_and_each_isa_flag(tmp_path, isa):
    described = cpu.describe(cpuinfo(tmp_path, ISAS[isa], "Some Xeon"))
    assert described.startswith("CPU: Some Xeon, ")
    present, _, absent = described.split("ISA: ")[1].partition("; lacks: ")
    flags = set(ISAS[isa].split())
    assert present.split(";")[0].split() == [flag for flag in cpu.REPORTED_FLAGS if flag in flags]
    assert set(absent.split(";")[0].split()) == set(cpu.REPORTED_FLAGS) - flags
    assert described.endswith(f"training precision auto -> {AUTO_PRECISION[isa]}")


@pytest.mark.parametrize(
    ("level", "flags", "precision"),
    [
        ("AVX2", ["avx2"], "fp32"),
        ("avx512_core_vnni", ["avx2", "avx512f", "avx512_vnni"], "fp32"),
        ("AVX512_CORE_BF16", ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"], "bf16"),
        (
            "AVX10_1_512_AMX",
            ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"],
            "bf16",
        ),
        (
            "no-such-level",
            ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"],
            "bf16",
        ),
    ],
)
def test_a_onednn_isa_cap_is_the_cpu_the_decisions_see(tmp_path, monkeypatch, level, flags, precision):
    """``ONEDNN_MAX_CPU_ISA`` keeps TensorFlow's oneDNN kernels below a level: bf16 would be emulated there."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", level)
    path = cpuinfo(tmp_path, AMX)
    detected = cpu.cpu_flags(path)
    assert [flag for flag in cpu.REPORTED_FLAGS if flag in detected] == flags
    assert {"fpu", "sse4_2", "avx"} <= detected, "flags outside the decisions stay"
    assert cpu.resolve_precision("auto", detected) == precision
    described = cpu.describe(path)
    assert described.endswith(f"auto -> {precision}")
    assert (f"(ONEDNN_MAX_CPU_ISA={level.upper()})" in described) == (level.upper() in cpu.ONEDNN_ISA_FLAGS)


def test_the_description_of_a_host_without_cpuinfo(tmp_path):
    described = cpu.describe(tmp_path / "absent")
    assert "ISA: none of note; lacks: avx2 " in described and described.endswith("auto -> fp32")


def test_bf16_without_hardware_support_warns(caplog):
    cpu.resolve_precision("bf16", frozenset({"avx2"}))
    assert "TensorFlow will emulate it slowly" in caplog.text


def test_environment_turns_onednn_on_unless_switched_off(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = cpu.configure_environment("fp32")
    assert plan.onednn and os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == str(plan.cores) and plan.intra_op_threads == plan.cores
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert not cpu.configure_environment("fp32").onednn


def test_thread_environment_sizes_every_pool_to_the_container_cores():
    assert cpu.thread_environment(2) == {
        "OMP_NUM_THREADS": "2",
        "OPENBLAS_NUM_THREADS": "2",
        "RAYON_NUM_THREADS": "2",
        "TF_NUM_INTRAOP_THREADS": "2",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }
    assert cpu.thread_environment(16)["TF_NUM_INTEROP_THREADS"] == "2"


def test_shell_exports_leave_what_the_environment_sets_alone(monkeypatch, capsys):
    monkeypatch.setattr(cpu, "available_cores", lambda: 3)
    for name in cpu.thread_environment(3):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a pod's limits.cpu, set by Kubernetes
    cpu.print_exports(CpuThreadsArguments())
    exports = capsys.readouterr().out.splitlines()
    assert "export TF_NUM_INTRAOP_THREADS=3" in exports and "export TF_ENABLE_ONEDNN_OPTS=1" in exports
    assert not [line for line in exports if "OMP_NUM_THREADS" in line]


def pinned_run(cpus: str | None) -> tuple:
    """(this process's CPUs, its available cores) in a fresh step process after configure_environment, given
    ``cpu.CPUS_ENV``."""
    import json
    import subprocess
    import sys

    code = (
        "import json, os; from tasks.runtime import cpu; cpu.configure_environment();"
        " print(json.dumps([sorted(os.sched_getaffinity(0)), cpu.available_cores()]))"
    )
    env = {key: value for key, value in os.environ.items() if key != cpu.CPUS_ENV}
    env |= {cpu.CPUS_ENV: cpus} if cpus is not None else {}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode:  # the step's error, as its last line of stderr
        raise ValueError(done.stderr.strip().splitlines()[-1])
    return tuple(json.loads(done.stdout))


def test_a_step_given_its_cpus_pins_itself_before_sizing_its_threads():
    """The platform names a step's CPUs (a tuning trial's share) in NLP_CPUS; the step pins itself to them and its
    thread pools size to them."""
    assert cpu.CPUS_ENV == "NLP_CPUS"
    every = sorted(os.sched_getaffinity(0))
    assert pinned_run(None)[0] == every
    assert pinned_run(str(every[-1])) == ([every[-1]], 1)
    if len(every) > 1:
        assert pinned_run(f"{every[0]},{every[1]}")[0] == every[:2]


def test_cpus_named_badly_are_refused_naming_the_variable():
    with pytest.raises(ValueError, match="NLP_CPUS='one,two' is not a comma-separated list of CPU numbers"):
        pinned_run("one,two")
