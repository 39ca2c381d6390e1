"""Per-tenant token buckets in Redis (one EVALSHA per check), answered 429 with Retry-After by callers.

When Redis does not answer, the buckets live in this process instead (each process then allows
the whole rate, so the limit is looser by the number of processes) and a warning is logged once
a minute; `/readyz` reports it. Redis is tried again after RETRY_SECONDS, so a stopped Redis
costs one short timeout every few seconds, not one per request.
"""
from __future__ import annotations

import logging
import threading
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# Each bucket refills at its rate per second up to its burst. Either every bucket has its cost
# and all are charged, or none is and the answer is how long the emptiest needs.
_TOKEN_BUCKETS = """
local now = tonumber(ARGV[1])
local tokens, wait = {}, 0
for i, key in ipairs(KEYS) do
  local rate, burst, cost = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local have = tonumber(redis.call('HGET', key, 't') or burst)
  local last = tonumber(redis.call('HGET', key, 'ts') or now)
  have = math.min(burst, have + math.max(0, now - last) * rate)
  if have < cost then
    local need = 60
    if rate > 0 then need = (cost - have) / rate end
    if need > wait then wait = need end
  end
  tokens[i] = have
end
for i, key in ipairs(KEYS) do
  if wait == 0 then tokens[i] = tokens[i] - tonumber(ARGV[3 * i + 1]) end
  redis.call('HSET', key, 't', tokens[i], 'ts', now)
  redis.call('EXPIRE', key, 3600)
end
return tostring(wait)
"""

# Work already done is charged whatever the level: a bucket may go into debt (down to -burst), and
# takes wait until it has refilled. Returns each bucket's level.
_CHARGE = """
local now, levels = tonumber(ARGV[1]), {}
for i, key in ipairs(KEYS) do
  local rate, burst, cost = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local have = tonumber(redis.call('HGET', key, 't') or burst)
  local last = tonumber(redis.call('HGET', key, 'ts') or now)
  have = math.max(-burst, math.min(burst, have + math.max(0, now - last) * rate) - cost)
  redis.call('HSET', key, 't', have, 'ts', now)
  redis.call('EXPIRE', key, 3600)
  levels[i] = tostring(have)
end
return levels
"""

# Admission of an ingest request, before its body is read: a slot in the tenant's in-flight set
# (KEYS[3], members scored by their expiry; expired ones dropped first, so a worker killed mid-request
# leaks its slot only until then), a token of the requests bucket (KEYS[1]) and a points bucket
# (KEYS[2]) holding at least one point (points are charged when the request finishes). First, the
# slots of this process's ended requests whose finish is not sent yet are freed (KEYS[4..], ARGV[9..]),
# so a worker's own last request never holds up its next. Returns {refusal, seconds to wait}: refusal
# '' when admitted, 'inflight' or 'rate' when not.
_ADMIT = """
local now, cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[6]), tonumber(ARGV[7])
for i = 4, #KEYS do redis.call('ZREM', KEYS[i], ARGV[i + 5]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= cap then return {'inflight', '1'} end
local levels, wait = {}, 0
for i = 1, 2 do
  local rate, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local have = tonumber(redis.call('HGET', KEYS[i], 't') or burst)
  local last = tonumber(redis.call('HGET', KEYS[i], 'ts') or now)
  have = math.min(burst, have + math.max(0, now - last) * rate)
  if have < 1 then
    local need = 60
    if rate > 0 then need = (1 - have) / rate end
    if need > wait then wait = need end
  end
  levels[i] = have
end
if wait > 0 then return {'rate', tostring(wait)} end
redis.call('HSET', KEYS[1], 't', levels[1] - 1, 'ts', now)
redis.call('EXPIRE', KEYS[1], 3600)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[8])
redis.call('EXPIRE', KEYS[3], math.ceil(ttl) + 60)
return {'', '0'}
"""

# The end of an admitted request: its slot freed (KEYS[1], ARGV[2]) and what it cost charged as
# _CHARGE does (KEYS[2..], ARGV[3..]). Returns each charged bucket's level.
_FINISH = """
redis.call('ZREM', KEYS[1], ARGV[2])
local now, levels = tonumber(ARGV[1]), {}
for i = 2, #KEYS do
  local rate, burst, cost = tonumber(ARGV[3 * i - 3]), tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local have = tonumber(redis.call('HGET', KEYS[i], 't') or burst)
  local last = tonumber(redis.call('HGET', KEYS[i], 'ts') or now)
  have = math.max(-burst, math.min(burst, have + math.max(0, now - last) * rate) - cost)
  redis.call('HSET', KEYS[i], 't', have, 'ts', now)
  redis.call('EXPIRE', KEYS[i], 3600)
  levels[i - 1] = tostring(have)
end
return levels
"""

