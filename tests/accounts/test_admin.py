import pytest

from accounts.models import ApiKey
from accounts.services import api_key_create


@pytest.mark.django_db
def test_changelist_renders_with_scope(admin_client):
    api_key_create(name="ci", scope="write")
    response = admin_client.get("/admin/accounts/apikey/")
    assert response.status_code == 200
    assert b"ci" in response.content
    assert b"Scope" in response.content


@pytest.mark.django_db
def test_adding_a_key_shows_it_once(admin_client):
    response = admin_client.post(
        "/admin/accounts/apikey/add/",
        {"name": "dashboards", "scope": "admin"},
        follow=True,
    )
    assert response.status_code == 200
    api_key = ApiKey.objects.get()
    assert api_key.scope == "admin"
    shown = [str(m) for m in response.context["messages"]]
    assert any(api_key.prefix + "." in m for m in shown)


@pytest.mark.django_db
def test_revoke_action(admin_client):
    api_key, _ = api_key_create(name="old", scope="read")
    response = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke_selected", "_selected_action": [api_key.pk]},
    )
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked
