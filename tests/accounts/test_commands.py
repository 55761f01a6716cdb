from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIRequestFactory

from accounts.authentication import ApiKeyAuthentication
from accounts.models import ApiKey


@pytest.mark.django_db
def test_create_api_key_prints_a_working_key():
    stdout, stderr = StringIO(), StringIO()
    call_command("create_api_key", "ci", scope="write", stdout=stdout, stderr=stderr)

    key = stdout.getvalue().strip().splitlines()[-1]
    request = APIRequestFactory().get("/x", HTTP_AUTHORIZATION=f"Api-Key {key}")
    _, api_key = ApiKeyAuthentication().authenticate(request)
    assert (api_key.name, api_key.scope) == ("ci", "write")
    assert "'ci'" in stderr.getvalue() and "write" in stderr.getvalue()
    assert key not in stderr.getvalue()


@pytest.mark.django_db
def test_create_api_key_defaults_to_read_and_can_expire():
    call_command(
        "create_api_key",
        "bot",
        "--expires-days",
        "7",
        stdout=StringIO(),
        stderr=StringIO(),
    )
    api_key = ApiKey.objects.get()
    assert api_key.scope == "read"
    left = api_key.expiry_date - timezone.now()
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7)


@pytest.mark.django_db
def test_create_api_key_rejects_an_unknown_scope():
    with pytest.raises(CommandError):
        call_command("create_api_key", "ci", "--scope", "root", stderr=StringIO())
    assert not ApiKey.objects.exists()
