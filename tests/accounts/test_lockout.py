"""Password logins lock after LOGIN_FAILURE_LIMIT failures for a username at one
address (django-axes, accounts.lockout); API keys are never counted."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from prometheus_client import REGISTRY

from tests.flamehaven.test_errors import assert_error
from tests.flamehaven.test_logging import captured  # noqa: F401  (a fixture)
from tests.servers import manage

PASSWORD = "right-horse-battery-staple"
WRONG = "wrong-password-guess"
ATTACKER = "192.0.2.66"
BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"
LOGIN_PAGES = ["/admin/login/", "/api-auth/login/"]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Dozens of logins per test: the real hasher takes most of a second each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        "staff", password=PASSWORD, is_staff=True
    )


def log_in(
    password: str,
    *,
    address: str = ATTACKER,
    username: str = "staff",
    path: str = "/admin/login/",
    accept: str = BROWSER,
    **extra,
):
    """One login POST from a fresh client (no session), as a browser sends it."""
    return Client(REMOTE_ADDR=address).post(
        path,
        {"username": username, "password": password, "next": "/admin/"},
        HTTP_ACCEPT=accept,
        **extra,
    )


def assert_logged_in(response) -> None:
    assert response.status_code == 302, response.content[:300]
    assert response["Location"] == "/admin/"


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    assert b"Too many failed logins" in response.content
    assert response["Retry-After"] == str(15 * 60)


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_the_defaults(settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    cool_off = settings.AXES_COOLOFF_TIME
    assert cool_off == timedelta(minutes=15)
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"


@pytest.mark.django_db
def test_thirty_wrong_passwords_then_the_right_one_is_refused(staff):
    answers = [log_in(WRONG) for _ in range(30)]
    right = log_in(PASSWORD)

    # Four failures show the login form again; the fifth locks.
    assert [a.status_code for a in answers[:4]] == [200] * 4
    for answer in answers[4:]:
        assert_locked_out(answer)
    assert_locked_out(right)
    assert "sessionid" not in right.cookies


@pytest.mark.django_db
@pytest.mark.parametrize("path", LOGIN_PAGES)
def test_the_limit_is_per_username_and_address(staff, django_user_model, path):
    django_user_model.objects.create_user("other", password=PASSWORD, is_staff=True)
    for _ in range(5):
        log_in(WRONG, path=path)
    assert_locked_out(log_in(PASSWORD, path=path))

    # The same user from elsewhere, and another user from the same address,
    # still log in: nobody can lock a staff member out from their own address.
    assert log_in(PASSWORD, address="198.51.100.7", path=path).status_code == 302
    assert log_in(PASSWORD, username="other", path=path).status_code == 302


@pytest.mark.django_db
def test_the_lock_ends_after_the_cool_off(staff):
    for _ in range(5):
        log_in(WRONG)
    assert_locked_out(log_in(PASSWORD))

    # As if the cool-off (15 minutes after the last attempt) had passed.
    last = AccessAttempt.objects.get().attempt_time
    AccessAttempt.objects.update(attempt_time=last - timedelta(minutes=15, seconds=1))

    assert_logged_in(log_in(PASSWORD))


@pytest.mark.django_db
def test_a_success_clears_the_count(staff):
    for _ in range(4):
        log_in(WRONG)
    assert_logged_in(log_in(PASSWORD))

    assert [log_in(WRONG).status_code for _ in range(4)] == [200] * 4
    assert_logged_in(log_in(PASSWORD))


@pytest.mark.django_db
def test_api_clients_get_the_error_shape(staff):
    for _ in range(4):
        log_in(WRONG)

    response = log_in(WRONG, accept="application/json")

    body = assert_error(response, 429, "LOGIN_LOCKED_OUT")
    assert response["Retry-After"] == "900"
    assert body["details"] == {"failure_limit": 5, "cooloff_seconds": 900}
    assert WRONG not in response.content.decode()


@pytest.mark.django_db
def test_the_limit_and_cool_off_come_from_settings(staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)

    assert log_in(WRONG).status_code == 200
    response = log_in(WRONG)

    assert response.status_code == 429
    assert response["Retry-After"] == "60"


@pytest.mark.django_db
def test_behind_a_trusted_proxy_the_forwarded_client_is_locked(staff, settings):
    settings.TRUSTED_PROXIES = "10.0.0.0/8"
    proxy = "10.0.0.2"
    for _ in range(5):
        log_in(WRONG, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert_locked_out(
        log_in(PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.9")
    )
    # Another client behind the same proxy is another address.
    assert_logged_in(
        log_in(PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR="203.0.113.10")
    )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {
        "203.0.113.9"
    }


@pytest.mark.django_db
def test_failures_and_lockouts_are_counted_and_logged_without_the_password(
    staff,
    captured,  # noqa: F811
):
    failures, lockouts = sample("login_failures_total"), sample("login_lockouts_total")

    for _ in range(7):  # five failures, then two attempts refused while locked
        log_in(WRONG)

    assert sample("login_failures_total") == failures + 7
    assert sample("login_lockouts_total") == lockouts + 1
    records = captured.records()
    failed = [r for r in records if r["event"] == "login_failed"]
    assert [r["locked_out"] for r in failed] == [False] * 4 + [True] * 3
    assert {(r["username"], r["client"], r["path"]) for r in failed} == {
        ("staff", ATTACKER, "/admin/login/")
    }
    [locked] = [r for r in records if r["event"] == "login_locked_out"]
    assert locked["level"] == "warning"
    assert (locked["username"], locked["client"]) == ("staff", ATTACKER)
    assert (locked["failure_limit"], locked["cooloff_seconds"]) == (5, 900)
    access = [r for r in records if r["event"] == "request"]
    assert [r["status"] for r in access] == [200] * 4 + [429] * 3
    assert access[-1]["error"] == "LOGIN_LOCKED_OUT"
    assert WRONG not in captured.text


@pytest.mark.django_db
def test_api_keys_are_never_counted_as_failed_logins(staff, make_key):
    _, reader = make_key("read")
    failures = sample("login_failures_total")
    bad = ["Api-Key nope.nope", f"Api-Key {reader}x", "Api-Key " + "x" * 300]

    statuses = {
        Client(REMOTE_ADDR=ATTACKER).get(path, HTTP_AUTHORIZATION=header).status_code
        for header in bad
        for path in ("/api/stores/", "/api/search?q=x", "/prometheus")
        for _ in range(10)
    }

    assert statuses == {401, 403}
    assert AccessAttempt.objects.count() == 0
    assert sample("login_failures_total") == failures
    # And the staff user, at that address, still logs in.
    assert_logged_in(log_in(PASSWORD))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LOGIN_FAILURE_LIMIT": "3", "LOGIN_COOLOFF_MINUTES": "2.5"}, "3 0:02:30"),
        ({"LOGIN_FAILURE_LIMIT": "0"}, "ImproperlyConfigured"),
        ({"LOGIN_COOLOFF_MINUTES": "0"}, "ImproperlyConfigured"),
    ],
)
def test_the_environment_sets_the_limit_and_cool_off(tmp_path, env, expected):
    show = (
        "from django.conf import settings; "
        "print(settings.AXES_FAILURE_LIMIT, settings.AXES_COOLOFF_TIME)"
    )
    try:
        out = manage({"DATA_DIR": str(tmp_path), **env}, "shell", "-c", show)
    except RuntimeError as exc:
        out = str(exc)
    assert expected in out
