"""Inference server under load: the naive setup against the shipped one, printed with ratios in one run.

1. naive:   the FP32 model, every pair padded to 128 tokens, one request per model call
2. shipped: the INT8 model, dynamic batching (up to 32 pairs, 5 ms wait), per-batch length buckets

Each configuration starts ``python -m tasks serve`` on 127.0.0.1 and is driven for ``--seconds`` by
``--concurrency`` clients sending one MRPC-like pair per request (from the generated validation split),
then again at half the shipped server's saturating rate (open loop) for its latency. Prints requests/s,
p50/p95/p99 latency, errors and the server's peak RSS. Needs trained and quantised models: by default
those of the latest ``make demo`` run (``demo-output/artefacts/nlp_local/<run>/{model,quantized,staged}``).
Usage: ``python bench/serve_load.py [--fp32 DIR] [--int8 DIR] [--data STAGED] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
from steps import REPO, print_hardware


def pairs_from(staged: Path) -> list[dict]:
    from tasks.data.splits import load_split_dataset

    split = load_split_dataset(staged, "validation")
    return [{"sentence1": a, "sentence2": b} for a, b in zip(split["sentence1"], split["sentence2"], strict=True)]


def start(model: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    from tasks.endpoint.commands import spawn_server, wait_ready

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = Path(f"/tmp/serve_load-{port}.log")
    with log.open("wb") as output:
        process = spawn_server(["--model", str(model), "--host", "127.0.0.1", "--port", str(port), *flags], output)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, 180, log)
    return process, url


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def closed_loop(url: str, pairs: list[dict], concurrency: int, seconds: float) -> dict:
    """``concurrency`` clients, each sending its next request as soon as the last one answered."""
    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds

    async def client(offset: int, http: httpx.AsyncClient):
        nonlocal errors
        index = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await http.post("/invocations", json={"instances": [pairs[index % len(pairs)]]})
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
            index += concurrency

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(offset, http) for offset in range(concurrency)))
        elapsed = time.perf_counter() - started
    return summary(latencies, errors, elapsed)


async def open_loop(url: str, pairs: list[dict], rate: float, seconds: float) -> dict:
    """Requests started at a fixed ``rate`` per second, whatever the server's pace."""
    latencies, errors = [], 0

    async def one(index: int, http: httpx.AsyncClient):
        nonlocal errors
        started = time.perf_counter()
        response = await http.post("/invocations", json={"instances": [pairs[index % len(pairs)]]})
        latencies.append(time.perf_counter() - started)
        errors += response.status_code != 200

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=256)) as http:
        started, tasks = time.perf_counter(), []
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(index, http)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return summary(latencies, errors, elapsed)


def summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    milliseconds = np.asarray(latencies) * 1e3
    return {
        "requests_per_second": len(latencies) / elapsed,
        "p50": float(np.percentile(milliseconds, 50)),
        "p95": float(np.percentile(milliseconds, 95)),
        "p99": float(np.percentile(milliseconds, 99)),
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    runs = sorted((REPO / "demo-output" / "artefacts" / "nlp_local").glob("2*"))
    latest = runs[-1] if runs else REPO / "demo-output"
    parser.add_argument("--fp32", type=Path, default=latest / "model")
    parser.add_argument("--int8", type=Path, default=latest / "quantized")
    parser.add_argument("--data", type=Path, default=latest / "staged")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    options = parser.parse_args()
    print_hardware()
    for folder in (options.fp32 / "saved_model", options.int8 / "saved_model", options.data / "validation"):
        if not folder.is_dir():
            parser.error(f"{folder} is missing: run `make demo` first, or pass --fp32, --int8 and --data")
    pairs = pairs_from(options.data)

    configurations = {
        "naive: FP32, pad 128, no batching": (options.fp32, ["--padding", "max_length", "--max-batch-size", "1"]),
        "shipped: INT8, dynamic batching, buckets": (options.int8, []),
    }
    results = {}
    for name, (model, flags) in configurations.items():
        process, url = start(model, *flags)
        try:
            saturated = asyncio.run(closed_loop(url, pairs, options.concurrency, options.seconds))
            half = asyncio.run(open_loop(url, pairs, saturated["requests_per_second"] / 2, options.seconds))
            results[name] = (saturated, half, peak_rss_mb(process.pid))
        finally:
            process.terminate()
            process.wait(timeout=60)

    print(f"\n{options.concurrency} concurrent clients for {options.seconds:.0f} s, one pair per request")
    print(
        f"{'configuration':<42} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'errors':>6} {'RSS MB':>7}"
        f"   at half load: {'req/s':>6} {'p50':>6} {'p99':>6} {'errors':>6}"
    )
    for name, (saturated, half, rss) in results.items():
        print(
            f"{name:<42} {saturated['requests_per_second']:>7.1f} {saturated['p50']:>7.1f} {saturated['p95']:>7.1f} "
            f"{saturated['p99']:>7.1f} {saturated['errors']:>6d} {rss:>7.0f}   "
            f"{'':>15}{half['requests_per_second']:>6.1f} {half['p50']:>6.1f} {half['p99']:>6.1f} "
            f"{half['errors']:>6d}"
        )
    naive, shipped = (results[name][0]["requests_per_second"] for name in configurations)
    print(f"\nthroughput ratio, shipped / naive: {shipped / naive:.2f}x (latencies in ms)")


if __name__ == "__main__":
    main()
