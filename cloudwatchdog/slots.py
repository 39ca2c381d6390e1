"""Counted slots in Redis whose holds expire: at most `cap` holders of a name at once, across every
process and machine. A holder that dies without releasing frees its slot when its hold expires.

Used to give each tenant at most a share of the detection workers (anomalies.tasks). When Redis
does not answer, a slot is granted: the work then runs unfairly rather than not at all.
"""
from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# Expired holds are dropped, then the holder takes a slot if one is free (or renews its own).
_TAKE = """
local key, cap, now, hold, holder = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, holder) or redis.call('ZCARD', key) < cap then
  redis.call('ZADD', key, now + hold, holder)
  redis.call('EXPIRE', key, math.ceil(hold))
  return 1
end
return 0
"""

_client: redis.Redis | None = None
_take_script = None


def _script():
    global _client, _take_script
    if _take_script is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
                                       socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS)
        _take_script = _client.register_script(_TAKE)
    return _take_script


def _key(name: str) -> str:
    return f"{settings.CACHES['default']['KEY_PREFIX']}:slots:{name}"


def slot_take(name: str, *, holder: str, cap: int, hold_seconds: float) -> bool:
    """Whether `holder` now holds one of the `cap` slots of `name` (for `hold_seconds` at most)."""
    try:
        return bool(_script()(keys=[_key(name)], args=[cap, time.time(), hold_seconds, holder]))
    except redis.RedisError as error:
        logger.warning("slots: Redis is not answering (%s); %s gets a slot", error, name)
        return True


def slot_release(name: str, *, holder: str) -> None:
    try:
        _script()
        _client.zrem(_key(name), holder)
    except redis.RedisError as error:  # the hold expires by itself
        logger.warning("slots: could not release %s of %s (%s)", holder, name, error)


def slot_holders(name: str) -> int:
    """How many holds of `name` have not expired."""
    _script()
    return _client.zcount(_key(name), time.time(), "+inf")
