"""``make bench``: parley against a bare relay, both fed by the same fake upstream.

``python -m bench.run [--tiny] [--out FILE]`` prints a table and writes JSON results
(default ``bench/results/<UTC time>.json``). See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import database, procs, streams

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Sizes:
    ttft_requests: int = 50
    chunks: int = 2000
    concurrency: int = 100
    concurrent_chunks: int = 200
    cancels: int = 10
    big: int = 10_000


TINY = Sizes(ttft_requests=3, chunks=50, concurrency=3, concurrent_chunks=10, cancels=2, big=200)


async def _streaming(server: procs.Server, upstream: procs.Server, sizes: Sizes) -> dict[str, Any]:
    return {
        "ttft_s": await streams.first_token(server, sizes.ttft_requests),
        "one_stream": await streams.throughput(server, sizes.chunks),
        "concurrent": await streams.throughput(server, sizes.concurrent_chunks, sizes.concurrency),
        "cancel_s": await streams.cancel_latency(server, upstream, sizes.cancels),
    }


async def collect(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with procs.upstream() as upstream:
        results["upstream_ttft_s"] = await streams.first_token(upstream, sizes.ttft_requests)
        async with procs.relay(upstream.url, workdir) as relay:
            results["relay"] = await _streaming(relay, upstream, sizes)
        async with procs.parley(upstream.url, workdir) as parley:
            results["parley"] = await _streaming(parley, upstream, sizes)
    async with database.in_process(workdir) as (url, app, scripted):
        results["statements_per_reply"] = await database.statements_per_reply(url, app, scripted)
        results["big_sqlite"] = await database.big_reads(url, app, sizes.big)
    results["postgres"] = "not measured (only SQLite in this version)"
    if not _reachable("127.0.0.1", 5432):
        results["postgres"] = "skipped: not reachable at 127.0.0.1:5432"
    return results


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The DESIGN targets, each with the measured value and whether it is met."""
    base = r["upstream_ttft_s"]["p50"]
    added = {k: r[k]["ttft_s"]["p50"] - base for k in ("parley", "relay")}
    cpu = {k: r[k]["one_stream"]["cpu_us_per_event"] for k in ("parley", "relay")}
    stmts = r["statements_per_reply"]
    opened = r["big_sqlite"]["open_conversation"]["p50_ms"]
    ratio_ttft = added["parley"] / max(added["relay"], 1e-9)
    ratio_cpu = cpu["parley"] / max(cpu["relay"], 1e-9)
    return {
        "ttft_added_le_2x_relay": {"value": ratio_ttft, "met": ratio_ttft <= 2},
        "cpu_per_event_le_2x_relay": {"value": ratio_cpu, "met": ratio_cpu <= 2},
        "cancel_closes_upstream_le_1s": {
            "value": r["parley"]["cancel_s"]["p99"],
            "met": r["parley"]["cancel_s"]["p99"] <= 1,
        },
        "constant_statements_per_reply": {
            "value": stmts,
            "met": abs(stmts["tokens_500"] - stmts["tokens_5"]) <= 4,
        },
        "open_10k_conversation_lt_100ms": {"value": opened, "met": opened < 100},
    }


def table(r: dict[str, Any]) -> str:
    p, q, base = r["parley"], r["relay"], r["upstream_ttft_s"]["p50"]
    rows = [
        ("TTFT p50 (ms)", p["ttft_s"]["p50"] * 1e3, q["ttft_s"]["p50"] * 1e3),
        ("TTFT p99 (ms)", p["ttft_s"]["p99"] * 1e3, q["ttft_s"]["p99"] * 1e3),
        (
            "TTFT added p50 (ms)",
            (p["ttft_s"]["p50"] - base) * 1e3,
            (q["ttft_s"]["p50"] - base) * 1e3,
        ),
        (
            "TTFT added p99 (ms)",
            (p["ttft_s"]["p99"] - base) * 1e3,
            (q["ttft_s"]["p99"] - base) * 1e3,
        ),
        ("1 stream events/s", p["one_stream"]["events_per_s"], q["one_stream"]["events_per_s"]),
        (
            "1 stream CPU us/event",
            p["one_stream"]["cpu_us_per_event"],
            q["one_stream"]["cpu_us_per_event"],
        ),
        ("N streams events/s", p["concurrent"]["events_per_s"], q["concurrent"]["events_per_s"]),
        (
            "N streams CPU us/event",
            p["concurrent"]["cpu_us_per_event"],
            q["concurrent"]["cpu_us_per_event"],
        ),
        (
            "cancel->upstream closed p50 (ms)",
            p["cancel_s"]["p50"] * 1e3,
            q["cancel_s"]["p50"] * 1e3,
        ),
        (
            "cancel->upstream closed p99 (ms)",
            p["cancel_s"]["p99"] * 1e3,
            q["cancel_s"]["p99"] * 1e3,
        ),
    ]
    lines = [f"{'scenario':36} {'parley':>10} {'relay':>10} {'parley/relay':>13}"]
    for name, a, b in rows:
        lines.append(f"{name:36} {a:10.2f} {b:10.2f} {a / b if b else float('nan'):13.2f}")
    lines.append(f"upstream direct TTFT p50 (ms): {base * 1e3:.2f}")
    lines.append(
        f"N streams: errors parley={p['concurrent']['errors']} relay={q['concurrent']['errors']}"
    )
    lines.append(f"statements per reply: {r['statements_per_reply']}")
    big = r["big_sqlite"]
    lines.append(
        f"open {big['size']}-message conversation p50 (ms): {big['open_conversation']['p50_ms']:.1f}"
    )
    lines.append(
        f"list of {big['size']} conversations p50 (ms): {big['list_conversations']['p50_ms']:.1f}"
    )
    lines.append(f"postgres: {r['postgres']}")
    for name, t in r["targets"].items():
        lines.append(f"target {name:36} {'MET' if t['met'] else 'MISSED'}  ({t['value']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a quick smoke run with tiny sizes")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else Sizes()
    with tempfile.TemporaryDirectory(prefix="parley-bench-") as tmp:
        results = asyncio.run(collect(sizes, Path(tmp)))
    results["targets"] = targets(results)
    results["machine"] = _machine()
    results["sizes"] = sizes.__dict__
    out = args.out or Path(__file__).parent / "results" / time.strftime(
        "%Y%m%dT%H%M%SZ.json", time.gmtime()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"results: {out}")
    return results


def _machine() -> dict[str, Any]:
    import os

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [
        line.split(":", 1)[1].strip()
        for line in cpuinfo.splitlines()
        if line.startswith("model name")
    ]
    return {
        "nproc": os.cpu_count(),
        "cpu": names[0] if names else platform.processor(),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    main()
