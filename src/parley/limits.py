"""Per-user rate limits and budgets, shared across processes through Redis (in memory without it).

- requests per minute (a sliding window: at most N admitted in any 60 seconds, so two bursts either
  side of a minute's edge cannot double the rate) and concurrent runs (a set of run ids that ages
  out, so a crashed process cannot leak a slot for ever);
- token and cost budgets per day, **reserved before each model call** with an estimate (prompt
  tokens + ``max_tokens``) in one atomic step, and **settled after each step** with the real usage.
  Concurrent requests therefore cannot overrun a budget: the check and the reservation are one
  operation (a Lua script on Redis, a lock in memory).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from parley.config import LimitsConfig, Settings
from parley.errors import RateLimited

DAY = 86_400
MINUTE = 60.0
UNLIMITED = -1.0


@dataclass
class Reservation:
    """What one run holds against its user's budgets."""

    user_id: str
    run_id: str
    tokens: int = 0
    cost: float = 0.0
    counted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def price_of(settings: Settings, model_ref: str, prompt: int, completion: int) -> float:
    """Cost in the price table's currency; prices are per million tokens."""
    prices = settings.prices.get(model_ref) or settings.prices.get(model_ref.split("/", 1)[-1])
    if not prices:
        return 0.0
    return (prices.get("prompt", 0.0) * prompt + prices.get("completion", 0.0) * completion) / 1e6


def limits_for(settings: Settings, user_id: str) -> LimitsConfig:
    base = settings.limits.model_dump()
    override = settings.user_limits.get(user_id)
    if override is not None:
        base.update({k: v for k, v in override.model_dump().items() if v is not None})
    return LimitsConfig(**base)


def _limit(value: float | None) -> float:
    return UNLIMITED if value is None else float(value)


class Backend(Protocol):
    async def admit(
        self, user_id: str, run_id: str, limits: LimitsConfig, tokens: int, cost: float, now: float
    ) -> float | None:
        """Count the request and reserve; None when admitted, else seconds to wait."""

    async def reserve(
        self, user_id: str, limits: LimitsConfig, tokens: int, cost: float, now: float
    ) -> float | None: ...

    async def settle(
        self, user_id: str, tokens: int, cost: float, release_tokens: int, release_cost: float
    ) -> None: ...

    async def finish(self, user_id: str, run_id: str) -> None: ...


