"""The database unreachable: 503 DATABASE_UNAVAILABLE with Retry-After, one log
line per outage, cached searches still answered, recovery without a restart.

In-process tests give this thread's ``default`` connection settings that cannot
connect (a SQLite file in a folder that does not exist, or a closed PostgreSQL
port), so every failure is the driver's own. The server tests cut a gunicorn
server off PostgreSQL mid-traffic, through a TCP proxy or (CI only) by stopping
PostgreSQL itself.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import secrets
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from django.db import IntegrityError, OperationalError, connections, transaction
from django.db import utils as db_utils
from django.db.utils import load_backend
from django.test import Client
from prometheus_client import REGISTRY

from flamehaven import database_outage
from flamehaven.database_outage import is_connection_failure
from tests.conftest import upload
from tests.servers import (
    ALLOW_POSTGRES_RESTART,
    HIGH_RATE_LIMITS,
    ServerProcess,
    TcpProxy,
    closed_port,
    create_api_key,
    manage,
    pg_ctlcluster,
    prepare_database,
    scratch_postgres,
    server_env,
    wait_for_postgresql,
)

ERROR_KEYS = {"error", "message", "status_code", "details", "request_id", "timestamp"}


@pytest.fixture(autouse=True)
def _no_outage_left_over():
    database_outage.outage.reset()
    yield
    database_outage.outage.reset()


# --- Which errors mean "unreachable" --------------------------------------------


def _raised(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except BaseException as exc:  # whatever it is, the test looks at it
        return exc
    raise AssertionError("nothing was raised")


def _wrapped(driver_error: BaseException, django_class: type) -> BaseException:
    """``driver_error`` as Django raises it: its own class, ``from`` the driver's."""

    def reraise():
        try:
            raise driver_error
        except type(driver_error) as exc:
            raise django_class(*exc.args) from exc

    return _raised(reraise)


def _refused_psycopg_connect() -> BaseException:
    with closed_port() as port:
        return _raised(
            lambda: psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", connect_timeout=2
            )
        )


def _sqlite_cannot_open(tmp_path: Path) -> BaseException:
    return _raised(lambda: sqlite3.connect(tmp_path / "gone" / "db.sqlite3"))


def _sqlite_locked(tmp_path: Path) -> BaseException:
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        return _raised(lambda: other.execute("INSERT INTO t VALUES (1)"))
    finally:
        other.close()
        holder.close()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda tmp: _refused_psycopg_connect(), id="pg-refused"),
        pytest.param(
            lambda tmp: psycopg.OperationalError(
                "consuming input failed: server closed the connection unexpectedly"
            ),
            id="pg-connection-lost",
        ),
        pytest.param(
            lambda tmp: psycopg.OperationalError("the connection is closed"),
            id="pg-closed",
        ),
        pytest.param(lambda tmp: psycopg.errors.AdminShutdown(), id="pg-57P01"),
        pytest.param(lambda tmp: psycopg.errors.CannotConnectNow(), id="pg-57P03"),
        pytest.param(lambda tmp: psycopg.errors.TooManyConnections(), id="pg-53300"),
        pytest.param(lambda tmp: psycopg.errors.ConnectionFailure(), id="pg-08006"),
        pytest.param(_sqlite_cannot_open, id="sqlite-cannot-open"),
    ],
)
@pytest.mark.parametrize("django_class", ["OperationalError", "InterfaceError"])
def test_connection_failures_are_unavailable(tmp_path, make, django_class):
    driver_error = make(tmp_path)
    wrapped = _wrapped(driver_error, getattr(db_utils, django_class))

    assert is_connection_failure(driver_error)
    assert is_connection_failure(wrapped)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda tmp: psycopg.errors.UniqueViolation(), id="pg-integrity"),
        pytest.param(
            lambda tmp: psycopg.errors.StringDataRightTruncation(), id="pg-data"
        ),
        pytest.param(lambda tmp: psycopg.errors.SyntaxError(), id="pg-programming"),
        pytest.param(lambda tmp: psycopg.errors.QueryCanceled(), id="pg-timeout"),
        pytest.param(lambda tmp: psycopg.errors.DeadlockDetected(), id="pg-deadlock"),
        pytest.param(
            lambda tmp: psycopg.errors.SerializationFailure(), id="pg-serialization"
        ),
        pytest.param(lambda tmp: psycopg.errors.LockNotAvailable(), id="pg-lock"),
        pytest.param(
            lambda tmp: psycopg.InterfaceError("the cursor is closed"),
            id="pg-closed-cursor",
        ),
        pytest.param(_sqlite_locked, id="sqlite-locked"),
        pytest.param(lambda tmp: RuntimeError("boom"), id="not-a-database-error"),
    ],
)
def test_other_database_errors_are_not_outages(tmp_path, make):
    driver_error = make(tmp_path)
    wrapped = _wrapped(driver_error, db_utils.OperationalError)

    assert not is_connection_failure(driver_error)
    assert not is_connection_failure(wrapped)


