"""Redis unreachable: searches still answer from the database, and the cache comes back.

The caches are pointed at a TCP proxy in front of the real Redis (or at a closed
port), so the test can take Redis away mid-run and bring it back.
"""

import socket
import threading
import time

import pytest
from django.conf import settings as django_settings

from flamehaven import redis_breaker
from search import cache
from tests.conftest import upload
from tests.servers import TcpProxy, closed_port

pytestmark = pytest.mark.django_db(transaction=True)


def _caches_at(port: int, db: int = 0) -> dict:
    """The project's Redis cache settings, pointed at 127.0.0.1:`port`."""
    url = f"redis://127.0.0.1:{port}/{db}"
    options = {
        "SOCKET_CONNECT_TIMEOUT": 0.5,
        "SOCKET_TIMEOUT": 0.5,
        "CONNECTION_POOL_KWARGS": redis_breaker.pool_kwargs(url),
    }
    redis = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}
    return {
        "default": {
            **redis,
            "KEY_PREFIX": "fh",
            "OPTIONS": {**options, "IGNORE_EXCEPTIONS": True},
        },
        "search": {**redis, "KEY_PREFIX": "fh-search", "OPTIONS": options},
    }


def _events(caplog) -> list[str]:
    return [r.msg.get("event") for r in caplog.records if isinstance(r.msg, dict)]


def _search(client) -> dict:
    response = client.post("/api/search", {"query": "bread dough"}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def corpus(store, write_client):
    response = upload(write_client, "default", {"b.txt": b"Bake bread. Knead dough."})
    assert response.status_code == 201


@pytest.fixture
def dead_port():
    with closed_port() as port:
        yield port


def test_searches_answer_when_redis_was_never_there(
    settings, read_client, corpus, client, caplog, dead_port
):
    settings.REDIS_RETRY_SEC = 60
    port = dead_port
    settings.CACHES = _caches_at(port)

    first = _search(read_client)
    second = _search(read_client)
    stats = read_client.get("/api/cache/").json()
    health = client.get("/health")

    assert (first["cached"], second["cached"]) == (False, False)
    assert second["answer"] == first["answer"]
    assert stats["available"] is False
    assert (stats["hits"], stats["misses"], stats["entries"]) == (None, None, None)
    assert stats["errors"] >= 2
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert _events(caplog).count("redis_unavailable") == 1
    assert "search_cache_error" in _events(caplog)
    # Only the first call tried to connect; the rest failed at once.
    assert redis_breaker.breaker_for(f"127.0.0.1:{port}").is_down


@pytest.mark.redis
def test_redis_going_away_mid_run_and_coming_back(
    settings, read_client, admin_key_client, corpus, caplog
):
    target = _redis_address()
    with TcpProxy(*target[:2]) as proxy:
        settings.REDIS_RETRY_SEC = 0.2
        settings.CACHES = _caches_at(proxy.port, target[2])
        assert [_search(read_client)["cached"] for _ in range(2)] == [False, True]

        proxy.stop()
        during = [_search(read_client) for _ in range(3)]
        stats_during = read_client.get("/api/cache/").json()
        clear = admin_key_client.post("/api/cache/clear", format="json")

        proxy.start()
        time.sleep(settings.REDIS_RETRY_SEC + 0.1)
        after = _search(read_client)
        again = _search(read_client)
        stats_after = read_client.get("/api/cache/").json()

    assert [r["cached"] for r in during] == [False, False, False]
    assert stats_during["available"] is False
    # The clear still bumped the revision, so no worker uses an old entry...
    assert clear.status_code == 200
    assert clear.json()["removed"] is None
    # ...and once Redis is back the cache works again without a restart.
    assert (after["cached"], again["cached"]) == (False, True)
    assert stats_after["available"] is True
    assert stats_after["entries"] >= 1
    events = _events(caplog)
    assert events.count("redis_unavailable") == 1
    assert events.count("redis_recovered") == 1


def _redis_address() -> tuple[str, int, int]:
    from urllib.parse import urlparse

    url = urlparse(django_settings.REDIS_URL)
    return url.hostname, url.port or 6379, int((url.path or "/0").strip("/") or 0)


def test_a_failed_cache_write_is_counted_not_raised(
    settings, read_client, corpus, dead_port
):
    settings.REDIS_RETRY_SEC = 60
    settings.CACHES = _caches_at(dead_port)

    cache.remember("search:x:y", {"answer": "nowhere to go"})

    assert cache.lookup("search:x:y") is None
    assert cache.stats()["errors"] >= 2


class SilentServer:
    """Accepts connections and never answers: a hung Redis."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


def test_searches_answer_when_redis_hangs(
    settings, read_client, corpus, silent_server, caplog
):
    settings.REDIS_RETRY_SEC = 60
    settings.CACHES = _caches_at(silent_server.port)

    first = _search(read_client)  # waits for the socket timeouts, once
    tried = len(silent_server.accepted)
    later = [_search(read_client) for _ in range(3)]

    assert [r["cached"] for r in [first, *later]] == [False] * 4
    assert "redis_unavailable" in _events(caplog)
    # The breaker is open: later requests do not even connect, so none waits.
    assert tried >= 1
    assert len(silent_server.accepted) == tried
