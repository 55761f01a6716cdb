"""The search cache: keys, exact invalidation, stats, clear, no SQL on a hit.

These run on whatever cache the settings give: locmem in the first CI run, Redis in
the second (REDIS_URL). Redis-only behaviour is in test_cache_redis.py.
"""

import time

import pytest
from django.core import checks
from django.core.cache import caches

from search import cache
from stores.models import Store
from stores.services import document_delete, document_reindex, store_create
from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)

KEY_ARGS = {
    "store_uid": "0b9f7a53-64f4-4b0e-9d3b-5a8c1d2e3f40",
    "revision": 3,
    "query": "How do uploads work?",
    "mode": "auto",
    "model": "gemini-2.5-flash",
    "max_tokens": 1024,
    "temperature": 0.5,
    "top_k": 5,
}


def _search(client, query="bread dough", store="default", **extra):
    response = client.post(
        "/api/search", {"query": query, "store_name": store, **extra}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def two_stores(store, write_client):
    store_create(name="other")
    for name in ("default", "other"):
        response = upload(
            write_client, name, {f"{name}.txt": b"Bake the bread. Knead the dough."}
        )
        assert response.status_code == 201
    return Store.objects.get(name="default"), Store.objects.get(name="other")


# --- Keys -------------------------------------------------------------------------


def test_key_ignores_whitespace_and_case():
    variant = {**KEY_ARGS, "query": "  how DO uploads\n\twork? "}

    assert cache.search_cache_key(**variant) == cache.search_cache_key(**KEY_ARGS)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("store_uid", "5c0e3b0e-8a55-4f0b-b8a3-1f7e0a2b9c11"),
        ("revision", 4),
        ("query", "How do downloads work?"),
        ("mode", "local"),
        ("model", "gemini-2.5-pro"),
        ("max_tokens", 512),
        ("temperature", 0.7),
        ("top_k", 3),
    ],
)
def test_key_changes_with_everything_that_changes_an_answer(field, value):
    assert cache.search_cache_key(**{**KEY_ARGS, field: value}) != (
        cache.search_cache_key(**KEY_ARGS)
    )


def test_key_is_a_sha256_under_the_store_uid():
    key = cache.search_cache_key(**KEY_ARGS)

    prefix, uid, digest = key.split(":")
    assert (prefix, uid) == ("search", KEY_ARGS["store_uid"])
    assert len(digest) == 64
    assert int(digest, 16) >= 0


# --- Hits and exact invalidation --------------------------------------------------


def test_a_hit_returns_the_miss_body_with_its_own_timing(read_client, two_stores):
    miss = _search(read_client)
    hit = _search(read_client, query="  BREAD   Dough ")

    assert (miss["cached"], hit["cached"]) == (False, True)
    per_response = {"cached", "took_ms", "request_id"}
    assert {k: v for k, v in hit.items() if k not in per_response} == {
        k: v for k, v in miss.items() if k not in per_response
    }
    assert hit["request_id"] != miss["request_id"]


def test_each_search_parameter_has_its_own_entry(read_client, two_stores):
    assert _search(read_client)["cached"] is False
    assert _search(read_client, top_k=1)["cached"] is False
    assert _search(read_client, mode="local")["cached"] is False
    assert _search(read_client, temperature=0.1)["cached"] is False
    assert _search(read_client, top_k=1)["cached"] is True


def test_an_upload_invalidates_its_store_and_no_other(
    read_client, write_client, two_stores
):
    _search(read_client, store="default")
    _search(read_client, store="other")

    upload(write_client, "default", {"more.txt": b"Sourdough bread needs a starter."})

    assert _search(read_client, store="default")["cached"] is False
    assert _search(read_client, store="other")["cached"] is True


@pytest.mark.parametrize("change", ["delete", "reindex"])
def test_document_delete_and_reindex_invalidate(read_client, two_stores, change):
    default, _ = two_stores
    document = default.documents.get()
    _search(read_client)
    revision = Store.objects.get(pk=default.pk).revision

    if change == "delete":
        document_delete(document=document)
    else:
        document_reindex(document=document)

    assert Store.objects.get(pk=default.pk).revision > revision
    assert _search(read_client)["cached"] is False
    assert _search(read_client, store="other")["cached"] is False  # first time
    assert _search(read_client, store="other")["cached"] is True