@pytest.mark.django_db
def test_a_real_integrity_error_is_not_an_outage(store):
    from stores.models import Store

    with transaction.atomic():
        error = _raised(lambda: Store.objects.create(name=store.name))

    assert isinstance(error, IntegrityError)
    assert not is_connection_failure(error)


# --- Requests while this process cannot reach the database -----------------------


def _wrapper(settings_dict: dict):
    backend = load_backend(settings_dict["ENGINE"])
    return backend.DatabaseWrapper(settings_dict, alias="default")


class DatabaseSwitch:
    """Gives this thread's ``default`` connection settings that cannot connect
    (``cut``), then a new connection to the real database (``restore``), as a
    server that went away and came back would look to Django."""

    def __init__(self, tmp_path: Path, dead_port: int) -> None:
        self.original = connections["default"]
        real = copy.deepcopy(self.original.settings_dict)
        self._real = real
        self._dead = copy.deepcopy(real)
        if self.original.vendor == "sqlite":
            self._dead["NAME"] = str(tmp_path / "gone" / "db.sqlite3")
        else:
            self._dead.update({"HOST": "127.0.0.1", "PORT": str(dead_port)})
        self._made: list = []

    def _use(self, settings_dict: dict) -> None:
        wrapper = _wrapper(copy.deepcopy(settings_dict))
        self._made.append(wrapper)
        connections["default"] = wrapper

    def cut(self) -> None:
        self._use(self._dead)

    def restore(self) -> None:
        self._use(self._real)

    def close(self) -> None:
        connections["default"] = self.original
        for wrapper in self._made:
            with contextlib.suppress(Exception):
                wrapper.close()


@pytest.fixture
def database_switch(tmp_path):
    with closed_port() as port:
        switch = DatabaseSwitch(tmp_path, port)
        try:
            yield switch
        finally:
            switch.close()


def _events(caplog, name: str) -> list[dict]:
    return [
        {**r.msg, "level": r.levelname}
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("event") == name
    ]


def _tracebacks(caplog) -> list:
    """Records with a traceback, or at error level: an outage logs neither."""
    return [
        r
        for r in caplog.records
        if r.exc_info
        or r.levelname in ("ERROR", "CRITICAL")
        or (isinstance(r.msg, dict) and r.msg.get("exc_info"))
    ]


def _refused_total() -> float:
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "errors"
        for sample in family.samples
        if sample.name == "errors_total"
        and sample.labels.get("type") == "DATABASE_UNAVAILABLE"
    )


def assert_unavailable(response) -> dict:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response["Retry-After"] == str(database_outage.RETRY_AFTER_SEC)
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["error"] == "DATABASE_UNAVAILABLE"
    assert body["status_code"] == 503
    assert body["details"] == {}
    assert body["request_id"] == response["X-Request-ID"]
    return body


@pytest.fixture
def cached_search(store, write_client, read_client) -> dict:
    """A search answered twice, so the second came from the search cache."""
    assert upload(write_client, "default", {"b.txt": b"Bake bread."}).status_code == 201
    query = {"query": "bread", "store_name": "default"}
    read_client.post("/api/search", query, format="json")
    response = read_client.post("/api/search", query, format="json")
    assert response.json()["cached"] is True
    return query


