"""The search cache: keys, lookups, clearing and hit/miss counts (alias ``search``).

A key covers everything that changes an answer. It includes the store's ``uid``
(a recreated store never meets an old entry) and ``revision`` (bumped by every
document change, so a changed store is never answered from stale cache). Keys are
``search:<store uid>:<sha256>``, so one store's entries can be found and dropped.

The cache is an accelerator, never a dependency: every cache error is logged,
counted and treated as a miss. Lookups and misses are counted in Redis when the
cache is Redis (shared by every worker), in the process otherwise; ``lookup`` is
the one place that counts, for the metrics to read. A hit costs one round trip to
Redis: the request's rate-limit count, the GET and the lookup count go in one
script call (``_LIMITED_GET``). The default and search aliases are the same
Redis (settings).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, defaultdict
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django_redis import get_redis_connection
from rest_framework.exceptions import Throttled

from flamehaven import ratelimit
from monitoring import metrics

log = structlog.get_logger(__name__)

CACHE_ALIAS = "search"
KEY_VERSION = "v3"  # v3: citations and grounded; v2: source page, section
ENTRY_PREFIX = "search:"
_STATS_KEYS = {"lookups": "stats:lookups", "misses": "stats:misses"}

# Counts kept in this process: lookups and misses when the cache itself is
# per-process, and always the errors (they happen when Redis cannot count them).
_local = Counter()
_local_lock = threading.Lock()


def normalise_query(query: str) -> str:
    return " ".join(query.split()).casefold()


def search_cache_key(
    *,
    store_uid: str,
    revision: int,
    query: str,
    mode: str,
    model: str,
    max_tokens: int,
    temperature: float,
    top_k: int,
    min_score: float | None = None,
) -> str:
    material = json.dumps(
        [
            KEY_VERSION,
            str(store_uid),
            revision,
            normalise_query(query),
            mode,
            model,
            max_tokens,
            round(temperature, 4),
            top_k,
            min_score,
        ],
        separators=(",", ":"),
    )
    digest = hashlib.sha256(material.encode()).hexdigest()
    return f"{ENTRY_PREFIX}{store_uid}:{digest}"


def _cache():
    return caches[CACHE_ALIAS]


def _is_shared(cache) -> bool:
    """Redis (django-redis) is shared by every worker; locmem is per process."""
    return hasattr(cache, "delete_pattern")


def _count_local(name: str) -> None:
    with _local_lock:
        _local[name] += 1


def _failed(op: str, error: Exception) -> None:
    _count_local("errors")
    log.warning("search_cache_error", op=op, error=type(error).__name__)


def _count_miss() -> None:
    cache = _cache()
    if not _is_shared(cache):
        _count_local("misses")
        return
    try:
        get_redis_connection(CACHE_ALIAS).incr(cache.make_key(_STATS_KEYS["misses"]))
    except Exception as error:
        _failed("count", error)


# The rate-limit count, the entry and the lookup count in one round trip: the
# rate limiter's window (flamehaven.ratelimit: INCR, EXPIRE), then, under the
# limit only, the entry and the lookup count.
# KEYS: counter, entry, lookups. ARGV: limit, window seconds.
_LIMITED_GET = """
local count = redis.call("INCR", KEYS[1])
redis.call("EXPIRE", KEYS[1], ARGV[2])
if count > tonumber(ARGV[1]) then return {count, false} end
redis.call("INCR", KEYS[3])
return {count, redis.call("GET", KEYS[2])}
"""
_scripts: dict[int, Any] = {}


def _limited_get(
    cache, key: str, count: ratelimit.Deferred, current: ratelimit.Window
) -> Any:
    """The entry, read in the round trip that counts the request's rate limit
    and the lookup; raises Throttled over the limit."""
    client = get_redis_connection(CACHE_ALIAS)
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts.setdefault(id(client), client.register_script(_LIMITED_GET))
    keys = [current.key, cache.make_key(key), cache.make_key(_STATS_KEYS["lookups"])]
    try:
        counted, raw = script(keys=keys, args=[current.limit, current.seconds])
    except Exception:
        count.counted(current, None)  # served unchecked
        raise
    count.counted(current, counted)  # raises Throttled over the limit
    return None if raw is None else cache.client.decode(raw)


def _get_and_count(cache, key: str, count: ratelimit.Deferred | None) -> Any:
    """The entry, with the lookup (and the rate limit, given ``count``) counted
    in the same round trip to Redis."""
    if not _is_shared(cache):
        if count is not None:
            count.settle()  # counted before the read, as with Redis
        _count_local("lookups")
        return cache.get(key)
    current = count.redis_window() if count is not None else None
    if current is not None:
        return _limited_get(cache, key, count, current)
    pipe = get_redis_connection(CACHE_ALIAS).pipeline(transaction=False)
    pipe.get(cache.make_key(key))
    pipe.incr(cache.make_key(_STATS_KEYS["lookups"]))
    raw, _ = pipe.execute()
    return None if raw is None else cache.client.decode(raw)


def lookup(key: str, count: ratelimit.Deferred | None = None) -> dict[str, Any] | None:
    """The cached payload, or None on a miss or when the cache is unavailable.

    Counted here, the one place for hits and misses: lookups (every answered
    lookup) and misses; hits are the difference. With ``count``, the request's
    rate limit is counted too, in the same round trip when the cache is Redis
    (Throttled over the limit).
    """
    cache = _cache()
    try:
        payload = _get_and_count(cache, key, count)
    except Throttled:
        raise
    except Exception as error:  # a cache outage must never fail a search
        _failed("get", error)
        return None
    if payload is None:
        _count_miss()
        metrics.CACHE_MISSES.labels(CACHE_ALIAS).inc()
    else:
        metrics.CACHE_HITS.labels(CACHE_ALIAS).inc()
    return payload


def remember(key: str, payload: dict[str, Any], ttl: int | None = None) -> None:
    cache = _cache()
    try:
        cache.set(key, payload, settings.SEARCH_CACHE_TTL if ttl is None else ttl)
    except Exception as error:
        _failed("set", error)
        return
    if not _is_shared(cache):
        _stored_here(key)


# A per-process cache (locmem) lists no keys: the keys this process stored, by
# store uid, so that one store's entries can be counted and dropped through the
# cache's public API (has_key, delete_many). Redis lists its own (django-redis).
_stored: dict[str, set[str]] = defaultdict(set)


def _stored_here(key: str) -> None:
    store_uid = key.removeprefix(ENTRY_PREFIX).partition(":")[0]
    with _local_lock:
        _stored[store_uid].add(key)
        if sum(map(len, _stored.values())) > 2 * settings.SEARCH_CACHE_MAX_ENTRIES:
            _forget_gone(_cache())


def _forget_gone(cache) -> int:
    """Drop the keys the cache no longer holds (expired, culled); the count left.
    Called with _local_lock held."""
    for store_uid in list(_stored):
        _stored[store_uid] = {key for key in _stored[store_uid] if cache.has_key(key)}
        if not _stored[store_uid]:
            del _stored[store_uid]
    return sum(map(len, _stored.values()))


def delete_entries(*, store_uid: str | None = None) -> int | None:
    """Drop the entries of one store, or all entries; None if the cache failed.

    Never a whole-cache flush: on Redis that would take the rate-limit counters and
    other aliases with it. The counts survive too.
    """
    prefix = f"{ENTRY_PREFIX}{store_uid}:" if store_uid else ENTRY_PREFIX
    cache = _cache()
    try:
        if _is_shared(cache):
            return cache.delete_pattern(f"{prefix}*", itersize=500)
        with _local_lock:
            _forget_gone(cache)
            uids = [store_uid] if store_uid else list(_stored)
            keys = [key for uid in uids for key in _stored.pop(uid, ())]
        cache.delete_many(keys)
        return len(keys)
    except Exception as error:
        _failed("delete", error)
        return None


def _entry_count(cache) -> int:
    if _is_shared(cache):
        return sum(1 for _ in cache.iter_keys(f"{ENTRY_PREFIX}*", itersize=500))
    with _local_lock:
        return _forget_gone(cache)


def _backend_name(cache) -> str:
    if _is_shared(cache):
        return "redis"
    if isinstance(cache, LocMemCache):
        return "locmem"
    return type(cache).__name__.lower()


def stats() -> dict[str, Any]:
    """Hits, misses, hit rate and entries; None for what an unavailable cache hides."""
    cache = _cache()
    shared = _is_shared(cache)
    with _local_lock:
        local = dict(_local)
    figures: dict[str, Any] = {
        "backend": _backend_name(cache),
        "shared": shared,
        "available": True,
        "hits": local.get("lookups", 0) - local.get("misses", 0),
        "misses": local.get("misses", 0),
        "entries": None,
    }
    try:
        if shared:
            counts = cache.get_many(list(_STATS_KEYS.values()))
            lookups = int(counts.get(_STATS_KEYS["lookups"], 0))
            figures["misses"] = int(counts.get(_STATS_KEYS["misses"], 0))
            figures["hits"] = lookups - figures["misses"]
        figures["entries"] = _entry_count(cache)
    except Exception as error:
        _failed("stats", error)
        figures.update(available=False, hits=None, misses=None)
    lookups = (figures["hits"] or 0) + (figures["misses"] or 0)
    figures["hit_rate"] = (
        round(figures["hits"] / lookups, 4)
        if figures["hits"] is not None and lookups
        else None
    )
    figures["max_entries"] = (
        settings.SEARCH_CACHE_MAX_ENTRIES if isinstance(cache, LocMemCache) else None
    )
    figures["ttl_seconds"] = settings.SEARCH_CACHE_TTL
    figures["errors"] = local.get("errors", 0)
    return figures


def reset_local_counts() -> None:
    """Forget this process's counts and stored keys (tests)."""
    with _local_lock:
        _local.clear()
        _stored.clear()
