"""/health and Gemini: configured or not; reachable, from a probe it never waits on."""

import time

import pytest

pytestmark = pytest.mark.django_db


def _wait_for_probe(client, deadline_s: float = 5.0) -> dict:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        body = client.get("/health").json()
        if body["gemini"]["reachable"] is not None:
            return body
        time.sleep(0.02)
    raise AssertionError("the Gemini probe never finished")


def test_without_a_key_gemini_is_not_configured(client, settings):
    settings.GEMINI_API_KEY = ""

    body = client.get("/health").json()

    assert body["gemini"] == {"configured": False}
    assert body["status"] == "ok"


def test_a_reachable_gemini_is_probed_at_most_once_a_minute(client, gemini):
    body = _wait_for_probe(client)
    for _ in range(5):
        client.get("/health")

    assert body["gemini"]["configured"] is True
    assert body["gemini"]["reachable"] is True
    assert body["status"] == "ok"
    assert len(gemini.calls(route="stores.list")) == 1


def test_an_unreachable_gemini_makes_health_degraded(client, gemini):
    gemini.fail("stores.list", 503, times=None)

    body = _wait_for_probe(client)

    assert body["gemini"]["reachable"] is False
    assert body["status"] == "degraded"


def test_health_does_not_wait_for_a_slow_gemini(client, gemini):
    gemini.delay("stores.list", 3.0)

    response = client.get("/health")

    # Answered while the probe is still waiting on Gemini.
    assert response.status_code == 200
    assert response.json()["gemini"]["reachable"] is None