@pytest.mark.django_db(transaction=True)
def test_api_and_plain_views_answer_503_and_the_outage_is_logged_once(
    database_switch, read_client, cached_search, caplog
):
    plain = Client(raise_request_exception=False)
    plain.cookies["sessionid"] = "a" * 32  # the admin reads the session table
    refused_before = _refused_total()

    database_switch.cut()
    api = [
        read_client.get("/api/stores/"),
        read_client.get("/api/stores/default/documents/"),
        read_client.post(
            "/api/search", {"query": "flour", "store_name": "default"}, format="json"
        ),
    ]
    admin = plain.get("/admin/")
    cached = read_client.post("/api/search", cached_search, format="json")

    for response in [*api, admin]:
        assert_unavailable(response)
    assert (cached.status_code, cached.json()["cached"]) == (200, True)
    assert _refused_total() - refused_before == 4
    [down] = _events(caplog, "database_unavailable")
    assert (down["level"], down["error"]) == ("WARNING", "OperationalError")
    assert down["retry_after_s"] == database_outage.RETRY_AFTER_SEC
    assert _tracebacks(caplog) == []
    assert _events(caplog, "database_available") == []

    database_switch.restore()
    back = [read_client.get("/api/stores/"), plain.get("/admin/")]

    assert [r.status_code for r in back] == [200, 302]
    [up] = _events(caplog, "database_available")
    assert up["refused"] == 4
    assert len(_events(caplog, "database_unavailable")) == 1


@pytest.mark.django_db(transaction=True)
def test_health_alone_notices_the_outage_and_the_recovery(database_switch, caplog):
    database_switch.cut()
    down = [Client().get("/health") for _ in range(3)]
    database_switch.restore()
    up = Client().get("/health")

    assert {(r.status_code, r.json()["status"]) for r in down} == {(503, "unhealthy")}
    assert (up.status_code, up.json()["database"]["ok"]) == (200, True)
    assert len(_events(caplog, "database_unavailable")) == 1
    [available] = _events(caplog, "database_available")
    assert available["refused"] == 0  # a probe is answered, not refused


def _seen_by_another_thread(name: str) -> bool:
    """Whether a new thread, with its own connection, finds the store (through
    cachalot's shared cache, which the query below is cached in)."""
    from stores.models import Store

    found: list[bool] = []

    def look() -> None:
        try:
            found.append(Store.objects.filter(name=name).exists())
        finally:
            connections.close_all()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    return found[0]


@pytest.mark.django_db(transaction=True)
def test_writes_after_an_outage_reach_the_other_threads(database_switch, write_client):
    """A transaction that could not begin leaves django-cachalot's per-thread
    stack one level deep (noripyt/django-cachalot#278): that thread's later
    writes would never invalidate the shared cache, and the others would read
    old rows. Each request starts from an empty stack again."""
    assert _seen_by_another_thread("later") is False  # now cached as "no"

    database_switch.cut()
    with pytest.raises(OperationalError), transaction.atomic():
        pass  # a service's write, begun while the database is gone
    database_switch.restore()
    created = write_client.post("/api/stores/", {"name": "later"}, format="json")

    assert created.status_code == 201
    assert _seen_by_another_thread("later") is True


@pytest.mark.django_db
@pytest.mark.urls("tests.crash_urls")
def test_any_other_error_is_still_a_500_with_its_traceback(caplog):
    response = Client(raise_request_exception=False).get("/crash/plain")

    assert response.status_code == 500
    assert response.json()["error"] == "INTERNAL_ERROR"
    assert "Retry-After" not in response
    assert _events(caplog, "database_unavailable") == []
    assert len(_tracebacks(caplog)) == 1


# --- A gunicorn server cut off PostgreSQL mid-traffic -----------------------------

REQUESTS_PER_SEC = 30
ADMIN_SESSION = {"sessionid": "b" * 32}  # an unknown session: a table read


@dataclass
class Answer:
    kind: str
    sent: float
    received: float
    status: int
    code: str | None
    retry_after: str | None
    cached: bool | None


def _send(session: requests.Session, base: str, kind: str, key: str) -> Answer:
    headers = {"Authorization": f"Api-Key {key}"}
    sent = time.monotonic()
    if kind == "cached-search":
        response = session.post(
            f"{base}/api/search",
            json={"query": "bread", "store_name": "default"},
            headers=headers,
            timeout=30,
        )
    elif kind == "search":
        response = session.post(
            f"{base}/api/search",
            json={"query": f"flour {secrets.token_hex(3)}", "store_name": "default"},
            headers=headers,
            timeout=30,
        )
    elif kind == "stores":
        response = session.get(f"{base}/api/stores/", headers=headers, timeout=30)
    elif kind == "documents":
        response = session.get(
            f"{base}/api/stores/default/documents/", headers=headers, timeout=30
        )
    elif kind == "create-store":
        response = session.post(
            f"{base}/api/stores/",
            json={"name": f"s-{secrets.token_hex(6)}"},
            headers=headers,
            timeout=30,
        )
    elif kind == "admin":
        response = session.get(
            f"{base}/admin/", cookies=ADMIN_SESSION, allow_redirects=False, timeout=30
        )
    else:
        raise ValueError(kind)
    body = _json_or_none(response)
    return Answer(
        kind=kind,
        sent=sent,
        received=time.monotonic(),
        status=response.status_code,
        code=(body or {}).get("error"),
        retry_after=response.headers.get("Retry-After"),
        cached=(body or {}).get("cached"),
    )


