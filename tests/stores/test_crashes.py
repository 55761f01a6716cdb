"""Processes killed with real signals mid-ingestion: nothing stays stuck.

A gunicorn worker (immediate tasks) or a db_worker is killed with SIGKILL while
it ingests; its documents must be finished by someone else without a person:
the next web worker's maintenance, a restarted db_worker, or an upload of the
same files again. Afterwards ``manage.py fsck`` finds nothing to fix.
"""

import os
import signal
import threading
import time

import pytest
import requests

from tests.factories import make_text_pdf
from tests.fakes.embeddings import EmbeddingsFake
from tests.servers import (
    ALLOW_POSTGRES_RESTART,
    ManageProcess,
    ServerProcess,
    TcpProxy,
    create_api_key,
    pg_ctlcluster,
    prepare_database,
    worker_pids,
)
from tests.stores.conftest import fsck, service_state

pytestmark = [pytest.mark.slow]

# Fast leases, so a test sees a silent worker taken for gone within seconds.
FAST_LEASES = {
    "WORKER_HEARTBEAT_SEC": "0.5",
    "WORKER_LEASE_SEC": "2",
    "MAINTENANCE_INTERVAL_SEC": "1",
}


def _pdf(tag: str, pages: int) -> bytes:
    line = f"Harbour pilots of {tag} guide ships through narrow channels at dawn. "
    return make_text_pdf([f"Page {n} of {tag}. " + line * 25 for n in range(pages)])


