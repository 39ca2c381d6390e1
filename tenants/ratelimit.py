"""Per-tenant token buckets in Redis (one EVALSHA per check), answered 429 with Retry-After by callers."""
from __future__ import annotations

import time

import redis
from django.conf import settings

# Refills at `rate` per second up to `burst`; takes `cost` when it can, else says how long to wait.
_TOKEN_BUCKET = """
local rate, burst, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens = tonumber(redis.call('HGET', KEYS[1], 't') or burst)
local last = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost
elseif rate > 0 then wait = (cost - tokens) / rate
else wait = 60 end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""

_script = None


def _bucket_script():
    # One client and one registered script per process: building a redis client per request
    # costs more than the check itself.
    global _script
    if _script is None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        _script = client.register_script(_TOKEN_BUCKET)
    return _script


def bucket_take(*, name: str, tenant_id: int, rate: float, burst: float, cost: float = 1) -> float | None:
    """Take `cost` tokens from the tenant's bucket `name`; returns seconds to wait when it is short."""
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    wait = float(_bucket_script()(keys=[f"{prefix}:bucket:{name}:{tenant_id}"], args=[rate, burst, time.time(), cost]))
    return wait if wait > 0 else None
