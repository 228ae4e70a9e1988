"""The benchmark's processes: the fake upstream, the bare relay and parley, each on its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
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
    """A server the benchmark talks to, and whose processes' CPU time and memory it reads."""

    name: str
    url: str
    pid: int
    headers: dict[str, str]

    @property
    def kind(self) -> str:
        """``upstream``, ``relay`` or ``parley`` (names are ``parley-pg``, ``parley-w2``…)."""
        return self.name.split("-", 1)[0]

    @property
    def pids(self) -> list[int]:
        """The server's process and its children (``--workers N`` forks them)."""
        return [self.pid, *_children(self.pid)]


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


def cpu_seconds(pids: int | list[int]) -> float:
    """User plus system CPU time of processes so far, from ``/proc/PID/stat``."""
    total = 0
    for pid in [pids] if isinstance(pids, int) else pids:
        fields = _stat(pid)
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


async def settle(
    servers: list[Server], *, at_least: float = 6.0, idle: float = 0.02, limit: float = 30.0
) -> None:
    """Wait until the servers are at rest: ``at_least`` seconds (longer than any of them keeps
    an idle upstream connection, 4 to 5 s), then until their processes use under ``idle`` of a
    core over half a second (at most ``limit`` seconds in all). What an earlier scenario left
    running (connections closing, runs ending, a collection) is not timed as the next one."""
    started = time.monotonic()
    await asyncio.sleep(at_least)
    pids = [pid for server in servers for pid in server.pids]
    while time.monotonic() - started < limit:
        before = cpu_seconds(pids)
        await asyncio.sleep(0.5)
        if cpu_seconds(pids) - before < idle * 0.5:
            return


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of processes, summed, from ``/proc/PID/status``."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


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
async def relay(upstream_url: str, workdir: Path, client: str = "httpx") -> AsyncIterator[Server]:
    """The bare relay (bench/relay.py), asking the upstream with ``client``."""
    port = free_port()
    command = [sys.executable, "-m", "bench.relay", f"{upstream_url}/v1", str(port)]
    command += ["--client", client]
    log = (workdir / f"relay-{client}.log").open("wb")
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
async def parley(
    upstream_url: str,
    workdir: Path,
    database_url: str = "",
    *,
    redis_url: str = "",
    workers: int = 1,
    name: str = "parley",
) -> AsyncIterator[Server]:
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
        # a model-written title is one more model call per new conversation, in the background:
        # not what a relay does, and each scenario here starts many conversations
        "PARLEY_AUTO_TITLES": "false",
        **({"PARLEY_REDIS_URL": redis_url} if redis_url else {}),
    }
    args = ("--workers", str(workers)) if workers > 1 else ()
    process = await start_parley(env, workdir, name=name, args=args)
    headers = {"Authorization": f"Bearer {issue_token(SECRET, 'bench')}"}
    try:
        yield Server(name, process.url, process.process.pid, headers)
    finally:
        process.stop()