def wait_until(condition, *, timeout: float, what: str, pause: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(pause)


class Api:
    def __init__(self, server: ServerProcess, key: str) -> None:
        self.base = server.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Api-Key {key}"

    def documents(self, store: str) -> list[dict]:
        url = f"{self.base}/api/stores/{store}/documents/?page_size=100"
        response = self.session.get(url, timeout=10)
        response.raise_for_status()
        return response.json()["results"]

    def statuses(self, store: str) -> list[str]:
        try:
            return sorted(d["status"] for d in self.documents(store))
        except requests.RequestException:
            return []  # a worker restarting

    def create_store(self, name: str) -> None:
        response = self.session.post(
            f"{self.base}/api/stores/", json={"name": name}, timeout=10
        )
        assert response.status_code == 201, response.text

    def upload(self, store: str, files: dict[str, bytes], timeout: float = 120):
        parts = [("files", (n, data, "application/pdf")) for n, data in files.items()]
        return self.session.post(
            f"{self.base}/api/stores/{store}/documents/", files=parts, timeout=timeout
        )


def _upload_in_background(api: Api, store: str, files: dict[str, bytes]) -> dict:
    outcome: dict = {}

    def send() -> None:
        try:
            outcome["response"] = api.upload(store, files)
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


@pytest.mark.parametrize("recovery", ["maintenance", "upload_again"])
def test_a_web_worker_killed_mid_ingestion_leaves_nothing_stuck(service_env, recovery):
    env = {
        **service_env,
        **FAST_LEASES,
        "WORKERS": "1",
        "THREADS": "4",
        # Without maintenance, only an upload of the same files can recover.
        "BACKGROUND_MAINTENANCE": "true" if recovery == "maintenance" else "false",
    }
    prepare_database(env)
    key = create_api_key(env, "write")
    files = {f"part{n}.pdf": _pdf(f"part {n}", 40) for n in range(20)}
    with ServerProcess(env) as server:
        api = Api(server, key)
        api.create_store("s")
        outcome = _upload_in_background(api, "s", files)
        wait_until(
            lambda: "ready" in api.statuses("s"),
            timeout=60,
            what="the first document ready",
            pause=0.05,
        )
        [worker] = worker_pids(server)

        os.kill(worker, signal.SIGKILL)

        outcome["thread"].join(60)
        assert "error" in outcome  # the connection died with the worker
        stuck = service_state(env)["documents"]
        assert len(stuck) == 20  # every row was committed before the kill
        assert {d["status"] for d in stuck} & {"pending", "processing"}
        if recovery == "upload_again":
            again = api.upload("s", files)
            assert again.status_code == 201, again.text
            assert {d["status"] for d in again.json()["results"]} == {"ready"}
        else:
            wait_until(
                lambda: api.statuses("s") == ["ready"] * 20,
                timeout=90,
                what="every document ready",
                pause=0.5,
            )
    state = service_state(env)
    assert len(state["documents"]) == 20
    for document in state["documents"]:
        assert document["status"] == "ready"
        assert document["chunk_count"] == document["real_chunks"] > 0
        assert document["owner"] == ""
    assert len(state["files"]) == 20
    fsck(env)


def test_a_db_worker_killed_mid_ingestion_is_replaced_and_the_work_done(
    service_env,
):
    env = {**service_env, **FAST_LEASES, "TASKS_BACKEND": "database"}
    prepare_database(env)
    key = create_api_key(env, "write")
    big = _pdf("the long manual", 900)
    worker_args = ("db_worker", "--no-startup-delay", "--interval", "0.1")
    with ServerProcess(env) as server:
        api = Api(server, key)
        api.create_store("s")
        with ManageProcess(env, *worker_args) as first:
            response = api.upload("s", {"manual.pdf": big})
            assert response.status_code == 202, response.text
            wait_until(
                lambda: api.statuses("s") == ["processing"],
                timeout=60,
                what="the worker to start the ingestion",
                pause=0.05,
            )
            first.kill(signal.SIGKILL)
        left = service_state(env)
        assert [d["status"] for d in left["documents"]] == ["processing"]
        assert left["tasks"] == ["RUNNING"]

        with ManageProcess(env, *worker_args) as second:
            wait_until(
                lambda: api.statuses("s") == ["ready"],
                timeout=120,
                what="the new worker to finish the document",
                pause=0.5,
            )
            assert second.alive()
        # A clean ingestion of the same file, for the chunk count.
        api.create_store("clean")
        with ManageProcess(env, *worker_args, "--batch"):
            response = api.upload("clean", {"manual.pdf": big})
            wait_until(
                lambda: api.statuses("clean") == ["ready"], timeout=120, what="clean"
            )
    state = service_state(env)
    recovered, clean = sorted(state["documents"], key=lambda d: d["store__name"])[::-1]
    assert recovered["store__name"] == "s"
    assert recovered["chunk_count"] == recovered["real_chunks"] == clean["chunk_count"]
    assert recovered["attempts"] == 2
    assert sorted(state["tasks"]) == ["FAILED", "SUCCESSFUL", "SUCCESSFUL"]
    fsck(env)


def test_a_db_worker_killed_while_embedding_leaves_the_vectors_to_the_next(
    service_env,
):
    """The embedding stage has an owner too: a worker killed inside the call to
    the embedding server leaves a ready document whose vectors the next
    worker's maintenance round queues again."""
    with EmbeddingsFake() as embedder:
        env = {
            **service_env,
            **FAST_LEASES,
            "TASKS_BACKEND": "database",
            "EMBEDDINGS": "openai",
            "EMBEDDINGS_URL": embedder.url,
            "EMBEDDINGS_MODEL": "fake-embed",
        }
        prepare_database(env)
        key = create_api_key(env, "write")
        worker_args = ("db_worker", "--no-startup-delay", "--interval", "0.1")
        with ServerProcess(env) as server:
            api = Api(server, key)
            api.create_store("s")
            embedder.delay(120)  # the first call to embed: the worker is held there
            with ManageProcess(env, *worker_args) as first:
                response = api.upload("s", {"notes.txt": b"Lanterns are lit at dusk."})
                assert response.status_code == 202, response.text
                wait_until(
                    lambda: any(
                        r["path"] == "/v1/embeddings" for r in embedder.requests
                    ),
                    timeout=60,
                    what="the worker to call the embedding server",
                    pause=0.05,
                )
                [document] = api.documents("s")
                assert (document["status"], document["vectors"]) == ("ready", "pending")
                first.kill(signal.SIGKILL)

            with ManageProcess(env, *worker_args) as second:
                wait_until(
                    lambda: [d["vectors"] for d in api.documents("s")] == ["ready"],
                    timeout=60,
                    what="the new worker to compute the vectors",
                    pause=0.2,
                )
                assert second.alive()
    state = service_state(env)
    # Ingestion, the embedding the killed worker lost, and the one re-queued.
    assert sorted(state["tasks"]) == ["FAILED", "SUCCESSFUL", "SUCCESSFUL"]
    assert len([r for r in embedder.requests if r["path"] == "/v1/embeddings"]) >= 2
    fsck(env)


@pytest.mark.postgres
def test_a_db_worker_outlives_a_database_outage(service_env):
    """The worker reaches PostgreSQL through a proxy that the test cuts and
    restores; the same process then carries on with new work."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    proxy = TcpProxy(database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432))
    proxy.start()
    env = {**service_env, **FAST_LEASES, "TASKS_BACKEND": "database"}
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    worker_env = {
        **env,
        "DATABASE_URL": f"postgres://{database['USER']}@127.0.0.1:{proxy.port}/{name}",
    }
    prepare_database(env)
    key = create_api_key(env, "write")
    try:
        with (
            ServerProcess(env) as server,
            ManageProcess(worker_env, "db_worker", "--no-startup-delay") as worker,
        ):
            api = Api(server, key)
            api.create_store("s")
            assert api.upload("s", {"a.pdf": _pdf("before", 2)}).status_code == 202
            wait_until(lambda: api.statuses("s") == ["ready"], timeout=60, what="a")

            proxy.stop()
            time.sleep(4)  # the worker polls and fails meanwhile
            proxy.start()

            assert api.upload("s", {"b.pdf": _pdf("after", 2)}).status_code == 202
            wait_until(
                lambda: api.statuses("s") == ["ready", "ready"],
                timeout=60,
                what="the same worker to take new work",
            )
            assert worker.alive()
            log = worker.log_text()
            assert log.count("worker_database_unavailable") == 1
            assert "worker_database_available" in log
    finally:
        proxy.stop()
    fsck(env)


@pytest.mark.postgres
@pytest.mark.skipif(
    not ALLOW_POSTGRES_RESTART,
    reason="stops the machine's PostgreSQL: set ALLOW_POSTGRES_RESTART=1 (CI does)",
)
def test_a_db_worker_outlives_a_real_postgresql_restart(service_env):
    import contextlib
    import subprocess

    from django.db import connections

    env = {**service_env, **FAST_LEASES, "TASKS_BACKEND": "database"}
    prepare_database(env)
    key = create_api_key(env, "write")
    with (
        ServerProcess(env) as server,
        ManageProcess(env, "db_worker", "--no-startup-delay") as worker,
    ):
        api = Api(server, key)
        api.create_store("s")
        assert api.upload("s", {"a.pdf": _pdf("before", 2)}).status_code == 202
        wait_until(lambda: api.statuses("s") == ["ready"], timeout=60, what="a")
        try:
            pg_ctlcluster("stop")
            time.sleep(3)
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                pg_ctlcluster("start")
            connections.close_all()  # this process's connections died too
        wait_until(
            lambda: api.upload("s", {"b.pdf": _pdf("after", 2)}).status_code == 202,
            timeout=60,
            what="uploads to be accepted again",
            pause=1,
        )
        wait_until(
            lambda: api.statuses("s") == ["ready", "ready"],
            timeout=60,
            what="the same worker to take new work",
        )
        assert worker.alive()
        assert worker.log_text().count("worker_database_unavailable") == 1
    fsck(env)
