"""Real ``parley serve`` processes on loopback ports, for crash and multi-process tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx


def fake_openai_env(
    database_url: str, base_url: str, tmp_path: Path, secret: str, **extra: str
) -> dict[str, str]:
    """The environment of a ``parley serve`` on the OpenAI provider pointed at a fake model API."""
    return {
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_JWT_SECRET": secret,
        "PARLEY_PROVIDER": "openai",
        "PARLEY_MODEL": "fake-model",
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "sk-fake",
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ParleyProcess:
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


async def start_parley(
    env: dict[str, str], workdir: Path, *, name: str = "parley", args: tuple[str, ...] = ()
) -> ParleyProcess:
    """Start ``python -m parley serve [args]`` and wait until ``/healthz`` answers."""
    port = free_port()
    log = workdir / f"{name}-{port}.log"
    # a title is one more model call, and a stop drains running replies, as in make_settings:
    # the tests that want either say so
    defaults = {"PARLEY_AUTO_TITLES": "false", "PARLEY_SHUTDOWN_GRACE": "0"}
    full_env = {**os.environ, **defaults, **env, "PARLEY_CONFIG": str(workdir / "none.toml")}
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "parley", "serve", "--port", str(port), "--no-migrate", *args],
        env=full_env,
        cwd=workdir,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    started = ParleyProcess(port=port, process=process, log=log)
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(f"parley exited early:\n{log.read_text()}")
            try:
                if (await http.get(f"{started.url}/healthz")).status_code == 200:
                    return started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    started.kill()
    raise RuntimeError(f"parley did not start:\n{log.read_text()}")
