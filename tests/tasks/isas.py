"""The CPUs the suite meets, as /proc/cpuinfo describes them: a hardware-dependent decision is tested on each,
whatever CPU runs the tests."""

AVX2_ONLY = "fpu sse4_2 avx avx2 fma"  # e.g. AMD EPYC Zen 2/3
AVX512_VNNI = f"{AVX2_ONLY} avx512f avx512bw avx512_vnni"  # Xeon Cascade Lake
AVX512_BF16 = f"{AVX512_VNNI} avx512_bf16"  # Xeon Cooper Lake, AMD EPYC Zen 4
AMX = f"{AVX512_BF16} amx_bf16 amx_int8 amx_tile"  # Xeon Sapphire Rapids and later
ISAS = {"avx2-only": AVX2_ONLY, "avx512-vnni": AVX512_VNNI, "avx512-bf16": AVX512_BF16, "amx": AMX}
AUTO_PRECISION = {"avx2-only": "fp32", "avx512-vnni": "fp32", "avx512-bf16": "bf16", "amx": "bf16"}


def cpuinfo(tmp_path, flags: str, model: str = "Test CPU"):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    return path
