"""Inference server under load: the naive setup against the shipped one, printed with ratios in one run.

1. naive:   the FP32 model, every pair padded to 128 tokens, one request per model call
2. shipped: the INT8 model, dynamic batching (up to 32 pairs, 5 ms wait), per-batch length buckets

Each configuration starts ``python -m tasks serve`` on 127.0.0.1 and is driven for ``--seconds`` by
``--concurrency`` clients sending one MRPC-like pair per request (from the generated validation split),
then again at half the shipped server's saturating rate (open loop) for its latency. Prints requests/s,
p50/p95/p99 latency, errors and the server's peak RSS.

Then the adversity phase, against the shipped server while half the clients keep sending normal traffic:
long pairs (45 kB sentences, over the length limit, and sentences at it), a flood (150 concurrent requests of
32 pairs, every 3 s), slow clients (headers and bodies a byte at a time), malformed bodies (deeply nested, not
JSON, not JSON at all), and ``/ping`` every 50 ms from a process of its own. Prints ``/ping``'s worst latency,
the share of requests answered (200, 503 or 4xx: never a dropped connection or a client timeout), 5xx other
than 503, the normal traffic's p99, slow clients cut off, and the server's resident memory before and after.

Then the capture phase: the shipped server with data capture off and on (``--capture-sample-rate 1.0``, every
pair written to a local temporary folder), both started at once and driven in turns (off, on, off, on, ...: a
neighbour's load on the machine falls on both alike). Prints each one's requests/s and p99, the records the
capturing server wrote, dropped and failed to write, and the throughput ratio on/off (the target: at least 0.95).

Needs trained and quantised models: by default those of the latest ``make demo`` run
(``demo-output/artefacts/nlp_local/<run>/{model,quantized,staged}``).
Usage: ``python bench/serve_load.py [--fp32 DIR] [--int8 DIR] [--data STAGED] [--seconds 20] [--capture-only]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
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


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
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


class Tally:
    """Requests sent and how each was answered, by kind of traffic."""

    def __init__(self):
        self.statuses: dict[str, list[int]] = {}
        self.unanswered: dict[str, int] = {}
        self.latencies: dict[str, list[float]] = {}

    async def send(self, kind: str, http: httpx.AsyncClient, method: str, path: str, **request) -> None:
        started = time.perf_counter()
        try:
            response = await http.request(method, path, **request)
        except httpx.HTTPError:
            self.unanswered[kind] = self.unanswered.get(kind, 0) + 1
            return
        self.statuses.setdefault(kind, []).append(response.status_code)
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)

    def answered_share(self, kinds: tuple[str, ...]) -> float:
        answered = sum(len(self.statuses.get(kind, [])) for kind in kinds)
        return answered / max(1, answered + sum(self.unanswered.get(kind, 0) for kind in kinds))

    def faults(self) -> int:
        """5xx answers other than 503."""
        return sum(status >= 500 and status != 503 for statuses in self.statuses.values() for status in statuses)


async def slow_client(host: str, port: int, prefix: bytes, trickle: bytes, gap: float, until: float) -> bool:
    """Send ``prefix``, then ``trickle`` a byte every ``gap`` seconds; True when the server closed the connection
    first."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(prefix)
        for byte in trickle:
            if time.perf_counter() > until:
                return False
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(4096), gap) == b"":
                    return True
        return False
    except ConnectionError:
        return True
    finally:
        writer.close()


