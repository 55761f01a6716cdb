from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import ApiKey, Scope, scope_allows
from accounts.services import api_key_create
from flamehaven.errors import ValidationFailed


@pytest.mark.parametrize(
    ("granted", "required", "allowed"),
    [
        ("read", "read", True),
        ("read", "write", False),
        ("write", "read", True),
        ("write", "admin", False),
        ("admin", "write", True),
        (None, "read", False),
        ("root", "read", False),
        ("admin", "bogus", False),
    ],
)
def test_scope_allows_orders_read_write_admin(granted, required, allowed):
    assert scope_allows(granted, required) is allowed


@pytest.mark.django_db
def test_create_returns_plaintext_once_and_stores_only_a_hash():
    api_key, key = api_key_create(name="ci", scope=Scope.WRITE)

    assert api_key.scope == "write"
    assert key.startswith(api_key.prefix + ".")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiKey._meta.db_table}")
        rows = cursor.fetchall()
    assert len(rows) == 1
    assert not any(key in str(value) for value in rows[0])
    assert ApiKey.objects.get_from_key(key) == api_key


@pytest.mark.django_db
def test_scope_defaults_to_read():
    assert ApiKey(name="x").scope == Scope.READ


@pytest.mark.django_db
def test_create_rejects_an_unknown_scope():
    with pytest.raises(ValidationFailed) as exc_info:
        api_key_create(name="ci", scope="root")
    assert "scope" in exc_info.value.details
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_create_rejects_a_blank_name():
    with pytest.raises(ValidationFailed) as exc_info:
        api_key_create(name="", scope=Scope.READ)
    assert "name" in exc_info.value.details
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_touch_writes_at_most_once_a_minute(make_key):
    api_key, _ = make_key()
    api_key.touch()
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None

    api_key.touch()
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first

    api_key.last_used_at = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=api_key.last_used_at)
    api_key.touch()
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first
