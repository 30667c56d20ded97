"""Intel CPU tuning for TensorFlow: oneDNN, thread pools sized to the cores this process may use, bf16.

``configure_environment`` must run before TensorFlow is imported (oneDNN is chosen at import time);
``configure_tensorflow`` runs right after the import, before any op executes.

``python -m tasks cpu-threads`` prints the same decisions as shell ``export`` lines: the task image's
entrypoint evaluates them, so every library of a step (OpenMP, OpenBLAS, tokenizers, TensorFlow) starts with
thread pools sized to the CPUs the container may use rather than to the host's.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

from tasks.config import CpuThreadsArguments

log = logging.getLogger(__name__)

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# INT8 dot-product instructions: without one of them oneDNN multiplies INT8 with plain AVX2 and gains nothing on FP32.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# The ISA extensions that decide how fast a transformer runs on a CPU: AVX2 and AVX-512 for FP32, VNNI (AVX-512
# or AVX) for INT8 dot products, AVX512-BF16 and AMX for bf16 and INT8 matrix tiles.
REPORTED_FLAGS = (
    "avx2",
    "avx512f",
    "avx_vnni",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)

# oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``, read when TensorFlow first runs a oneDNN kernel) and the flags above
# that each level lets oneDNN use. A capped process computes like a CPU without the others, so the decisions
# follow the cap; an unset, unknown or uncapping value (ALL, DEFAULT, the AMX levels) leaves every flag.
_AVX512_BF16_LEVEL = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16")
ONEDNN_ISA_FLAGS = {
    "SSE41": (),
    "AVX": (),
    "AVX2": ("avx2",),
    "AVX2_VNNI": ("avx2", "avx_vnni"),
    "AVX2_VNNI_2": ("avx2", "avx_vnni"),
    "AVX512_CORE": ("avx2", "avx512f"),
    "AVX512_CORE_VNNI": ("avx2", "avx512f", "avx512_vnni"),
    "AVX512_CORE_BF16": _AVX512_BF16_LEVEL,
    "AVX512_CORE_FP16": _AVX512_BF16_LEVEL,
    "AVX10_1_512": _AVX512_BF16_LEVEL,
}

# The CPUs the platform gives a step that runs beside others (a local tuning trial: "0,1"): the step pins itself to
# them (``configure_environment``) before its thread pools are sized, rather than the platform setting the
# affinity in a preexec_fn, which is unsafe in a threaded process such as an Airflow worker.
CPUS_ENV = "NLP_CPUS"
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CPUINFO = Path("/proc/cpuinfo")


def _first_cpu(cpuinfo: Path) -> dict[str, str]:
    """The ``key: value`` fields of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def onednn_cap() -> str | None:
    """The ``ONEDNN_MAX_CPU_ISA`` level that withholds some of ``REPORTED_FLAGS`` from oneDNN, if one is set."""
    level = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return level if level in ONEDNN_ISA_FLAGS else None


def _capped(flags: frozenset[str]) -> frozenset[str]:
    level = onednn_cap()
    if level is None:
        return flags
    return flags - (set(REPORTED_FLAGS) - set(ONEDNN_ISA_FLAGS[level]))


def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is no such file), less those a
    ``ONEDNN_MAX_CPU_ISA`` cap keeps oneDNN from using."""
    return _capped(frozenset(_first_cpu(cpuinfo).get("flags", "").split()))


def describe(cpuinfo: Path = _CPUINFO) -> str:
    """One line naming the CPU and, for each ISA flag the decisions read, whether it has it.

    Printed at the head of every test session and benchmark, so a figure or a failure says which hardware
    it came from.
    """
    model = cpu_model(cpuinfo)
    flags = cpu_flags(cpuinfo)
    present = [flag for flag in REPORTED_FLAGS if flag in flags]
    absent = [flag for flag in REPORTED_FLAGS if flag not in flags]
    cap = onednn_cap()
    return (
        f"CPU: {model}, {available_cores()} core(s) usable; ISA: {' '.join(present) or 'none of note'}"
        f"{'; lacks: ' + ' '.join(absent) if absent else ''}"
        f"{f' (ONEDNN_MAX_CPU_ISA={cap})' if cap else ''}; training precision auto -> {resolve_precision('auto', flags)}"
    )


def hardware(target: str = "", cpuinfo: Path = _CPUINFO) -> dict:
    """What a decision measured on: the CPU model, each ISA feature of ``REPORTED_FLAGS`` (as oneDNN may use
    them), the usable cores and the serving target it stands for. Recorded beside the figures it produced."""
    flags = cpu_flags(cpuinfo)
    return {
        "cpu_model": cpu_model(cpuinfo),
        "isa": {flag: flag in flags for flag in REPORTED_FLAGS},
        "bf16_instructions": _has_any(flags, BF16_FLAGS),
        "int8_dot_product_instructions": _has_any(flags, INT8_FLAGS),
        "cores": available_cores(),
        "onednn_max_cpu_isa": onednn_cap(),
        "target": target or None,
    }


def describe_hardware(record: dict) -> str:
    """A ``hardware`` record in one line: the CPU, its cores and the ISA features it has."""
    present = [flag for flag, has in record["isa"].items() if has]
    return f"{record['cpu_model']}, {record['cores']} core(s), ISA {' '.join(present) or 'none of note'}"


def cpu_model(cpuinfo: Path = _CPUINFO) -> str:
    return _first_cpu(cpuinfo).get("model name") or platform.processor() or platform.machine()


def _has_any(flags: frozenset[str], wanted: tuple[str, ...]) -> bool:
    return any(flag in flags for flag in wanted)


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 ``cpu.max`` or v1 CFS files), or None."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if quota_file.is_file() and period_file.is_file():
        quota, period = int(quota_file.read_text()), int(period_file.read_text())
        if quota > 0 and period > 0:
            return quota / period
    return None


def available_cores(cgroup_root: Path = _CGROUP_ROOT) -> int:
    """Cores this process may use: its CPU affinity, capped by the container's cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return cores


