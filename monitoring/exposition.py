"""The Prometheus exposition: who may scrape, and what a scrape contains.

Access (DESIGN.md): an admin API key, the ``METRICS_TOKEN`` bearer token, or a
client address inside ``METRICS_ALLOWED_CIDRS`` (none by default: behind a
reverse proxy on the same host, every client would come from loopback).

Under gunicorn with several workers every process writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` (deploy/gunicorn.conf.py sets it up) and a scrape
sums them; a fresh registry per scrape holds the multiprocess collector and the
scrape-time collector, which django-prometheus's own view would drop.
"""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.db import DatabaseError
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.exceptions import AuthenticationFailed

from accounts.authentication import ApiKeyAuthentication
from accounts.models import Scope, scope_allows
from flamehaven.client_ip import client_ip, in_networks, parse_networks
from monitoring.health import system_info


def may_scrape(request) -> bool:
    """Admin key, metrics token, or an allowed client address."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and settings.METRICS_TOKEN:
        return hmac.compare_digest(
            credential.strip().encode(), settings.METRICS_TOKEN.encode()
        )
    if scheme.lower() == "api-key":
        try:
            found = ApiKeyAuthentication().authenticate(request)
        except AuthenticationFailed:  # an invalid key is simply no access
            return False
        return bool(found) and scope_allows(found[1].scope, Scope.ADMIN)
    allowed = parse_networks(tuple(settings.METRICS_ALLOWED_CIDRS))
    return in_networks(client_ip(request), allowed)


class ScrapeTimeCollector:
    """Gauges read when scraped: system load, stores, search-cache entries.

    Non-blocking psutil readings only (cpu_percent compares with the previous
    call instead of sleeping).
    """

    def collect(self):
        from search import cache
        from stores.models import Store

        system = system_info()
        yield _gauge("system_cpu_usage_percent", "CPU use.", system["cpu_percent"])
        yield _gauge(
            "system_memory_usage_percent", "Memory use.", system["memory_percent"]
        )
        yield _gauge(
            "system_disk_usage_percent",
            "Use of the disk holding the data directory.",
            system["disk_percent"],
        )
        try:
            stores = Store.objects.count()
        except DatabaseError:
            stores = None  # a scrape still answers; /health says the database is down
        if stores is not None:
            yield _gauge("stores_total", "Stores.", stores)
        size = GaugeMetricFamily(
            "cache_size", "Entries in the cache.", labels=["cache"]
        )
        entries = cache.stats()["entries"]
        if entries is not None:
            size.add_metric([cache.CACHE_ALIAS], entries)
        yield size


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def scrape_registry() -> CollectorRegistry:
    """This process's registry, or the sum over gunicorn's workers."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def scrape() -> bytes:
    gauges = CollectorRegistry()
    gauges.register(ScrapeTimeCollector())
    return generate_latest(scrape_registry()) + generate_latest(gauges)