class Limiter:
    """The engine's view: admit a run, reserve and settle each step, release at the end."""

    def __init__(self, settings: Settings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        # Nothing configured (the default): no request pays for working out its user's limits.
        self.configured = bool(settings.user_limits) or _any_limit(settings.limits)

    def active(self, user_id: str) -> bool:
        return self.configured and _any_limit(limits_for(self.settings, user_id))

    async def admit(self, user_id: str, run_id: str, model_ref: str, estimate: int) -> Reservation:
        """Before anything is written: 429 when over a limit, else the first step's reservation."""
        limits = limits_for(self.settings, user_id)
        cost = price_of(self.settings, model_ref, estimate, 0)
        wait = await self.backend.admit(user_id, run_id, limits, estimate, cost, time.time())
        if wait is not None:
            raise RateLimited(_why(limits), retry_after=wait)
        return Reservation(user_id, run_id, tokens=estimate, cost=cost, counted=True)

    async def reserve(self, held: Reservation, model_ref: str, estimate: int) -> None:
        """Reserve the next step of a running run (tool loop)."""
        limits = limits_for(self.settings, held.user_id)
        cost = price_of(self.settings, model_ref, estimate, 0)
        wait = await self.backend.reserve(held.user_id, limits, estimate, cost, time.time())
        if wait is not None:
            raise RateLimited("the token or cost budget is used up", retry_after=wait)
        held.tokens += estimate
        held.cost += cost

    async def settle(self, held: Reservation, tokens: int, cost: float) -> None:
        """Charge a step's real usage and give back what it had reserved."""
        await self.backend.settle(held.user_id, tokens, cost, held.tokens, held.cost)
        held.tokens, held.cost = 0, 0.0

    async def release(self, held: Reservation) -> None:
        """The run ended (finished, failed, cancelled or suspended): free its slot and reserve."""
        await self.backend.settle(held.user_id, 0, 0.0, held.tokens, held.cost)
        held.tokens, held.cost = 0, 0.0
        await self.backend.finish(held.user_id, held.run_id)


def _any_limit(limits: LimitsConfig) -> bool:
    return any(v is not None for v in limits.model_dump().values())


def _why(limits: LimitsConfig) -> str:
    return "a rate limit or budget of this user is reached"


def _day() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


class MemoryBackend:
    """One process: a lock makes each check-and-reserve atomic."""

    def __init__(self, run_timeout: float) -> None:
        self.lock = asyncio.Lock()
        self.admitted: dict[str, deque[float]] = {}
        self.running: dict[str, dict[str, float]] = {}
        self.tokens: dict[tuple[str, str], float] = {}
        self.costs: dict[tuple[str, str], float] = {}
        self.run_timeout = run_timeout

    async def admit(
        self, user_id: str, run_id: str, limits: LimitsConfig, tokens: int, cost: float, now: float
    ) -> float | None:
        async with self.lock:
            admitted = self.admitted.setdefault(user_id, deque())
            while admitted and admitted[0] <= now - MINUTE:
                admitted.popleft()
            rpm = limits.requests_per_minute
            if rpm is not None and len(admitted) >= rpm:
                return admitted[-rpm] + MINUTE - now if rpm > 0 else MINUTE
            runs = self.running.setdefault(user_id, {})
            for stale in [r for r, t in runs.items() if t < now - self.run_timeout]:
                del runs[stale]
            if limits.concurrent_runs is not None and len(runs) >= limits.concurrent_runs:
                return 1.0
            wait = self._budget_wait(user_id, limits, tokens, cost, now)
            if wait is not None:
                return wait
            admitted.append(now)
            runs[run_id] = now
            self._add(user_id, tokens, cost)
            return None

    async def reserve(
        self, user_id: str, limits: LimitsConfig, tokens: int, cost: float, now: float
    ) -> float | None:
        async with self.lock:
            wait = self._budget_wait(user_id, limits, tokens, cost, now)
            if wait is None:
                self._add(user_id, tokens, cost)
            return wait

    def _budget_wait(
        self, user_id: str, limits: LimitsConfig, tokens: int, cost: float, now: float
    ) -> float | None:
        day = _day()
        over_tokens = limits.tokens_per_day is not None and (
            self.tokens.get((user_id, day), 0) + tokens > limits.tokens_per_day
        )
        over_cost = limits.cost_per_day is not None and (
            self.costs.get((user_id, day), 0.0) + cost > limits.cost_per_day
        )
        return DAY - now % DAY if over_tokens or over_cost else None

    def _add(self, user_id: str, tokens: float, cost: float) -> None:
        day = _day()
        self.tokens[(user_id, day)] = self.tokens.get((user_id, day), 0) + tokens
        self.costs[(user_id, day)] = self.costs.get((user_id, day), 0.0) + cost

    async def settle(
        self, user_id: str, tokens: int, cost: float, release_tokens: int, release_cost: float
    ) -> None:
        async with self.lock:
            self._add(user_id, tokens - release_tokens, cost - release_cost)

    async def finish(self, user_id: str, run_id: str) -> None:
        async with self.lock:
            self.running.get(user_id, {}).pop(run_id, None)


_ADMIT = """
local admitted_key, running_key, tokens_key, cost_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rpm, concurrent = tonumber(ARGV[1]), tonumber(ARGV[2])
local token_limit, cost_limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local now, run_id = tonumber(ARGV[5]), ARGV[6]
local tokens, cost, run_timeout = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local counting = ARGV[10] == "1"
if counting then
  redis.call('ZREMRANGEBYSCORE', admitted_key, '-inf', now - 60)
  if rpm == 0 then
    return '60'
  end
  if rpm > 0 and redis.call('ZCARD', admitted_key) >= rpm then
    local nth = redis.call('ZRANGE', admitted_key, -rpm, -rpm, 'WITHSCORES')
    return tostring(tonumber(nth[2]) + 60 - now)
  end
  redis.call('ZREMRANGEBYSCORE', running_key, '-inf', now - run_timeout)
  if concurrent >= 0 and redis.call('ZCARD', running_key) >= concurrent then
    return '1'
  end
end
if token_limit >= 0 and tonumber(redis.call('GET', tokens_key) or '0') + tokens > token_limit then
  return tostring(86400 - (now % 86400))
end
if cost_limit >= 0 and tonumber(redis.call('GET', cost_key) or '0') + cost > cost_limit then
  return tostring(86400 - (now % 86400))
end
if counting then
  redis.call('ZADD', admitted_key, now, run_id)
  redis.call('EXPIRE', admitted_key, 61)
  redis.call('ZADD', running_key, now, run_id)
  redis.call('EXPIRE', running_key, run_timeout + 60)
end
redis.call('INCRBY', tokens_key, tokens)
redis.call('EXPIRE', tokens_key, 172800)
redis.call('INCRBYFLOAT', cost_key, cost)
redis.call('EXPIRE', cost_key, 172800)
return false
"""


class RedisBackend:
    """Many processes: one Lua script checks and reserves atomically."""

    def __init__(self, redis: Any, run_timeout: float) -> None:
        self.redis = redis
        self.run_timeout = run_timeout
        self.script = redis.register_script(_ADMIT)

    def _keys(self, user_id: str, now: float) -> list[str]:
        day = _day()
        return [
            f"parley:limit:{user_id}:admitted",
            f"parley:limit:{user_id}:running",
            f"parley:limit:{user_id}:tokens:{day}",
            f"parley:limit:{user_id}:cost:{day}",
        ]

    async def _run(
        self,
        user_id: str,
        run_id: str,
        limits: LimitsConfig,
        tokens: int,
        cost: float,
        now: float,
        counting: bool,
    ) -> float | None:
        args = [
            _limit(limits.requests_per_minute),
            _limit(limits.concurrent_runs),
            _limit(limits.tokens_per_day),
            _limit(limits.cost_per_day),
            now,
            run_id,
            tokens,
            repr(cost),
            self.run_timeout,
            "1" if counting else "0",
        ]
        result = await self.script(keys=self._keys(user_id, now), args=args)
        return None if result is None else max(1.0, math.ceil(float(result)))

    async def admit(
        self, user_id: str, run_id: str, limits: LimitsConfig, tokens: int, cost: float, now: float
    ) -> float | None:
        return await self._run(user_id, run_id, limits, tokens, cost, now, True)

    async def reserve(
        self, user_id: str, limits: LimitsConfig, tokens: int, cost: float, now: float
    ) -> float | None:
        return await self._run(user_id, "", limits, tokens, cost, now, False)

    async def settle(
        self, user_id: str, tokens: int, cost: float, release_tokens: int, release_cost: float
    ) -> None:
        keys = self._keys(user_id, time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(keys[2], tokens - release_tokens)
            pipe.incrbyfloat(keys[3], cost - release_cost)
            await pipe.execute()

    async def finish(self, user_id: str, run_id: str) -> None:
        await self.redis.zrem(f"parley:limit:{user_id}:running", run_id)


class Attempts(Protocol):
    """Attempts counted per key in a sliding window (sign-ins per account, per address)."""

    async def attempt(self, key: str, limit: int, window: float) -> float | None:
        """Count one attempt (a refused one too); None when it is within ``limit`` in the last
        ``window`` seconds, else the seconds until one would be."""


class MemoryAttempts:
    """One process's count of attempts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.seen: dict[str, deque[float]] = {}
        self.clock = clock

    async def attempt(self, key: str, limit: int, window: float) -> float | None:
        now = self.clock()
        seen = self.seen.setdefault(key, deque())
        while seen and seen[0] <= now - window:
            seen.popleft()
        seen.append(now)
        if len(self.seen) > 100_000:  # many keys: forget those whose attempts all aged out
            self.seen = {k: v for k, v in self.seen.items() if v[-1] > now - window}
        if len(seen) <= limit:
            return None
        return max(1.0, math.ceil(seen[-limit - 1] + window - now))


class RedisAttempts:
    """Attempts counted in Redis, shared by every process: one sorted set per key."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    async def attempt(self, key: str, limit: int, window: float) -> float | None:
        now = time.time()
        name = f"parley:attempts:{key}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(name, "-inf", now - window)
            pipe.zadd(name, {f"{now}:{secrets.token_hex(6)}": now})
            pipe.zrange(name, 0, -1, withscores=True)
            pipe.expire(name, math.ceil(window) + 1)
            _, _, seen, _ = await pipe.execute()
        if len(seen) <= limit:
            return None
        oldest_counted = float(seen[-limit - 1][1])
        return max(1.0, math.ceil(oldest_counted + window - now))
