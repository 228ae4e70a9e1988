"""The fake model API for the benchmarks, in a process of its own.

It is :class:`tests.fakes.openai_server.FakeOpenAI` with the scenario picked per request from the
model name: ``bench-<chunks>-<every_ms>`` streams that many chunks (``0`` chunks: until the client
goes away). ``GET /stats`` reports when the last stream was cut off, on the machine's monotonic
clock, so the benchmark can time how fast a cancel reaches the upstream.

Run: ``python -m bench.upstream``; it prints its base URL on the first line of stdout.
"""

from __future__ import annotations

import asyncio
import sys

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tests.fakes.openai_server import FakeOpenAI, Scenario, endless, fast, paced


def scenario_for(model: str) -> Scenario:
    """``bench-500-0`` is 500 chunks as fast as possible; ``bench-0-5`` is endless, every 5 ms."""
    _, chunks, every_ms = model.rsplit("-", 2)
    n, every = int(chunks), float(every_ms)
    if n == 0:
        return endless(every_ms=every)
    return paced(n, every) if every else fast(n)


class BenchUpstream(FakeOpenAI):
    routes = (*FakeOpenAI.routes, ("GET", "/stats"))  # type: ignore[assignment]

    async def _handle(self, request: Request) -> Response:
        if request.url.path == "/stats":
            cut = [e.cut_off_at for e in self.exchanges if e.cut_off_at is not None]
            return JSONResponse(
                {"requests": len(self.exchanges), "last_cut_off_at": max(cut or [0])}
            )
        body = await request.json()
        self.enqueue(scenario_for(str(body.get("model", "bench-10-0"))))
        self.exchanges = self.exchanges[-100:]  # keep memory flat over long runs
        return await super()._handle(request)  # the body is cached on the request


async def main() -> None:
    async with BenchUpstream() as server:
        print(server.url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