async def adversity(url: str, pairs: list[dict], seconds: float, concurrency: int) -> dict:
    """Normal traffic with every attack of the module docstring at once; what the server did about each."""
    tally = Tally()
    until = time.perf_counter() + seconds
    host, port = url.removeprefix("http://").split(":")
    pinger = subprocess.Popen([sys.executable, "-c", PINGER, port, str(seconds)], stdout=subprocess.PIPE, text=True)
    words = " ".join(pairs[index % len(pairs)]["sentence1"] for index in range(2000))
    over_limit = {"sentence1": words[:45_000], "sentence2": words[:45_000]}
    at_limit = {"sentence1": words[:10_000], "sentence2": words[5_000:15_000]}
    json_headers = {"content-type": "application/json"}

    async def loop(kind: str, http: httpx.AsyncClient, request, pause: float = 0.0):
        index = 0
        while time.perf_counter() < until:
            await tally.send(kind, http, "POST", "/invocations", **request(index))
            index += 1
            await asyncio.sleep(pause)

    async def flood(http: httpx.AsyncClient):
        batch = {"instances": pairs[:32]}
        while time.perf_counter() < until - 3:
            await asyncio.gather(*(tally.send("flood", http, "POST", "/invocations", json=batch) for _ in range(150)))
            await asyncio.sleep(3)

    malformed = [
        {"content": b"[" * 50_000 + b"]" * 50_000, "headers": json_headers},
        {"content": b'{"instances": [{"sentence1": "a", ', "headers": json_headers},
        {"content": b"sentence1,sentence2\na,b", "headers": {"content-type": "text/csv"}},
    ]
    request_line = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    slow_body = (request_line + b"Content-Length: 500\r\n\r\n", b"{" + b" " * 400)
    slow_headers = (request_line, b"X-Slow: " + b"a" * 400)
    limits = httpx.Limits(max_connections=400)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        normal = [
            loop(
                "normal",
                http,
                lambda index, offset=offset: {"json": {"instances": [pairs[(index * 7 + offset) % len(pairs)]]}},
            )
            for offset in range(concurrency)
        ]
        long_pairs = [
            loop("long", http, lambda index: {"json": {"instances": [over_limit if index % 2 else at_limit]}}, 0.1)
            for _ in range(4)
        ]
        bad = [loop("malformed", http, lambda index: malformed[index % len(malformed)], 0.1)]
        slow = [slow_client(host, int(port), *request, 0.5, until) for request in (slow_body, slow_headers) * 10]
        results = await asyncio.gather(*normal, *long_pairs, *bad, flood(http), *slow)
    cut = sum(result is True for result in results[-len(slow) :])
    pings = [json.loads(line) for line in pinger.communicate()[0].splitlines()]
    normal_ms = np.asarray(tally.latencies.get("normal", [0.0])) * 1e3
    return {
        "ping_worst_ms": max(latency for latency, _ in pings) * 1e3,
        "ping_failed": sum(status != 200 for _, status in pings),
        "pings": len(pings),
        "answered": tally.answered_share(("normal", "long", "flood", "malformed")),
        "faults": tally.faults(),
        "normal_p99": float(np.percentile(normal_ms, 99)),
        "normal_requests": len(normal_ms),
        "normal_shed": tally.statuses.get("normal", []).count(503),
        "flood": {status: tally.statuses.get("flood", []).count(status) for status in (200, 503)},
        "long": {status: tally.statuses.get("long", []).count(status) for status in (200, 400)},
        "slow_cut": f"{cut}/{len(slow)}",
    }


# /ping from a process of its own, as a kubelet or SageMaker would probe: every 50 ms on a new connection, each
# answer's latency and status printed as a JSON line. (From the load generator's own event loop, the figure would
# be the load generator's delay.)
PINGER = """
import http.client, json, sys, time
port, until = int(sys.argv[1]), time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < until:
    started, status = time.perf_counter(), 0
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/ping")
        status = connection.getresponse().status
        connection.close()
    except OSError:
        pass
    print(json.dumps([time.perf_counter() - started, status]), flush=True)
    time.sleep(0.05)
"""


def metric_values(url: str) -> dict[str, float]:
    """The server's /metrics samples without labels, by name."""
    samples = (line.rsplit(" ", 1) for line in httpx.get(f"{url}/metrics").text.splitlines() if line[:1] != "#")
    return {name: float(value) for name, value in samples if "{" not in name}


# The capture phase's turns: each server is driven this many times, for --seconds / CAPTURE_TURNS each.
CAPTURE_TURNS = 4


def capture_phase(model: Path, pairs: list[dict], concurrency: int, seconds: float) -> dict:
    """Throughput of ``model``'s server with capture off and with every request captured to a local folder."""
    with tempfile.TemporaryDirectory(prefix="serve_load-capture-") as folder:
        settings = {"off": [], "on": ["--capture-dir", folder, "--capture-sample-rate", "1.0"]}
        servers = {name: start(model, *flags) for name, flags in settings.items()}
        try:
            turns = {name: [] for name in servers}
            for _ in range(CAPTURE_TURNS):
                for name, (_, url) in servers.items():
                    turns[name].append(asyncio.run(closed_loop(url, pairs, concurrency, seconds / CAPTURE_TURNS)))
            counters = metric_values(servers["on"][1])
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=60)
        written = sum(len(path.read_bytes().splitlines()) for path in Path(folder).rglob("*.jsonl"))
    result = {name: _merged(runs) for name, runs in turns.items()}
    result["records"] = {
        "published_while_serving": counters.get("capture_records_total", 0),
        "dropped": counters.get("capture_dropped_records_total", 0),
        "errors": counters.get("capture_write_errors_total", 0),
        "in_files": written,
    }
    return result


