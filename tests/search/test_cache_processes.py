"""Two server processes, one Redis: entries, invalidations, clears and counts shared.

Each server is a gunicorn process on its own port with its own memory; they share
only a SQLite file and Redis, as two machines behind a load balancer would.
"""

import secrets
import time

import pytest
import requests
from django.conf import settings

from tests.servers import ServerProcess, create_api_key, prepare_database

pytestmark = [pytest.mark.slow]


def _server_env(tmp_path, redis_url: str, workers: int = 1) -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        "DATA_DIR": str(tmp_path / "data"),
        "REDIS_URL": redis_url,
        "WORKERS": str(workers),
        "THREADS": "2",
        "ENVIRONMENT": "development",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECRET_KEY": secrets.token_urlsafe(40),
        # Lexical only: vectors arriving in the background bump the store's
        # revision, which (rightly) invalidates the entries this test counts.
        "EMBEDDINGS": "off",
    }


class Api:
    def __init__(self, server: ServerProcess, key: str) -> None:
        self.base = server.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {key}"

    def post(self, path: str, expect: int = 200, **kwargs) -> dict:
        response = self.session.post(self.base + path, timeout=10, **kwargs)
        assert response.status_code == expect, response.text
        return response.json()

    def get(self, path: str) -> dict:
        response = self.session.get(self.base + path, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def search(self, query: str = "shared cache") -> bool:
        return self.post("/api/search", json={"query": query, "store_name": "s"})[
            "cached"
        ]

    def upload(self, name: str, text: bytes) -> None:
        self.post(
            "/api/stores/s/documents/",
            expect=201,
            files={"file": (name, text, "text/plain")},
        )


@pytest.mark.redis
def test_two_servers_share_entries_invalidations_and_counts(tmp_path):
    env = _server_env(tmp_path, settings.REDIS_URL)
    prepare_database(env)
    key = create_api_key(env, "admin")

    with ServerProcess(env) as one, ServerProcess(env) as two:
        a, b = Api(one, key), Api(two, key)
        a.post("/api/stores/", expect=201, json={"name": "s"})
        a.upload("a.txt", b"A shared cache serves every process.")
        before = a.get("/api/cache/")

        assert a.search() is False
        assert b.search() is True  # an entry written by the other process

        b.upload("b.txt", b"The cache is shared by the workers.")
        assert a.search() is False  # invalidated by the other process
        assert b.search() is True

        b.post("/api/cache/clear", json={"store": "s"})
        assert a.search() is False

        stats_a, stats_b = a.get("/api/cache/"), b.get("/api/cache/")

    assert stats_a["shared"] is True
    assert stats_a["hits"] == stats_b["hits"] == before["hits"] + 2
    assert stats_a["misses"] == stats_b["misses"] == before["misses"] + 3


def test_gunicorn_warns_once_about_several_workers_on_locmem(tmp_path):
    env = _server_env(tmp_path, redis_url="", workers=2)
    prepare_database(env)

    with ServerProcess(env) as server:
        # /health may be answered by the second worker before the first one
        # has logged: give the first a moment.
        deadline = time.monotonic() + 10
        while "W001" not in server.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # and the second worker a chance to (wrongly) log too
        log = server.log_text()

    assert log.count("flamehaven.W001") == 1
    assert "2 worker processes" in log