def test_a_store_recreated_under_the_same_name_starts_empty(
    read_client, write_client, admin_key_client, two_stores
):
    _search(read_client, store="other")
    assert admin_key_client.delete("/api/stores/other/").status_code == 204
    store_create(name="other")
    upload(write_client, "other", {"other.txt": b"Bake the bread. Knead the dough."})

    again = _search(read_client, store="other")

    assert again["cached"] is False


def test_a_deleted_store_takes_its_entries_with_it(
    read_client, admin_key_client, two_stores
):
    _search(read_client, store="default")
    _search(read_client, store="other")
    assert cache.stats()["entries"] == 2

    admin_key_client.delete("/api/stores/other/")

    assert cache.stats()["entries"] == 1


def test_error_answers_are_never_cached(read_client, two_stores):
    for payload in ({"query": "   "}, {"query": "bread", "store_name": "nope"}):
        response = read_client.post("/api/search", payload, format="json")
        assert response.status_code in (400, 404)

    assert cache.stats()["entries"] == 0
    assert _search(read_client, query="bread")["cached"] is False


def test_entries_are_kept_for_the_ttl(settings):
    key = cache.search_cache_key(**KEY_ARGS)

    cache.remember(key, {"answer": "kept"})

    assert cache.lookup(key) == {"answer": "kept"}
    assert _seconds_left(key) == pytest.approx(settings.SEARCH_CACHE_TTL, abs=5)


def _seconds_left(key: str) -> float:
    backend = caches["search"]
    if hasattr(backend, "ttl"):  # django-redis
        return backend.ttl(key)
    return backend._expire_info[backend.make_key(key)] - time.time()


# --- No SQL on a hit ----------------------------------------------------------------


def test_a_cache_hit_search_runs_no_sql(
    read_client, two_stores, django_assert_num_queries
):
    _search(read_client)
    _search(read_client)  # store row and API key now cached by cachalot

    with django_assert_num_queries(0):
        hit = _search(read_client)

    assert hit["cached"] is True


def test_cachalot_sees_a_revision_bump_at_once(read_client, write_client, two_stores):
    _search(read_client)
    _search(read_client)
    upload(write_client, "default", {"new.txt": b"Rye bread is dense."})

    assert _search(read_client)["cached"] is False


# --- Stats --------------------------------------------------------------------------


def test_stats_count_hits_misses_and_entries(read_client, two_stores, settings):
    _search(read_client)
    _search(read_client)
    _search(read_client, store="other")

    response = read_client.get("/api/cache/")

    assert response.status_code == 200
    body = response.json()
    assert body["hits"] == 1
    assert body["misses"] == 2
    assert body["hit_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert body["entries"] == 2
    assert body["available"] is True
    assert body["errors"] == 0
    assert body["ttl_seconds"] == settings.SEARCH_CACHE_TTL
    if settings.REDIS_URL:
        assert (body["backend"], body["shared"], body["max_entries"]) == (
            "redis",
            True,
            None,
        )
    else:
        assert (body["backend"], body["shared"], body["max_entries"]) == (
            "locmem",
            False,
            settings.SEARCH_CACHE_MAX_ENTRIES,
        )


def test_stats_before_any_search_have_no_hit_rate(read_client):
    body = read_client.get("/api/cache/").json()

    assert (body["hits"], body["misses"], body["hit_rate"]) == (0, 0, None)


def test_stats_need_a_key(client, db):
    response = client.get("/api/cache/")

    assert response.status_code == 401
    assert response.json()["error"] == "AUTHENTICATION_REQUIRED"


# --- Clear --------------------------------------------------------------------------


def test_clear_one_store(read_client, admin_key_client, two_stores):
    _search(read_client, store="default")
    _search(read_client, store="other")

    response = admin_key_client.post(
        "/api/cache/clear", {"store": "default"}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"status": "success", "store": "default", "removed": 1}
    assert cache.stats()["entries"] == 1
    assert _search(read_client, store="default")["cached"] is False
    assert _search(read_client, store="other")["cached"] is True


def test_clear_all(read_client, admin_key_client, two_stores):
    _search(read_client, store="default")
    _search(read_client, store="other")
    caches["default"].set("unrelated", "kept", 60)

    response = admin_key_client.post("/api/cache/clear", format="json")

    assert response.status_code == 200
    assert response.json() == {"status": "success", "store": None, "removed": 2}
    assert cache.stats()["entries"] == 0
    assert caches["default"].get("unrelated") == "kept"
    assert _search(read_client, store="default")["cached"] is False
    assert _search(read_client, store="other")["cached"] is False


def test_clear_keeps_the_counts(read_client, admin_key_client, two_stores):
    _search(read_client)
    _search(read_client)

    admin_key_client.post("/api/cache/clear", format="json")

    assert (cache.stats()["hits"], cache.stats()["misses"]) == (1, 1)


def test_clear_bumps_revisions_so_every_worker_misses(admin_key_client, two_stores):
    before = dict(Store.objects.values_list("name", "revision"))

    admin_key_client.post("/api/cache/clear", {"store": "other"}, format="json")
    middle = dict(Store.objects.values_list("name", "revision"))
    admin_key_client.post("/api/cache/clear", format="json")
    after = dict(Store.objects.values_list("name", "revision"))

    assert middle == {"default": before["default"], "other": before["other"] + 1}
    assert after == {name: revision + 1 for name, revision in middle.items()}


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"store": "missing"}, 404, "STORE_NOT_FOUND"),
        ({"store": ""}, 400, "VALIDATION_ERROR"),
        ({"store": ["default"]}, 400, "VALIDATION_ERROR"),
    ],
)
def test_clear_bad_input(admin_key_client, two_stores, payload, status, code):
    response = admin_key_client.post("/api/cache/clear", payload, format="json")

    assert response.status_code == status
    assert response.json()["error"] == code
    assert Store.objects.get(name="default").revision == two_stores[0].revision


