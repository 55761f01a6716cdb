"""Row memos: rows kept in the process, never trusted past a write to their table."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F

from accounts.models import ApiKey
from accounts.services import api_key_create
from flamehaven import redis_breaker, rowmemo
from stores.models import Store
from stores.services import store_create
from tests.conftest import upload

pytestmark = pytest.mark.django_db(transaction=True)


class Loader:
    def __init__(self, value="row"):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


@pytest.fixture
def memo():
    memo = rowmemo.RowMemo("stores_store")
    yield memo
    rowmemo._memos.remove(memo)


def test_a_row_is_loaded_once_while_its_table_is_unchanged(memo):
    load = Loader()

    for _ in range(3):
        with rowmemo.request_scope():
            assert memo.fetch("a", load) == "row"

    assert load.calls == 1


def test_a_write_to_the_table_from_anywhere_reloads(memo):
    store = store_create(name="memo")
    load = Loader()
    with rowmemo.request_scope():
        memo.fetch("a", load)

    # An UPDATE such as another process's revision bump: no signal, no service.
    Store.objects.filter(pk=store.pk).update(revision=F("revision") + 1)
    with rowmemo.request_scope():
        memo.fetch("a", load)

    assert load.calls == 2


def test_outside_a_request_every_fetch_loads(memo):
    load = Loader()

    memo.fetch("a", load)
    memo.fetch("a", load)

    assert load.calls == 2


def test_bypassed_while_redis_is_down(memo, monkeypatch):
    load = Loader()
    monkeypatch.setattr(redis_breaker, "any_down", lambda: True)

    for _ in range(2):
        with rowmemo.request_scope():
            memo.fetch("a", load)

    assert load.calls == 2


def test_rows_expire_after_max_age(memo):
    memo.max_age = 0
    load = Loader()

    for _ in range(2):
        with rowmemo.request_scope():
            memo.fetch("a", load)

    assert load.calls == 2


def test_a_failed_load_is_not_kept(memo):
    def missing():
        raise Store.DoesNotExist

    with rowmemo.request_scope(), pytest.raises(Store.DoesNotExist):
        memo.fetch("gone", missing)
    with rowmemo.request_scope():
        assert memo.fetch("gone", Loader("back")) == "back"


def test_only_tables_cachalot_stamps_can_be_memoised():
    with pytest.raises(ImproperlyConfigured):
        rowmemo.RowMemo("stores_chunk")


def test_a_key_revoked_after_use_is_refused_on_the_next_request(client, store):
    _, key = api_key_create(name="soon-revoked", scope="read")
    headers = {"HTTP_AUTHORIZATION": f"Api-Key {key}"}
    assert client.get("/api/stores/", **headers).status_code == 200

    ApiKey.objects.filter(prefix=key.partition(".")[0]).update(revoked=True)
    response = client.get("/api/stores/", **headers)

    assert response.status_code == 401
    assert response.json()["error"] == "AUTHENTICATION_REQUIRED"


def test_a_store_changed_after_a_search_is_seen_by_the_next(
    read_client, write_client, store
):
    upload(write_client, "default", {"a.txt": b"Bread needs flour and water."})
    read_client.get("/api/search", {"q": "bread"})

    Store.objects.filter(pk=store.pk).update(revision=F("revision") + 1)
    again = read_client.get("/api/search", {"q": "bread"}).json()

    assert again["cached"] is False
