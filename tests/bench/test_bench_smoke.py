"""The benchmark harness runs end to end at tiny sizes, so it cannot rot.

Nothing here is timed: the test checks that every scenario ran, counted what it should, and
reported each target, on SQLite and (when reachable) PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_UP, REDIS_UP

ROOT = Path(__file__).resolve().parents[2]


def test_the_tiny_benchmark_runs_every_scenario_and_reports_every_target(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench.run", "--tiny", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(out.read_text())
    tiny = r["sizes"]
    for side in ("parley", "relay"):
        assert r[side]["one_stream"]["events"] == tiny["chunks"]
        assert r[side]["concurrent"]["events"] == tiny["concurrency"] * tiny["concurrent_chunks"]
        assert r[side]["cancel_s"]["n"] == tiny["cancels"]
        # the upstream's own first token is measured beside each server's, request by request
        assert r[side]["ttft_s"]["n"] == r[side]["upstream_ttft_s"]["n"] == tiny["ttft_requests"]
        assert r[side]["ttft_added_paired_s"]["n"] == tiny["ttft_requests"]
        levels = r[side]["paced"]["levels"]
        assert [level["streams"] for level in levels] == tiny["paced_levels"]
        assert all(level["errors"] == 0 for level in levels), levels
        assert r[side]["idle_memory"]["errors"] == 0
        assert r[side]["idle_memory"]["streams"] == tiny["idle_streams"]
        assert r[side]["idle_memory"]["overlapped"], "both groups of idle streams were open at once"
    reference = r["relay_aiohttp"]  # the relay on parley's HTTP client, beside the baseline
    assert reference["one_stream"]["events"] == tiny["chunks"]
    assert reference["ttft_added_paired_s"]["n"] == tiny["ttft_requests"]
    assert "relay on aiohttp (reference)" in done.stdout
    history = r["parley"]["history_ttft"]  # replies continuing a conversation with history
    assert history["messages_before"] == tiny["history"] > 0
    # every measured request (and the warm-up) continued that conversation
    assert history["messages_after"] == tiny["history"] + 2 * (tiny["history_requests"] + 1)
    assert history["ttft_s"]["n"] == history["upstream_ttft_s"]["n"] == tiny["history_requests"]
    assert "history_ttft" not in r["relay"]
    assert r["statements_sqlite"]["tokens_500"]["statements"] > 0
    assert r["statements_sqlite"]["tokens_500"]["commits"] > 0
    assert r["big_sqlite"]["size"] == tiny["big"]
    long_turns = r["long_turns"]  # time per turn in long conversations, beside the relay
    assert long_turns["relay"]["added_paired_s"]["n"] == tiny["long_turns"]
    for db in ("sqlite", "postgres") if POSTGRES_UP else ("sqlite",):
        assert sorted(int(size) for size in long_turns[db]) == tiny["long_sizes"]
        for measured in long_turns[db].values():
            assert measured["turn_s"]["n"] == measured["upstream_s"]["n"] == tiny["long_turns"]
            assert measured["no_fold_while_measured"]
    assert "time per turn" in done.stdout
    expected = {
        "ttft_added_p50_le_2x_relay",
        "ttft_added_p99_le_2x_relay",
        "cpu_per_event_le_2x_relay",
        "paced_streams_held_ge_60pct_relay",
        "memory_per_stream_le_1_5x_relay",
        "cancel_closes_upstream_le_1s",
        "constant_statements_per_reply_sqlite",
        "open_10k_conversation_lt_100ms_sqlite",
        "turn_time_flat_le_1_2x_sqlite",
    }
    if POSTGRES_UP:
        expected |= {
            "constant_statements_per_reply_postgres",
            "open_10k_conversation_lt_100ms_postgres",
            "turn_time_flat_le_1_2x_postgres",
        }
        assert r["parley_pg"]["one_stream"]["events"] == tiny["chunks"]
    if POSTGRES_UP and REDIS_UP:
        for workers in (1, 2):
            assert r[f"parley_redis_w{workers}"]["concurrent"]["errors"] == 0
    else:
        assert r["skipped"], "a run without PostgreSQL or Redis says what it skipped"
    assert set(r["targets"]) == expected
    assert {"nproc", "cpu", "date_utc", "started_utc"} <= set(r["machine"])
    assert "target cpu_per_event_le_2x_relay" in done.stdout
