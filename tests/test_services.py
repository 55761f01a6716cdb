"""The configured services are the real ones: PostgreSQL and Redis in CI."""

import pytest
from django.core.cache import caches
from django.db import connection

from search.services import SearchParams, search
from stores.models import Chunk
from tests.conftest import upload


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_has_the_generated_tsvector_column_and_its_gin_index():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generation_expression FROM information_schema.columns "
            "WHERE table_name = 'stores_chunk' AND column_name = 'search_vector'"
        )
        [(expression,)] = cursor.fetchall()
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'stores_chunk' "
            "AND indexdef ILIKE '%%gin%%'"
        )
        indexes = [row[0] for row in cursor.fetchall()]

    assert connection.vendor == "postgresql"
    assert "to_tsvector('english'" in expression
    assert any("search_vector" in index for index in indexes)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgres_full_text_follows_chunk_changes(write_client, store):
    upload(write_client, "default", {"p.txt": b"Pelicans nest on rocky islands."})
    Chunk.objects.update(text="Herons wade in shallow marshes.")

    pelicans = search(SearchParams(query="pelicans", mode="local"))
    herons = search(SearchParams(query="herons", mode="local"))

    assert pelicans["sources"] == []
    assert herons["sources"][0]["title"] == "p.txt"


@pytest.mark.redis
def test_the_caches_are_redis_and_answer():
    import redis
    from django.conf import settings

    for alias in ("default", "search"):
        cache = caches[alias]
        assert type(cache).__name__ == "RedisCache"
        cache.set("probe", {"alias": alias}, 30)
        assert cache.get("probe") == {"alias": alias}
    assert redis.Redis.from_url(settings.REDIS_URL).ping()


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_search_answers_are_cached_in_redis(write_client, store):
    import redis
    from django.conf import settings

    upload(write_client, "default", {"r.txt": b"Redis keeps the cached answers."})
    client = redis.Redis.from_url(settings.REDIS_URL)
    entries = "fh-search:1:search:*"
    before = set(client.scan_iter(entries))

    first = search(SearchParams(query="cached answers"))
    second = search(SearchParams(query="cached answers"))

    assert (first["cached"], second["cached"]) == (False, True)
    assert len(set(client.scan_iter(entries)) - before) == 1
    assert int(client.get("fh-search:1:stats:lookups")) == 2
    assert int(client.get("fh-search:1:stats:misses")) == 1