def _json_or_none(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


KINDS = ["cached-search", "search", "stores", "documents", "create-store", "admin"]
WRITE_KINDS = {"create-store"}


class Traffic:
    """REQUESTS_PER_SEC mixed requests from a pool of threads, until stopped.

    Writes can be paused (store lists are sent instead): a write to the stores
    table makes every process load the store row again (flamehaven.rowmemo), so
    a cache-hit search needs no SQL only once a read has followed the last write.
    """

    def __init__(self, base: str, key: str) -> None:
        self.base, self.key = base, key
        self.answers: list[Answer] = []
        self.failures: list[BaseException] = []
        self._writes = threading.Event()
        self._writes.set()
        self._writes_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=16)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._pool.shutdown(wait=True)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def pause_writes(self, timeout: float = 10) -> None:
        """Returns once no write is in flight and a cache-hit search sent after
        the last one was answered (from the cache, with no SQL)."""
        self._writes.clear()
        deadline = time.monotonic() + timeout
        while self._writes_in_flight:
            assert time.monotonic() < deadline, "writes still in flight"
            time.sleep(0.01)
        quiet_since = time.monotonic()
        while not any(
            a.kind == "cached-search" and a.sent > quiet_since and a.cached
            for a in list(self.answers)
        ):
            assert time.monotonic() < deadline, "no cache-hit search answered"
            time.sleep(0.01)

    def resume_writes(self) -> None:
        self._writes.set()

    def _one(self, kind: str) -> None:
        try:
            self.answers.append(_send(self._session(), self.base, kind, self.key))
        except BaseException as exc:  # the test reports it
            self.failures.append(exc)
        finally:
            if kind in WRITE_KINDS:
                with self._lock:
                    self._writes_in_flight -= 1

    def _run(self) -> None:
        started = time.monotonic()
        sent = 0
        while not self._stop.is_set():
            due = started + sent / REQUESTS_PER_SEC
            time.sleep(max(0.0, due - time.monotonic()))
            kind = KINDS[sent % len(KINDS)]
            with self._lock:
                if kind in WRITE_KINDS and not self._writes.is_set():
                    kind = "stores"
                elif kind in WRITE_KINDS:
                    self._writes_in_flight += 1
            self._pool.submit(self._one, kind)
            sent += 1