def _merged(runs: list[dict]) -> dict:
    """One figure for several closed-loop runs: requests over their summed time, the worst p99, every error."""
    requests = sum(run["requests"] for run in runs)
    elapsed = sum(run["requests"] / run["requests_per_second"] for run in runs)
    return {
        "requests_per_second": requests / elapsed,
        "p99": max(run["p99"] for run in runs),
        "requests": requests,
        "errors": sum(run["errors"] for run in runs),
    }


def print_capture(capture: dict, concurrency: int, seconds: float) -> None:
    records = capture["records"]
    print(
        f"\ncapture, shipped server, {concurrency} concurrent clients, {CAPTURE_TURNS} turns of "
        f"{seconds / CAPTURE_TURNS:.0f} s each, one pair per request:"
    )
    for name, label in (("off", "capture off"), ("on", "capture on, rate 1.0, local")):
        run = capture[name]
        print(
            f"  {label:<30} {run['requests_per_second']:>7.1f} req/s  p99 {run['p99']:>7.1f} ms  "
            f"{run['requests']} requests, {run['errors']} errors"
        )
    print(
        f"  records                        {records['in_files']} in the files after the stop"
        f" ({records['published_while_serving']:.0f} published while serving: a file is published at its size,"
        f" age or hour's end), {records['dropped']:.0f} dropped, {records['errors']:.0f} write errors"
    )
    ratio = capture["on"]["requests_per_second"] / capture["off"]["requests_per_second"]
    print(f"  throughput ratio, on / off     {ratio:.3f} (target >= 0.95)")


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
    parser.add_argument(
        "--capture-only", action="store_true", help="Run only the capture phase (needs --int8 and --data only)."
    )
    options = parser.parse_args()
    print_hardware()
    needed = [options.int8 / "saved_model", options.data / "validation"]
    for folder in needed if options.capture_only else [options.fp32 / "saved_model", *needed]:
        if not folder.is_dir():
            parser.error(f"{folder} is missing: run `make demo` first, or pass --fp32, --int8 and --data")
    pairs = pairs_from(options.data)
    if options.capture_only:
        print_capture(
            capture_phase(options.int8, pairs, options.concurrency, options.seconds),
            options.concurrency,
            options.seconds,
        )
        return

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
            results[name] = (saturated, half, rss_mb(process.pid))
            if name.startswith("shipped"):
                before = rss_mb(process.pid, "VmRSS")
                attacked = asyncio.run(adversity(url, pairs, max(options.seconds, 15), options.concurrency // 2))
                attacked["rss"] = (before, rss_mb(process.pid, "VmRSS"))
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
    before, after = attacked["rss"]
    print(
        f"\nadversity, shipped server, {max(options.seconds, 15):.0f} s with {options.concurrency // 2} normal clients:\n"
        f"  /ping worst latency      {attacked['ping_worst_ms']:.1f} ms ({attacked['ping_failed']} of "
        f"{attacked['pings']} pings not 200)\n"
        f"  requests answered        {attacked['answered']:.1%} (200, 503 or 4xx)\n"
        f"  5xx other than 503       {attacked['faults']}\n"
        f"  normal traffic           p99 {attacked['normal_p99']:.1f} ms over {attacked['normal_requests']} requests, "
        f"{attacked['normal_shed']} shed (503)\n"
        f"  flood, 32 pairs each     {attacked['flood'][200]} served, {attacked['flood'][503]} shed (503)\n"
        f"  long pairs               {attacked['long'][200]} at the limit served, {attacked['long'][400]} over it "
        f"refused (400)\n"
        f"  slow clients cut off     {attacked['slow_cut']}\n"
        f"  resident memory          {before:.0f} MB before, {after:.0f} MB after ({after - before:+.0f} MB)"
    )
    capture = capture_phase(options.int8, pairs, options.concurrency, options.seconds)
    print_capture(capture, options.concurrency, options.seconds)


if __name__ == "__main__":
    main()
