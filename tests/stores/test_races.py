"""Requests racing each other over gunicorn: one clear winner, no 5xx, nothing left.

Each test runs the service as operators do (gunicorn, 2 gthread workers) on
SQLite, and on PostgreSQL in CI's second pass, then reads the database and the
media folder and runs ``manage.py fsck``: no row, chunk or file may be left
that nothing refers to.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.factories import make_text_pdf
from tests.servers import ServerProcess, create_api_key, prepare_database
from tests.stores.conftest import fsck, service_state

pytestmark = [pytest.mark.slow]


class Api:
    def __init__(self, server: ServerProcess, key: str) -> None:
        self.base = server.base_url
        self.headers = {"Authorization": f"Api-Key {key}"}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, self.base + path, headers=self.headers, timeout=120, **kwargs
        )

    def upload(self, store: str, name: str, data: bytes) -> requests.Response:
        return self.call(
            "POST", f"/api/stores/{store}/documents/", files={"file": (name, data)}
        )


@pytest.fixture
def service(service_env):
    env = {**service_env, "WORKERS": "2", "THREADS": "8"}
    prepare_database(env)
    key = create_api_key(env, "write")
    with ServerProcess(env) as server:
        yield env, Api(server, key)


def _text(tag: str, size: int = 20_000) -> bytes:
    line = f"Ferry timetable {tag}: boats leave the harbour on the hour. "
    return (line * (size // len(line) + 1)).encode()[:size]


def test_a_store_deleted_while_uploads_arrive_is_deleted_whole(service):
    env, api = service
    for round_ in range(3):
        name = f"race{round_}"
        assert api.call("POST", "/api/stores/", json={"name": name}).status_code == 201
        for n in range(3):
            assert api.upload(name, f"seed{n}.txt", _text(f"seed {n}")).ok
        with ThreadPoolExecutor(max_workers=21) as pool:
            uploads = [
                pool.submit(api.upload, name, f"u{n}.txt", _text(f"{round_}-{n}"))
                for n in range(20)
            ]
            time.sleep(0.1)
            delete = pool.submit(api.call, "DELETE", f"/api/stores/{name}/")
            answers = [future.result() for future in uploads]

        assert delete.result().status_code == 204, delete.result().text
        for answer in answers:
            assert answer.status_code in (201, 404), answer.text
            if answer.status_code == 404:
                assert answer.json()["error"] == "STORE_NOT_FOUND"
    state = service_state(env)
    assert state["stores"] == []
    assert state["documents"] == []
    assert state["chunks"] == 0
    assert state["files"] == []
    assert [f for f in state["folders"] if f != "documents"] == []
    fsck(env)


def test_concurrent_reindexes_of_one_document_run_one_ingestion(service):
    env, api = service
    api.call("POST", "/api/stores/", json={"name": "s"})
    pdf = make_text_pdf(
        [f"Page {n}. " + "Lock keepers log each barge. " * 40 for n in range(150)]
    )
    document = api.upload("s", "log.pdf", pdf).json()
    clean_chunks = document["chunk_count"]
    url = f"/api/stores/s/documents/{document['id']}/reindex/"
    barrier = threading.Barrier(10)

    def reindex() -> requests.Response:
        barrier.wait()
        return api.call("POST", url)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: reindex(), range(10)))

    codes = sorted(answer.status_code for answer in answers)
    assert set(codes) <= {200, 409}, [a.text for a in answers]
    assert codes.count(200) >= 1
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"] == "DOCUMENT_BUSY"
        else:
            assert answer.json()["status"] == "ready"
    [stored] = service_state(env)["documents"]
    assert stored["status"] == "ready"
    assert stored["chunk_count"] == stored["real_chunks"] == clean_chunks
    assert stored["attempts"] == 1
    fsck(env)


def test_a_document_deleted_during_its_reindex_is_gone_for_good(service):
    env, api = service
    api.call("POST", "/api/stores/", json={"name": "s"})
    pdf = make_text_pdf(
        [f"Page {n}. " + "Canal locks raise boats. " * 40 for n in range(900)]
    )
    document = api.upload("s", "long.pdf", pdf).json()
    url = f"/api/stores/s/documents/{document['id']}/"
    with ThreadPoolExecutor(max_workers=1) as pool:
        reindex = pool.submit(api.call, "POST", f"{url}reindex/")
        deadline = time.monotonic() + 30
        while api.call("GET", url).json().get("status") != "processing":
            assert time.monotonic() < deadline, "the re-index never started"
            time.sleep(0.05)
        deleted = api.call("DELETE", url)
        reindexed = reindex.result()

    assert deleted.status_code == 204, deleted.text
    assert reindexed.status_code == 404, reindexed.text
    assert reindexed.json()["error"] == "DOCUMENT_NOT_FOUND"
    assert api.call("GET", url).status_code == 404
    state = service_state(env)
    assert state["documents"] == [] and state["chunks"] == 0
    assert state["files"] == []
    fsck(env)


def test_identical_uploads_at_once_store_one_document_and_one_file(service):
    env, api = service
    api.call("POST", "/api/stores/", json={"name": "s"})
    for round_ in range(8):
        data = _text(f"round {round_}", 5_000)
        barrier = threading.Barrier(20)

        def send(data=data, barrier=barrier) -> requests.Response:
            barrier.wait()
            return api.upload("s", "same.txt", data)

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: send(), range(20)))
        codes = [answer.status_code for answer in answers]
        assert set(codes) <= {200, 201}, [a.text for a in answers]
        assert len({answer.json()["id"] for answer in answers}) == 1

    state = service_state(env)
    assert len(state["documents"]) == 8
    assert len(state["files"]) == 8
    fsck(env)
