"""``GET /metrics``: the same figures as /prometheus, summed up as one JSON object.

Read from the registry a scrape would use (so under gunicorn it is the sum over
workers), plus the search cache's own counts and a few database counts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from django.db.models import Count

from monitoring.exposition import scrape_registry
from monitoring.health import human_duration, system_info, uptime_seconds


def _samples() -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in scrape_registry().collect():
        for sample in family.samples:
            found[sample.name].append((sample.labels, sample.value))
    return found


def _sum(samples, name: str, by: str | None = None, **match: str):
    rows = [
        (labels, value)
        for labels, value in samples.get(name, [])
        if all(labels.get(k) == v for k, v in match.items())
    ]
    if by is None:
        return sum(value for _, value in rows)
    totals: dict[str, float] = defaultdict(float)
    for labels, value in rows:
        totals[labels.get(by, "")] += value
    return dict(totals)


def quantile(samples, name: str, q: float) -> float | None:
    """Linear interpolation inside the bucket holding the q-th observation,
    as Prometheus's histogram_quantile does; None without observations.

    Our own: prometheus_client exposes bucket counts but computes no quantile
    (only a Prometheus server's PromQL does), and /metrics answers without one.
    """
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in samples.get(f"{name}_bucket", []):
        buckets[float(labels["le"])] += value
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if math.isinf(bound):
                return lower_bound
            width = buckets[bound] - lower_count
            share = (rank - lower_count) / width if width else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, buckets[bound]
    return None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def report() -> dict[str, Any]:
    from search import cache
    from stores.models import Document, Store

    samples = _samples()
    by_status = _sum(samples, "http_requests_total", by="status")
    classes: dict[str, float] = defaultdict(float)
    for status, value in by_status.items():
        classes[f"{status[:1]}xx"] += value
    searches = _sum(samples, "search_requests_total")
    cached = _sum(samples, "search_requests_total", cached="true")
    uptime = uptime_seconds()
    return {
        "uptime": human_duration(uptime),
        "uptime_seconds": uptime,
        "requests": {"total": sum(by_status.values()), "by_status_class": classes},
        "uploads": {
            "count": _sum(samples, "file_uploads_total", status="success"),
            "duplicates": _sum(samples, "file_uploads_total", status="duplicate"),
            "failures": _sum(samples, "file_uploads_total", status="rejected"),
            "bytes": _sum(samples, "file_upload_size_bytes_sum"),
        },
        "searches": {
            "count": searches,
            "by_backend": _sum(samples, "search_requests_total", by="backend"),
            # Answered from the local index because Gemini was unavailable.
            "fallbacks": _sum(samples, "search_requests_total", status="fallback"),
            "cached_share": round(cached / searches, 4) if searches else None,
            "p50_ms": _ms(quantile(samples, "search_duration_seconds", 0.5)),
            "p95_ms": _ms(quantile(samples, "search_duration_seconds", 0.95)),
        },
        "cache": {
            key: value
            for key, value in cache.stats().items()
            if key in ("hits", "misses", "hit_rate", "entries", "backend")
        },
        "rate_limit_rejections": _sum(samples, "rate_limit_exceeded_total"),
        "errors_by_type": _sum(samples, "errors_total", by="type"),
        "system": system_info(),
        "stores": Store.objects.count(),
        "documents_by_status": dict(
            Document.objects.values_list("status").annotate(n=Count("pk"))
        ),
    }