RETRY_SECONDS = 5.0
_WARN_EVERY_SECONDS = 60.0


class _Limiter:
    def __init__(self):
        self._script = None
        self._charge_script = None
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._warned_at = -_WARN_EVERY_SECONDS
        self._local: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, keys: list[str], specs: list[tuple[float, float, float]]) -> float:
        now = time.time()
        if time.monotonic() >= self._retry_at:
            try:
                args = [now] + [value for spec in specs for value in spec]
                wait = float(self._bucket_script()(keys=keys, args=args))
                if self._down_since is not None:
                    logger.warning("rate limits: Redis answers again; buckets are shared again")
                self._down_since = None
                return wait
            except redis.RedisError as error:
                self._redis_failed(error)
        return self._take_locally(keys, specs, now)

    def charge(self, keys: list[str], specs: list[tuple[float, float, float]]) -> list[float]:
        now = time.time()
        if time.monotonic() >= self._retry_at:
            try:
                self._bucket_script()  # the client and both scripts
                args = [now] + [value for spec in specs for value in spec]
                return [float(level) for level in self._charge_script(keys=keys, args=args)]
            except redis.RedisError as error:
                self._redis_failed(error)
        return self._charge_locally(keys, specs, now)

    def _charge_locally(self, keys: list[str], specs: list[tuple[float, float, float]], now: float) -> list[float]:
        levels = []
        with self._lock:
            for key, (rate, burst, cost) in zip(keys, specs):
                have, last = self._local.get(key, (burst, now))
                levels.append(max(-burst, min(burst, have + max(0.0, now - last) * rate) - cost))
                self._local[key] = (levels[-1], now)
        return levels

    def admit(self, keys: list[str], args: list) -> tuple[str, float]:
        """_ADMIT's answer; when Redis does not answer, the buckets' local take (in-flight unchecked)."""
        now = time.time()
        if time.monotonic() >= self._retry_at:
            try:
                self._bucket_script()
                refusal, wait = self._admit_script(keys=keys, args=[now, *args])
                self._answers_again()
                return (refusal.decode() if isinstance(refusal, bytes) else refusal), float(wait)
            except redis.RedisError as error:
                self._redis_failed(error)
        wait = self._take_locally(keys[:2], [(args[0], args[1], 1), (args[2], args[3], 0)], now, need=[1, 1])
        return ("rate" if wait else ""), wait

    def finish(self, inflight_key: str, member: str, keys: list[str],
               specs: list[tuple[float, float, float]]) -> list[float]:
        """_FINISH's answer; when Redis does not answer, the charge applied to the local buckets (the slot
        expires by itself)."""
        if time.monotonic() >= self._retry_at:
            try:
                self._bucket_script()
                args = [time.time(), member] + [value for spec in specs for value in spec]
                levels = self._finish_script(keys=[inflight_key, *keys], args=args)
                self._answers_again()
                return [float(level) for level in levels]
            except redis.RedisError as error:
                self._redis_failed(error)
        return self._charge_locally(keys, specs, time.time())

    def _answers_again(self) -> None:
        if self._down_since is not None:
            logger.warning("rate limits: Redis answers again; buckets are shared again")
        self._down_since = None

    def _bucket_script(self):
        # One client and one registered script per process: building a client per request costs
        # more than the check itself. Short timeouts: a blackholed Redis must not hang requests.
        if self._script is None:
            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
                                          socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS)
            self._charge_script = client.register_script(_CHARGE)
            self._admit_script = client.register_script(_ADMIT)
            self._finish_script = client.register_script(_FINISH)
            self._script = client.register_script(_TOKEN_BUCKETS)
        return self._script

    def _redis_failed(self, error: Exception) -> None:
        monotonic = time.monotonic()
        if self._down_since is None:
            self._down_since = monotonic
        self._retry_at = monotonic + RETRY_SECONDS
        if monotonic - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = monotonic
            logger.warning("rate limits: Redis is not answering (%s); limiting per process until it does", error)

    def _take_locally(self, keys: list[str], specs: list[tuple[float, float, float]], now: float,
                      need: list[float] | None = None) -> float:
        """Take each cost when every bucket holds its need (by default its cost); else the wait."""
        with self._lock:
            levels, wait = [], 0.0
            for k, (key, (rate, burst, cost)) in enumerate(zip(keys, specs)):
                have, last = self._local.get(key, (burst, now))
                have = min(burst, have + max(0.0, now - last) * rate)
                required = cost if need is None else need[k]
                if have < required:
                    wait = max(wait, (required - have) / rate if rate > 0 else 60.0)
                levels.append(have)
            for key, have, (_, _, cost) in zip(keys, levels, specs):
                self._local[key] = (have - cost if wait == 0 else have, now)
            if len(self._local) > 100_000:  # one entry per tenant and bucket; tenants come and go
                self._local.clear()
            return wait

    def degraded(self) -> bool:
        """Whether the last check found Redis down (limits are per process meanwhile)."""
        return self._down_since is not None

    def reset(self) -> None:
        self.__init__()


