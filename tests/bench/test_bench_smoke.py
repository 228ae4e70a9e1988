"""The benchmark harness runs end to end at tiny sizes, so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_tiny_benchmark_writes_every_result(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench.run", "--tiny", "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, timeout=60, capture_output=True)
    results = json.loads(out.read_text())
    for side in ("parley", "relay"):
        assert set(results[side]) == {"ttft_s", "one_stream", "concurrent", "cancel_s"}
        assert {"events_per_s", "cpu_us_per_event"} <= set(results[side]["one_stream"])
    assert set(results["statements_per_reply"]) == {"tokens_500", "tokens_5"}
    assert {"open_conversation", "list_conversations"} <= set(results["big_sqlite"])
    assert set(results["targets"]) == {
        "ttft_added_le_2x_relay",
        "cpu_per_event_le_2x_relay",
        "cancel_closes_upstream_le_1s",
        "constant_statements_per_reply",
        "open_10k_conversation_lt_100ms",
    }
    assert {"nproc", "cpu", "date_utc"} <= set(results["machine"])
