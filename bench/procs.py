"""The benchmark's processes: the fake upstream, the bare relay and parley, each on its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.support.processes import free_port, start_parley

from parley.auth import issue_token
from parley.store import migrate

SECRET = "bench-secret-" + "x" * 40
ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    """A server process the benchmark talks to and whose CPU time it reads."""

    name: str
    url: str
    pid: int
    headers: dict[str, str]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@asynccontextmanager
async def upstream() -> AsyncIterator[Server]:
    command = [sys.executable, "-m", "bench.upstream"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = await asyncio.to_thread(process.stdout.readline)
        yield Server("upstream", line.decode().strip(), process.pid, {})
    finally:
        _stop(process)


@asynccontextmanager
async def relay(upstream_url: str, workdir: Path) -> AsyncIterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "bench.relay", f"{upstream_url}/v1", str(port)]
    log = (workdir / "relay.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_listening(url, process)
        yield Server("relay", url, process.pid, {})
    finally:
        _stop(process)
        log.close()


async def _wait_listening(url: str, process: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"{url}: the process exited early")
            try:
                await http.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


@asynccontextmanager
async def parley(upstream_url: str, workdir: Path, database_url: str = "") -> AsyncIterator[Server]:
    """``parley serve`` on the OpenAI provider against the fake upstream; SQLite unless told."""
    url = database_url or f"sqlite+aiosqlite:///{workdir / 'parley.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    env = {
        "PARLEY_PROVIDER": "openai",
        "OPENAI_BASE_URL": f"{upstream_url}/v1",
        "OPENAI_API_KEY": "bench",
        "PARLEY_JWT_SECRET": SECRET,
        "PARLEY_DATABASE_URL": url,
        "PARLEY_DATA_DIR": str(workdir / "data"),
    }
    process = await start_parley(env, workdir)
    headers = {"Authorization": f"Bearer {issue_token(SECRET, 'bench')}"}
    try:
        yield Server("parley", process.url, process.process.pid, headers)
    finally:
        process.stop()