_limiter = _Limiter()


def buckets_take(*, tenant_id: int, takes: list[tuple[str, float, float, float]]) -> float | None:
    """Take from several of the tenant's buckets at once, each given as (name, rate per second, burst,
    cost): all or none. Returns the seconds to wait when one is short."""
    keys = [_bucket_key(name, tenant_id) for name, _, _, _ in takes]
    wait = _limiter.take(keys, [(rate, burst, cost) for _, rate, burst, cost in takes])
    return wait if wait > 0 else None


def bucket_take(*, name: str, tenant_id: int, rate: float, burst: float, cost: float = 1) -> float | None:
    """Take `cost` tokens from the tenant's bucket `name`; returns seconds to wait when it is short."""
    return buckets_take(tenant_id=tenant_id, takes=[(name, rate, burst, cost)])


def buckets_charge(*, tenant_id: int, charges: list[tuple[str, float, float, float]]) -> list[float]:
    """Take from several of the tenant's buckets, each given as (name, rate per second, burst, cost), for
    work already done: into debt if need be, so the tenant's next takes wait until they have refilled.
    Returns each bucket's level."""
    keys = [_bucket_key(name, tenant_id) for name, _, _, _ in charges]
    return _limiter.charge(keys, [(rate, burst, cost) for _, rate, burst, cost in charges])


def inflight_admit(*, tenant_id: int, requests: tuple[float, float], points: tuple[float, float], cap: int,
                   ttl_seconds: float, member: str) -> tuple[str, float]:
    """Admit one request of the tenant, in one Redis call: a slot among at most `cap` in flight (held until
    inflight_finish, or `ttl_seconds`), a token of its requests bucket and a point in its points bucket, each
    bucket given as (rate per second, burst). Returns ('', 0) when admitted, else ('inflight' or 'rate',
    seconds to wait). Redis down: the local buckets decide, in-flight is not limited."""
    unsent = list(_unsent_releases.items())
    keys = [_bucket_key("requests", tenant_id), _bucket_key("points", tenant_id), _inflight_key(tenant_id),
            *(key for _, key in unsent)]
    return _limiter.admit(keys, [*requests, *points, cap, ttl_seconds, member, *(slot for slot, _ in unsent)])


def inflight_ended(*, tenant_id: int, member: str) -> None:
    """The request holding `member` ended: the next admission of this process frees its slot if
    inflight_finish has not been sent by then."""
    if len(_unsent_releases) < 1000:  # a handful normally; more only while Redis is slow or down
        _unsent_releases[member] = _inflight_key(tenant_id)


def inflight_finish(*, tenant_id: int, member: str, charges: list[tuple[str, float, float, float]]) -> list[float]:
    """Free an admitted request's slot and charge it, as buckets_charge does (one Redis call); returns the
    charged buckets' levels."""
    keys = [_bucket_key(name, tenant_id) for name, _, _, _ in charges]
    try:
        return _limiter.finish(_inflight_key(tenant_id), member, keys,
                               [(rate, burst, cost) for _, rate, burst, cost in charges])
    finally:
        _unsent_releases.pop(member, None)


# Slots of this process's ended requests whose finish is not sent yet -> their tenant's in-flight key.
_unsent_releases: dict[str, str] = {}


def _inflight_key(tenant_id: int) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:inflight:{tenant_id}"


def _bucket_key(name: str, tenant_id: int) -> str:
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:bucket:{name}:{tenant_id}"


def limiter_degraded() -> bool:
    return _limiter.degraded()


def limiter_reset() -> None:
    """Forget Redis's state and the local buckets (tests that stop and start Redis use it)."""
    _limiter.reset()