def _inter_op_threads(cores: int) -> int:
    """Independent ops run side by side: one pool on small machines, two above four cores."""
    return 1 if cores <= 4 else 2


def thread_environment(cores: int) -> dict[str, str]:
    """The environment that sizes every thread pool of a step to ``cores`` and keeps oneDNN on."""
    return {
        "OMP_NUM_THREADS": str(cores),
        "OPENBLAS_NUM_THREADS": str(cores),
        "RAYON_NUM_THREADS": str(cores),
        "TF_NUM_INTRAOP_THREADS": str(cores),
        "TF_NUM_INTEROP_THREADS": str(_inter_op_threads(cores)),
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }


@dataclass(frozen=True)
class CpuPlan:
    """What the tuning decided, logged once and recorded in the model card."""

    cores: int
    intra_op_threads: int
    inter_op_threads: int
    onednn: bool
    precision: str
    flags: tuple[str, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_precision(requested: str, flags: frozenset[str]) -> str:
    """``auto`` means bf16 where the CPU computes it natively, fp32 elsewhere."""
    has_bf16 = _has_any(flags, BF16_FLAGS)
    if requested == "auto":
        return "bf16" if has_bf16 else "fp32"
    if requested == "bf16" and not has_bf16:
        log.warning("bf16 requested but this CPU has none of %s: TensorFlow will emulate it slowly", BF16_FLAGS)
    return requested


def pin_to_given_cpus() -> None:
    """Run this process on the CPUs ``CPUS_ENV`` names, when it is set."""
    if not (named := os.environ.get(CPUS_ENV)):
        return
    try:
        cpus = {int(each) for each in named.split(",")}
    except ValueError:
        raise ValueError(f"{CPUS_ENV}={named!r} is not a comma-separated list of CPU numbers") from None
    os.sched_setaffinity(0, cpus)


def configure_environment(precision: str = "fp32") -> CpuPlan:
    """Decide threads and precision and set the environment TensorFlow reads at import time.

    oneDNN is switched on unless ``TF_ENABLE_ONEDNN_OPTS=0`` was set on purpose (the benchmark's
    stock baseline does that). A step given its CPUs (``CPUS_ENV``) pins itself to them first.
    """
    pin_to_given_cpus()
    flags = cpu_flags()
    cores = available_cores()
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    # OpenMP-based kernels (oneDNN builds with OpenMP) follow the same core count.
    os.environ.setdefault("OMP_NUM_THREADS", str(cores))
    return CpuPlan(
        cores=cores,
        intra_op_threads=cores,
        inter_op_threads=_inter_op_threads(cores),
        onednn=os.environ["TF_ENABLE_ONEDNN_OPTS"] != "0",
        precision=resolve_precision(precision, flags),
        flags=tuple(flag for flag in REPORTED_FLAGS if flag in flags),
    )


def configure_tensorflow(plan: CpuPlan) -> None:
    """Apply the plan to TensorFlow's thread pools and Keras' precision policy, and log it."""
    import tensorflow as tf
    import tf_keras

    tf.config.threading.set_intra_op_parallelism_threads(plan.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(plan.inter_op_threads)
    policy = "mixed_bfloat16" if plan.precision == "bf16" else "float32"
    tf_keras.mixed_precision.set_global_policy(policy)
    log.info(
        "CPU tuning: oneDNN %s, %d core(s) -> intra-op %d / inter-op %d threads, precision %s (Keras policy %s), "
        "CPU flags: %s",
        "on" if plan.onednn else "off",
        plan.cores,
        plan.intra_op_threads,
        plan.inter_op_threads,
        plan.precision,
        policy,
        ", ".join(plan.flags) or "none of note",
    )


def print_exports(args: CpuThreadsArguments) -> None:
    """Print ``export NAME=VALUE`` for each thread setting the environment does not set already (and nothing
    else: the entrypoint evaluates the output)."""
    for name, value in thread_environment(available_cores()).items():
        if name not in os.environ:
            print(f"export {name}={shlex.quote(value)}")