def _records(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def _errors_total(base: str, key: str, code: str) -> float:
    text = requests.get(
        f"{base}/prometheus", headers={"Authorization": f"Api-Key {key}"}, timeout=10
    ).text
    pattern = re.compile(rf'^errors_total\{{[^}}]*type="{code}"[^}}]*\}} (\S+)$', re.M)
    return sum(float(value) for value in pattern.findall(text))


def _production_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    from django.conf import settings

    return server_env(
        tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        ENVIRONMENT="production",
        SECURE_SSL_REDIRECT="false",
        STATIC_ROOT=str(tmp_path / "static"),
        **HIGH_RATE_LIMITS,
    )


def _seed(base: str, key: str) -> None:
    """A store with a document, and the search the traffic repeats, cached."""
    headers = {"Authorization": f"Api-Key {key}"}
    requests.post(
        f"{base}/api/stores/", json={"name": "default"}, headers=headers, timeout=10
    ).raise_for_status()
    requests.post(
        f"{base}/api/stores/default/documents/",
        files={"file": ("b.txt", b"Bake bread. Knead dough with flour.")},
        headers=headers,
        timeout=30,
    ).raise_for_status()
    for _ in range(2):
        search = requests.post(
            f"{base}/api/search",
            json={"query": "bread", "store_name": "default"},
            headers=headers,
            timeout=10,
        )
    assert search.json()["cached"] is True


def _cut_mid_traffic(
    service: ServerProcess,
    key: str,
    *,
    cut: Callable[[], None],
    restore: Callable[[], None],
    down_for: float,
) -> tuple[list[Answer], float, float]:
    with Traffic(service.base_url, key) as traffic:
        time.sleep(2)
        traffic.pause_writes()
        cut_at = time.monotonic()
        cut()
        traffic.resume_writes()  # they fail now, before writing anything
        time.sleep(down_for)
        restore()
        restored_at = time.monotonic()
        time.sleep(4)
    assert traffic.failures == []
    return traffic.answers, cut_at, restored_at


def _assert_outage_handled(
    service: ServerProcess,
    key: str,
    answers: list[Answer],
    cut_at: float,
    restored_at: float,
) -> None:
    ok = {"admin": {302}, "create-store": {201}}
    wrong = [
        a
        for a in answers
        if a.status not in ok.get(a.kind, {200})
        and not (
            a.status == 503
            and a.code == "DATABASE_UNAVAILABLE"
            and a.retry_after == str(database_outage.RETRY_AFTER_SEC)
        )
    ]
    assert wrong == []
    refused = [a for a in answers if a.status == 503]
    assert {a.kind for a in refused} >= {"stores", "search", "admin"}, refused
    during = [a for a in answers if a.sent > cut_at and a.received < restored_at]
    assert during, "no request was sent while the database was gone"
    cached = [a for a in during if a.kind == "cached-search"]
    assert cached and {(a.status, a.cached) for a in cached} == {(200, True)}
    # Back without a restart: everything sent a moment after is answered.
    after = [a for a in answers if a.sent > restored_at + 1]
    assert len(after) > 2 * REQUESTS_PER_SEC
    assert {a.status for a in after} <= {200, 201, 302}
    assert _errors_total(service.base_url, key, "DATABASE_UNAVAILABLE") == len(refused)

    log = service.log_text()
    records = _records(log)
    unavailable = [r for r in records if r["event"] == "database_unavailable"]
    available = [r for r in records if r["event"] == "database_available"]
    assert len(unavailable) == 1, unavailable
    assert unavailable[0]["level"] == "warning"
    assert len(available) == 1, available
    assert available[0]["refused"] == len(refused)
    assert "Traceback" not in log
    assert [r for r in records if "exception" in r or r["level"] == "error"] == []
    assert service.process is not None and service.process.poll() is None


@pytest.fixture
def scratch_database():
    """A PostgreSQL database of the test's own, dropped afterwards."""
    with scratch_postgres("fh_outage") as database:
        yield database


@pytest.mark.postgres
@pytest.mark.slow
def test_a_server_cut_off_postgresql_mid_traffic_answers_503_then_recovers(
    tmp_path, scratch_database
):
    address, name = scratch_database
    proxy = TcpProxy(address["host"], address["port"]).start()
    env = _production_env(
        tmp_path, f"postgres://{address['user']}@127.0.0.1:{proxy.port}/{name}"
    )
    try:
        prepare_database(env)
        manage(env, "collectstatic", "--noinput", "-v0")
        key = create_api_key(env, "admin")
        with ServerProcess(env) as service:
            _seed(service.base_url, key)
            answers, cut_at, restored_at = _cut_mid_traffic(
                service, key, cut=proxy.stop, restore=proxy.start, down_for=5
            )
            _assert_outage_handled(service, key, answers, cut_at, restored_at)
    finally:
        proxy.stop()


# --- The same with PostgreSQL really stopped (CI only) -----------------------------


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.skipif(
    not ALLOW_POSTGRES_RESTART,
    reason="stops the machine's PostgreSQL: set ALLOW_POSTGRES_RESTART=1 (CI does)",
)
def test_a_server_survives_postgresql_being_stopped_and_started(
    tmp_path, scratch_database
):
    address, name = scratch_database
    env = _production_env(
        tmp_path,
        f"postgres://{address['user']}@{address['host']}:{address['port']}/{name}",
    )
    prepare_database(env)
    manage(env, "collectstatic", "--noinput", "-v0")
    key = create_api_key(env, "admin")
    try:
        with ServerProcess(env) as service:
            _seed(service.base_url, key)
            answers, cut_at, restored_at = _cut_mid_traffic(
                service,
                key,
                cut=lambda: pg_ctlcluster("stop"),
                restore=lambda: pg_ctlcluster("start", address),
                down_for=5,
            )
            _assert_outage_handled(service, key, answers, cut_at, restored_at)
    finally:
        # Whatever happened, the machine's PostgreSQL runs again.
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctlcluster("start")  # fails when it is running already
        wait_for_postgresql(address)
        # This process's own connections died with the server: the next tests
        # must make new ones.
        connections.close_all()
