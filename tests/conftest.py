"""Shared fixtures: a temporary MEDIA_ROOT per test, clean caches, API clients."""

import os

import pytest
from django.core.cache import caches

# Set REQUIRE_SERVICES=1 (as .ci/run does) to make tests that need PostgreSQL or
# Redis fail instead of skip when the service is not configured.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _service_missing(item) -> str | None:
    from django.conf import settings

    if item.get_closest_marker("postgres"):
        engine = settings.DATABASES["default"]["ENGINE"]
        if "postgresql" not in engine:
            return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    if item.get_closest_marker("redis") and not settings.REDIS_URL:
        return "needs Redis: set REDIS_URL=redis://..."
    return None


def pytest_runtest_setup(item):
    """Tests marked postgres/redis skip without the service, or fail in CI."""
    reason = _service_missing(item)
    if reason and REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but the test {reason}", pytrace=False)
    if reason:
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def media_root(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def upload_temp_dir(tmp_path, settings):
    """Temporary upload files of this test only: a killed test run leaves
    nothing in DATA_DIR, and a test sees no other test's files."""
    folder = tmp_path / "upload-tmp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


@pytest.fixture(autouse=True)
def _no_background_threads(settings):
    """No heartbeat or maintenance threads in the test process; each test's
    rows are rolled back, so a registration must not outlive its test."""
    from stores import embedding, ownership

    settings.BACKGROUND_MAINTENANCE = False
    settings.WORKER_HEARTBEAT_SEC = 0
    ownership.reset()
    embedding.reset()
    yield
    ownership.reset()
    embedding.reset()


@pytest.fixture(autouse=True)
def _health_readings_per_request(settings):
    """/health takes its readings on every request in the test process, so a
    test sees the state it just made; servers started by tests keep the
    background probe (tests.servers.poll_health waits for its next reading)."""
    from monitoring.health import probe

    settings.HEALTH_PROBE_SEC = 0
    probe.reset()


@pytest.fixture(autouse=True)
def _lexical_only(settings):
    """Lexical search unless a test asks for vectors (tests/search/test_hybrid.py
    and the embedding tests do): most tests are about other things, and an
    embedding thread per upload would only slow them down."""
    settings.EMBEDDINGS = "off"


@pytest.fixture(autouse=True)
def _clear_caches():
    from flamehaven import redis_breaker, rowmemo
    from search.cache import reset_local_counts

    for alias in ("default", "search"):
        caches[alias].clear()
    reset_local_counts()
    rowmemo.clear_all()
    redis_breaker.reset()
    yield


def stored_files(media_root) -> list:
    """Every file under MEDIA_ROOT: tests assert nothing is left behind."""
    if not media_root.exists():
        return []
    return [p for p in media_root.rglob("*") if p.is_file()]


@pytest.fixture
def api_client_for(db):
    """An APIClient that sends a fresh API key of the given scope."""
    from rest_framework.test import APIClient

    from accounts.services import api_key_create

    def make(scope: str) -> APIClient:
        _, key = api_key_create(name=f"test-{scope}", scope=scope)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return client

    return make


@pytest.fixture
def read_client(api_client_for):
    return api_client_for("read")


@pytest.fixture
def write_client(api_client_for):
    return api_client_for("write")


@pytest.fixture
def admin_key_client(api_client_for):
    return api_client_for("admin")


METRICS_TEST_TOKEN = "metrics-test-token-0123456789"


@pytest.fixture
def scraper(settings):
    """A client that may read /metrics and /prometheus, with the metrics token:
    no address may without a credential unless METRICS_ALLOWED_CIDRS says so."""
    from django.test import Client

    settings.METRICS_TOKEN = METRICS_TEST_TOKEN
    return Client(headers={"Authorization": f"Bearer {METRICS_TEST_TOKEN}"})


@pytest.fixture
def store(db):
    from stores.services import store_create

    return store_create(name="default", description="test store")


def upload(client, store_name: str, files: dict[str, bytes], field: str = "file"):
    """POST files as multipart to the store's documents endpoint."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    payload = [SimpleUploadedFile(name, content) for name, content in files.items()]
    data = {field: payload[0] if field == "file" and len(payload) == 1 else payload}
    return client.post(f"/api/stores/{store_name}/documents/", data, format="multipart")


GEMINI_TEST_KEY = "test-gemini-key-0123456789"


@pytest.fixture(scope="session")
def _gemini_server():
    from tests.fakes.gemini import GeminiFake

    with GeminiFake(api_key=GEMINI_TEST_KEY) as fake:
        yield fake


@pytest.fixture
def gemini(_gemini_server, settings):
    """Gemini configured, and the real SDK pointed at a fresh HTTP fake."""
    from monitoring.health import gemini_probe
    from stores.backends import gemini as gemini_backend

    _gemini_server.reset()
    gemini_probe.reset()
    settings.GEMINI_API_KEY = GEMINI_TEST_KEY
    settings.GEMINI_BASE_URL = _gemini_server.base_url
    settings.GEMINI_RETRY_ATTEMPTS = 3
    settings.GEMINI_RETRY_DELAY_SEC = 0.01
    settings.GEMINI_TIMEOUT_SEC = 5
    settings.UPLOAD_TIMEOUT_SEC = 2
    gemini_backend._clients.clear()
    yield _gemini_server
    gemini_backend._clients.clear()
    gemini_probe.reset()
