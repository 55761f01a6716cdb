from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from accounts.authentication import ApiKeyAuthentication, ApiKeyUser
from accounts.models import ApiKey, Scope

factory = APIRequestFactory()


class ThingsView(APIView):
    """GET needs read, POST needs write: the defaults."""

    def get(self, request):
        return Response({"user": str(request.user)})

    def post(self, request):
        return Response({"ok": True})


class CacheClearView(APIView):
    required_scope = "admin"

    def post(self, request):
        return Response({"cleared": True})


class MixedView(APIView):
    required_scopes = {"POST": "admin"}

    def get(self, request):
        return Response({})

    def post(self, request):
        return Response({})


def call(view, method="get", key=None, header=None, user=None):
    headers = {}
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = f"Api-Key {key}"
    if header is not None:
        headers["HTTP_AUTHORIZATION"] = header
    request = getattr(factory, method)("/x", **headers)
    if user is not None:
        # A logged-in browser: SessionAuthentication finds request._request.user.
        request.user = user
        request._dont_enforce_csrf_checks = True
    return view.as_view()(request)


def assert_unauthenticated(response):
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.data["error"] == "AUTHENTICATION_REQUIRED"


@pytest.mark.django_db
def test_no_credentials_is_401_with_challenge():
    assert_unauthenticated(call(ThingsView))


@pytest.mark.django_db
def test_another_scheme_is_left_to_other_classes():
    # Not ours, so no key lookup; with no session either it is still a 401.
    assert_unauthenticated(call(ThingsView, header="Bearer abc.def"))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "Api-Key",
        "Api-Key a b",
        "Api-Key nodot",
        "Api-Key abcdefgh.wrongsecret",
        "Api-Key " + "x" * 500,
    ],
)
def test_malformed_or_unknown_key_is_401(make_key, header):
    make_key()
    response = call(ThingsView, header=header)
    assert_unauthenticated(response)
    assert response.data["message"] == "Invalid API key."


@pytest.mark.django_db
def test_wrong_secret_for_a_real_prefix_is_401_and_not_echoed(make_key):
    api_key, key = make_key()
    forged = f"{api_key.prefix}.{'A' * 32}"
    response = call(ThingsView, key=forged)
    assert_unauthenticated(response)
    assert forged not in str(response.data)


@pytest.mark.django_db
def test_scheme_is_case_insensitive(make_key):
    _, key = make_key()
    assert call(ThingsView, header=f"api-key {key}").status_code == 200
    assert call(ThingsView, header=f"API-KEY {key}").status_code == 200


@pytest.mark.django_db
def test_revoked_key_is_401(make_key):
    api_key, key = make_key()
    api_key.revoked = True
    api_key.save()
    assert_unauthenticated(call(ThingsView, key=key))


@pytest.mark.django_db
def test_expired_key_is_401(make_key):
    _, key = make_key(expiry_date=timezone.now() - timedelta(seconds=1))
    assert_unauthenticated(call(ThingsView, key=key))


@pytest.mark.django_db
def test_unexpired_key_works(make_key):
    _, key = make_key(expiry_date=timezone.now() + timedelta(days=1))
    assert call(ThingsView, key=key).status_code == 200


@pytest.mark.django_db
def test_read_key_can_read_but_not_write(make_key):
    api_key, key = make_key(Scope.READ)

    response = call(ThingsView, key=key)
    assert response.status_code == 200
    assert response.data == {"user": f"api-key:{api_key.prefix}"}

    response = call(ThingsView, "post", key=key)
    assert response.status_code == 403
    assert response.data["error"] == "PERMISSION_DENIED"
    assert response.data["message"] == (
        "This endpoint needs the 'write' scope; your key has 'read'."
    )


@pytest.mark.django_db
def test_write_key_can_write_but_not_admin(make_key):
    _, key = make_key(Scope.WRITE)
    assert call(ThingsView, "post", key=key).status_code == 200
    assert call(CacheClearView, "post", key=key).status_code == 403
    assert call(MixedView, "post", key=key).status_code == 403
    assert call(MixedView, key=key).status_code == 200


@pytest.mark.django_db
def test_admin_key_can_do_everything(make_key):
    _, key = make_key(Scope.ADMIN)
    assert call(ThingsView, "post", key=key).status_code == 200
    assert call(CacheClearView, "post", key=key).status_code == 200
    assert call(MixedView, "post", key=key).status_code == 200


@pytest.mark.django_db
def test_staff_session_counts_as_admin():
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    assert call(CacheClearView, "post", user=staff).status_code == 200


@pytest.mark.django_db
def test_inactive_staff_session_is_not_admin():
    staff = User.objects.create_user("gone", password="x", is_staff=True)
    staff.is_active = False
    request = factory.post("/x")
    force_authenticate(request, user=staff)
    assert CacheClearView.as_view()(request).status_code == 403


@pytest.mark.django_db
def test_non_staff_session_is_403():
    user = User.objects.create_user("alice", password="x")
    response = call(ThingsView, user=user)
    assert response.status_code == 403
    assert response.data["error"] == "PERMISSION_DENIED"


@pytest.mark.django_db
def test_success_returns_key_user_and_records_use(make_key):
    api_key, key = make_key(Scope.WRITE)
    request = factory.get("/x", HTTP_AUTHORIZATION=f"Api-Key {key}")

    user, auth = ApiKeyAuthentication().authenticate(request)

    assert auth == api_key
    assert isinstance(user, ApiKeyUser)
    assert user.is_authenticated and not user.is_anonymous and not user.is_staff
    assert user.pk is None and user.scope == "write"
    assert str(user) == f"api-key:{api_key.prefix}"
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is not None