@pytest.mark.parametrize("scope", ["read", "write"])
def test_clear_needs_the_admin_scope(api_client_for, two_stores, scope):
    response = api_client_for(scope).post("/api/cache/clear", format="json")

    assert response.status_code == 403
    assert response.json()["error"] == "PERMISSION_DENIED"
    assert "admin" in response.json()["message"]


def test_admin_action_clears_the_selected_stores(admin_client, read_client, two_stores):
    default, other = two_stores
    _search(read_client, store="default")
    _search(read_client, store="other")

    response = admin_client.post(
        "/admin/stores/store/",
        {"action": "clear_search_cache", "_selected_action": [default.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "1 cached answer(s) removed" in response.content.decode()
    assert _search(read_client, store="default")["cached"] is False
    assert _search(read_client, store="other")["cached"] is True


# --- The multi-process check ----------------------------------------------------------


def _warning_ids(messages) -> list[str]:
    return [message.id for message in messages]


def test_check_warns_about_a_per_process_cache_with_several_workers(settings):
    from flamehaven.checks import shared_cache_warnings

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }

    assert _warning_ids(shared_cache_warnings(workers=1)) == []
    [warning] = shared_cache_warnings(workers=4)
    assert warning.id == "flamehaven.W001"
    assert "4 worker processes" in warning.msg
    assert "REDIS_URL" in warning.hint


def test_check_warns_about_a_task_worker_beside_the_web_process(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.TASKS_BACKEND = "database"

    messages = checks.run_checks(tags=[checks.Tags.caches])

    assert "flamehaven.W001" in _warning_ids(messages)


def test_check_reads_the_worker_count_from_the_settings(settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.WORKERS = 1
    quiet = checks.run_checks(tags=[checks.Tags.caches])
    settings.WORKERS = 3
    loud = checks.run_checks(tags=[checks.Tags.caches])

    assert "flamehaven.W001" not in _warning_ids(quiet)
    assert "flamehaven.W001" in _warning_ids(loud)


def test_check_is_quiet_with_a_shared_cache(settings):
    from flamehaven.checks import shared_cache_warnings

    settings.CACHES = {
        alias: {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
        }
        for alias in ("default", "search")
    }
    settings.TASKS_BACKEND = "database"

    assert shared_cache_warnings(workers=8) == []


def test_the_access_line_says_whether_the_answer_was_cached(
    read_client, two_stores, caplog
):
    caplog.set_level("INFO")
    _search(read_client)
    _search(read_client)

    records = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    access = [r for r in records if r["event"] == "request" and r["route"] == "search"]
    assert [(r["cached"], r["store"], r["sources"]) for r in access] == [
        (False, "default", 1),
        (True, "default", 1),
    ]
    # A miss, the expensive case, also has a line of its own.
    assert [r["cached"] for r in records if r["event"] == "search"] == [False]
