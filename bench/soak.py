"""Soak: minutes of mixed traffic while processes are killed and dependencies restart.

Starts the service as it runs in production, on a PostgreSQL cluster and a Redis
of its own (never the machine's: other people use those): two gunicorn servers
(gthread, ``WORKERS=2`` each, ``ENVIRONMENT=production``) and one
``manage.py db_worker`` (``TASKS_BACKEND=database``), all sharing one database,
one Redis and one ``DATA_DIR``. ``--clients`` threads (6) then send a weighted
mix for ``--minutes`` (10): uploads of distinct small .txt and .md files, PDFs
and DOCX files (a few re-uploads of content already stored), searches (repeated
questions the cache answers, and new ones), re-indexes, document deletes, and
store creates and deletes over a pool of stores.

Faults, spread over the run: a gunicorn worker killed with SIGKILL every minute
(the servers take turns), the db_worker killed with SIGKILL once and started
again, Redis killed and started again once, PostgreSQL stopped
(``pg_ctl stop -m fast``) and started again once; each stays down ``DOWN_SEC``
(5 s).

Then the traffic stops, ingestion drains (up to ``DRAIN_LIMIT_SEC``) and
``manage.py fsck --min-age 0`` runs. Printed: requests by kind and status; any
5xx other than the documented 503 DATABASE_UNAVAILABLE and 507, with bodies and
the server's log lines; documents by final status and any left pending or
processing; the time from each fault to the first success of what it affected;
fsck's output and exit status. Exit status 1 on: an undocumented 5xx, an answer
outside the documented ones for its request, a connection error that no worker
kill explains, a stuck document, a recovery never seen, a process not running at
the end, or fsck not clean.

    .venv/bin/python bench/soak.py                        # 10 minutes, with faults
    .venv/bin/python bench/soak.py --minutes 1 --no-faults
    make bench-soak

Needs PostgreSQL 15's server binaries (/usr/lib/postgresql/15/bin) and
redis-server. As root, the cluster runs as the ``postgres`` user (initdb refuses
root). Everything it starts lives under one temporary folder, removed at the
end, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import make_docx, make_pdf, make_text_pdf  # noqa: E402
from tests.servers import (  # noqa: E402
    HIGH_RATE_LIMITS,
    HOST,
    PYTHON,
    ManageProcess,
    ServerProcess,
    child_env,
    create_api_key,
    free_port,
    prepare_database,
    server_env,
    worker_pids,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DB_NAME = "soak"
SERVERS = 2
WORKERS = 2  # gunicorn workers per server
# Orphans are re-queued by a maintenance round; the default (300 s) would leave
# one waiting longer than a short run lasts.
MAINTENANCE_INTERVAL_SEC = 30
DOWN_SEC = 5.0  # how long the db_worker, Redis and PostgreSQL stay down
DRAIN_LIMIT_SEC = 240.0
REQUEST_TIMEOUT_SEC = 60.0
PROGRESS_EVERY_SEC = 60.0
# A connection error is explained by a worker kill on the same server while the
# request was under way (with this much slack on each side).
KILL_SLACK_SEC = 1.0

# The traffic mix: relative weights of each kind of request.
MIX = {
    "search": 60.0,
    "upload": 16.0,
    "reindex": 8.0,
    "delete": 8.0,
    "create-store": 0.1,
    "delete-store": 0.1,
}
UPLOAD_FORMATS = {"txt": 50, "md": 25, "text-pdf": 15, "pdf": 5, "docx": 5}
DUPLICATE_SHARE = 0.05  # uploads that send content already stored in the store
REPEATED_SHARE = 0.6  # searches that ask one of the repeated questions
REFERENCE_SHARE = 0.35  # searches of the reference store (never changed)
REFERENCE_STORE = "reference"
REFERENCE_DOCUMENTS = 10
STORE_NAMES = [f"soak-{n}" for n in range(8)]  # a deleted store's name comes back
MIN_STORES, MAX_STORES, FIRST_STORES = 2, 5, 3

# What each kind of request may answer: status -> error codes (empty: any).
DB_DOWN = {"DATABASE_UNAVAILABLE"}
EXPECTED: dict[str, dict[int, set[str]]] = {
    "upload": {
        **dict.fromkeys((200, 201, 202), set()),
        404: {"STORE_NOT_FOUND"},
        503: DB_DOWN,
        507: {"INSUFFICIENT_STORAGE"},
    },
    "search": {200: set(), 404: {"STORE_NOT_FOUND"}, 503: DB_DOWN},
    "reindex": {
        **dict.fromkeys((200, 202), set()),
        404: {"STORE_NOT_FOUND", "DOCUMENT_NOT_FOUND"},
        409: {"DOCUMENT_BUSY"},
        503: DB_DOWN,
    },
    "delete": {
        204: set(),
        404: {"STORE_NOT_FOUND", "DOCUMENT_NOT_FOUND"},
        503: DB_DOWN,
    },
    "create-store": {201: set(), 409: {"STORE_EXISTS"}, 503: DB_DOWN},
    "delete-store": {204: set(), 404: {"STORE_NOT_FOUND"}, 503: DB_DOWN},
}

WORDS = """
harbour lantern compass glacier orchard meadow canyon river forest desert kettle
ledger mortar pulley quarry rudder saddle tannery thimble anvil bellows chisel
furnace granary hinge island juniper kiln loom mill nettle oar pitch quill reed
sail tide umber valley willow yarrow beacon cellar dune ember fjord grove heath
inlet jetty knoll lagoon marsh nook outpost pier ridge shoal terrace upland vale
""".split()  # noqa: SIM905 (a paragraph reads better than 61 lines)
ACTIVE = ("pending", "processing")


# --- PostgreSQL and Redis of our own ----------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster in ``folder``, on a free port, with trust auth."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgres://postgres@{HOST}:{self.port}/{DB_NAME}"
        self.dsn = f"host={HOST} port={self.port} user=postgres dbname={DB_NAME}"

    def _run(self, program: str, *args: str, check: bool = True) -> str:
        command = [str(PG_BIN / program), *args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr or done.stdout}")
        return done.stdout

    def start(self) -> None:
        options = f"-p {self.port} -k /tmp -c listen_addresses={HOST}"
        log = str(self.folder / "postgres.log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def version(self) -> str:
        return self._run("postgres", "--version").strip()

    def __enter__(self) -> Self:
        self.folder.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        self._run(
            "createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", DB_NAME
        )
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop(mode="immediate")


class PrivateRedis:
    """redis-server on a free port, in memory only, as a child process."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.log = folder / "redis.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", HOST]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5)
        for _ in range(100):
            with contextlib.suppress(redis.RedisError):
                client.ping()
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis-server did not answer:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def version(self) -> str:
        return subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.split(" sha=")[0]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill()


class Database:
    """The soak's own look at the database (statuses, tasks), from outside."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.connection: psycopg.Connection | None = None
        self.lock = threading.Lock()

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The query's rows; raises psycopg.Error while the database is away."""
        with self.lock:
            try:
                if self.connection is None or self.connection.closed:
                    self.connection = psycopg.connect(
                        self.dsn, autocommit=True, connect_timeout=2
                    )
                return self.connection.execute(sql, params).fetchall()
            except psycopg.Error:
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                raise

    def statuses(self) -> dict[str, int]:
        sql = "SELECT status, count(*) FROM stores_document GROUP BY status"
        return dict(self.rows(sql))

    def in_flight(self, owner_prefix: str = "") -> list[int]:
        sql = (
            "SELECT id FROM stores_document WHERE status = 'processing' "
            "AND owner LIKE %s"
        )
        return [row[0] for row in self.rows(sql, (owner_prefix + "%",))]

    def still_active(self, ids: list[int]) -> int:
        sql = (
            "SELECT count(*) FROM stores_document "
            "WHERE id = ANY(%s) AND status IN ('pending', 'processing')"
        )
        return self.rows(sql, (ids,))[0][0]

    def first_task_done_after(self, wall: float) -> float | None:
        """Wall time of the first ingestion task finished after ``wall``."""
        sql = (
            "SELECT extract(epoch FROM min(finished_at)) "
            "FROM django_tasks_database_dbtaskresult "
            "WHERE status = 'SUCCESSFUL' AND finished_at > to_timestamp(%s)"
        )
        value = self.rows(sql, (wall,))[0][0]
        return None if value is None else float(value)

    def stuck(self) -> list[tuple]:
        sql = (
            "SELECT d.id, s.name, d.filename, d.status, d.owner, d.attempts, "
            "d.updated_at FROM stores_document d JOIN stores_store s "
            "ON s.id = d.store_id WHERE d.status IN ('pending', 'processing') "
            "ORDER BY d.id"
        )
        return self.rows(sql)

    def tasks_of(self, document_id: int) -> list[tuple]:
        """The document's ingestion tasks: status, times (epoch), worker ids."""
        sql = (
            "SELECT status, extract(epoch FROM enqueued_at), "
            "extract(epoch FROM started_at), extract(epoch FROM finished_at), "
            "worker_ids, exception_class_path "
            "FROM django_tasks_database_dbtaskresult "
            "WHERE (args_kwargs -> 'args' ->> 0)::int = %s ORDER BY enqueued_at"
        )
        return self.rows(sql, (document_id,))

    def failures(self) -> list[tuple[str, int]]:
        sql = (
            "SELECT error, count(*) FROM stores_document WHERE status = 'failed' "
            "GROUP BY error ORDER BY count(*) DESC"
        )
        return self.rows(sql)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


# --- What the clients send --------------------------------------------------------


class Corpus:
    """Documents and questions. The numbers make every document's content distinct."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self.questions = [
            f"how does the {a} keep the {b} near the {c}"
            for a, b, c in (rng.sample(WORDS, 3) for _ in range(12))
        ]

    def text(self, rng: random.Random, number: int, sentences: int = 12) -> str:
        lines = [f"Soak document {number} of seed {self.seed} (soak{number}x)."]
        for _ in range(rng.randint(sentences // 2, sentences)):
            words = rng.choices(WORDS, k=rng.randint(6, 14))
            lines.append(" ".join(words).capitalize() + ".")
        return " ".join(lines)

    def upload(self, rng: random.Random, number: int) -> tuple[str, bytes, str]:
        """A new file: (name, content, content type)."""
        kind = rng.choices(list(UPLOAD_FORMATS), weights=UPLOAD_FORMATS.values())[0]
        name = f"soak-{number}"
        if kind == "txt":
            return f"{name}.txt", self.text(rng, number).encode(), "text/plain"
        if kind == "md":
            body = f"# Notes {number}\n\n{self.text(rng, number)}\n"
            return f"{name}.md", body.encode(), "text/markdown"
        if kind == "text-pdf":  # many pages, a slower ingestion
            pages = [self.text(rng, number, 8) for _ in range(rng.randint(5, 60))]
            return f"{name}.pdf", make_text_pdf(pages), "application/pdf"
        if kind == "pdf":
            pages = [self.text(rng, number, 6) for _ in range(rng.randint(1, 2))]
            return f"{name}.pdf", make_pdf(pages), "application/pdf"
        paragraphs = [self.text(rng, number, 5) for _ in range(rng.randint(2, 6))]
        docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        return f"{name}.docx", make_docx(paragraphs), docx

    def question(self, rng: random.Random) -> str:
        if rng.random() < REPEATED_SHARE:
            return rng.choice(self.questions)
        return "where is the " + " ".join(rng.sample(WORDS, rng.randint(2, 4)))


@dataclass
class Answer:
    """One request as the client saw it; status 0 is no HTTP answer at all."""

    kind: str
    server: int
    status: int
    sent: float  # time.monotonic()
    received: float
    code: str = ""  # the error code of the body, or the exception's class name
    cached: bool | None = None
    retry_after: str | None = None
    request_id: str = ""
    document_id: int | None = None
    store: str = ""  # the store it was about
    uid: str = ""  # a created store's uid, as its folder of files is named
    body: str = ""  # kept for answers that go in the report


@dataclass
class Tally:
    """Every answer of the run, added by the client threads."""

    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)


class Client:
    """One client thread's HTTP session, round the servers."""

    def __init__(self, urls: list[str], key: str, tally: Tally) -> None:
        self.urls = urls
        self.tally = tally
        self.session = requests.Session()
        # A fresh connection per request: a kept-alive one that the server
        # closed as idle would fail the next request, and look like a fault.
        self.session.headers.update(
            {"Authorization": f"Api-Key {key}", "Connection": "close"}
        )

    def send(
        self, kind: str, store: str, server: int, method: str, path: str, **kw
    ) -> Answer:
        sent = time.monotonic()
        try:
            response = self.session.request(
                method, self.urls[server] + path, timeout=REQUEST_TIMEOUT_SEC, **kw
            )
        except requests.RequestException as exc:
            answer = Answer(kind, server, 0, sent, time.monotonic())
            answer.code, answer.body = type(exc).__name__, str(exc)[:500]
        else:
            answer = self._answer(kind, server, sent, response)
        answer.store = store
        self.tally.add(answer)
        return answer

    @staticmethod
    def _answer(kind: str, server: int, sent: float, response) -> Answer:
        answer = Answer(kind, server, response.status_code, sent, time.monotonic())
        answer.retry_after = response.headers.get("Retry-After")
        answer.request_id = response.headers.get("X-Request-ID", "")
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {"raw": response.text[:500]}
        if isinstance(body, dict):
            answer.code = str(body.get("error") or "")
            answer.cached = body.get("cached")
            if isinstance(body.get("id"), int):
                answer.document_id = body["id"]
            answer.uid = str(body.get("uid") or "").replace("-", "")
        if response.status_code >= 400:
            answer.body = response.text[:2000]
        return answer


class Pool:
    """The stores and documents the clients know of, shared by the client threads.

    Only the clients change it, from what the service answered; a store another
    client is deleting stays in it until that delete is answered, so requests
    race the delete, as they would in production.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.documents: dict[str, list[int]] = {}
        # Recent uploads, to send again: (store, name, content, content type).
        self.recent: list[tuple[str, str, bytes, str]] = []

    def add_store(self, name: str) -> None:
        with self.lock:
            self.documents.setdefault(name, [])

    def drop_store(self, name: str) -> None:
        with self.lock:
            self.documents.pop(name, None)
            self.recent = [r for r in self.recent if r[0] != name]

    def store_count(self) -> int:
        with self.lock:
            return len(self.documents)

    def pick_store(self, rng: random.Random) -> str | None:
        with self.lock:
            return rng.choice(sorted(self.documents)) if self.documents else None

    def free_name(self, rng: random.Random) -> str | None:
        with self.lock:
            free = [name for name in STORE_NAMES if name not in self.documents]
        return rng.choice(free) if free else None

    def add_document(self, store: str, document_id: int, upload: tuple) -> None:
        with self.lock:
            if store in self.documents and document_id not in self.documents[store]:
                self.documents[store].append(document_id)
                self.recent = [*self.recent[-49:], (store, *upload)]

    def drop_document(self, store: str, document_id: int) -> None:
        with self.lock, contextlib.suppress(KeyError, ValueError):
            self.documents[store].remove(document_id)

    def pick_document(self, rng: random.Random) -> tuple[str, int] | None:
        with self.lock:
            known = [(s, d) for s, ids in self.documents.items() for d in ids]
        return rng.choice(known) if known else None

    def pick_recent(self, rng: random.Random) -> tuple | None:
        with self.lock:
            return rng.choice(self.recent) if self.recent else None


class Traffic:
    """``clients`` threads sending the weighted mix until stopped."""

    def __init__(
        self, urls: list[str], key: str, corpus: Corpus, seed: int, clients: int
    ) -> None:
        self.urls, self.key, self.corpus = urls, key, corpus
        self.seed, self.clients = seed, clients
        self.tally = Tally()
        self.pool = Pool()
        self.numbers = itertools.count(REFERENCE_DOCUMENTS + 1)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.crashes: list[str] = []  # a client thread's own exceptions
        self.actions: dict[str, Callable[[Client, random.Random, int], None]] = {
            "search": self.search,
            "upload": self.upload,
            "reindex": self.reindex,
            "delete": self.delete,
            "create-store": self.create_store,
            "delete-store": self.delete_store,
        }

    def start(self) -> None:
        for index in range(self.clients):
            thread = threading.Thread(
                target=self._loop, args=(index,), name=f"client-{index}", daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT_SEC + 5)

    def _loop(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        client = Client(self.urls, self.key, self.tally)
        kinds, weights = list(MIX), list(MIX.values())
        while not self.stopping.is_set():
            kind = rng.choices(kinds, weights=weights)[0]
            try:
                self.actions[kind](client, rng, rng.randrange(len(self.urls)))
            except Exception as exc:  # a bug of the soak, not of the service
                self.crashes.append(f"{kind}: {type(exc).__name__}: {exc}")
                time.sleep(1)

    def search(self, client: Client, rng: random.Random, server: int) -> None:
        store = REFERENCE_STORE
        if rng.random() > REFERENCE_SHARE:
            store = self.pool.pick_store(rng) or REFERENCE_STORE
        payload = {"query": self.corpus.question(rng), "store_name": store}
        answer = client.send(
            "search", store, server, "POST", "/api/search", json=payload
        )
        self._forget_if_gone(answer, store)

    def upload(self, client: Client, rng: random.Random, server: int) -> None:
        recent = self.pool.pick_recent(rng) if rng.random() < DUPLICATE_SHARE else None
        if recent is not None:
            store, *upload = recent
        else:
            store = self.pool.pick_store(rng)
            if store is None:
                return self.create_store(client, rng, server)
            upload = self.corpus.upload(rng, next(self.numbers))
        answer = client.send(
            "upload",
            store,
            server,
            "POST",
            f"/api/stores/{store}/documents/",
            files={"file": tuple(upload)},
        )
        if answer.status in (200, 201, 202) and answer.document_id is not None:
            self.pool.add_document(store, answer.document_id, tuple(upload))
        self._forget_if_gone(answer, store)

    def reindex(self, client: Client, rng: random.Random, server: int) -> None:
        picked = self.pool.pick_document(rng)
        if picked is None:
            return self.upload(client, rng, server)
        store, document_id = picked
        path = f"/api/stores/{store}/documents/{document_id}/reindex/"
        answer = client.send("reindex", store, server, "POST", path)
        answer.document_id = document_id
        if answer.code == "DOCUMENT_NOT_FOUND":
            self.pool.drop_document(store, document_id)
        self._forget_if_gone(answer, store)

    def delete(self, client: Client, rng: random.Random, server: int) -> None:
        picked = self.pool.pick_document(rng)
        if picked is None:
            return self.upload(client, rng, server)
        store, document_id = picked
        path = f"/api/stores/{store}/documents/{document_id}/"
        answer = client.send("delete", store, server, "DELETE", path)
        answer.document_id = document_id
        if answer.status in (204, 404):
            self.pool.drop_document(store, document_id)
        self._forget_if_gone(answer, store)

    def create_store(self, client: Client, rng: random.Random, server: int) -> None:
        if self.pool.store_count() >= MAX_STORES:
            return self.delete_store(client, rng, server)
        name = self.pool.free_name(rng)
        if name is None:
            return
        answer = client.send(
            "create-store", name, server, "POST", "/api/stores/", json={"name": name}
        )
        if answer.status in (201, 409):  # 409: still there from before
            self.pool.add_store(name)

    def delete_store(self, client: Client, rng: random.Random, server: int) -> None:
        if self.pool.store_count() <= MIN_STORES:
            return self.create_store(client, rng, server)
        name = self.pool.pick_store(rng)
        answer = client.send(
            "delete-store", name, server, "DELETE", f"/api/stores/{name}/"
        )
        if answer.status in (204, 404):
            self.pool.drop_store(name)

    def _forget_if_gone(self, answer: Answer, store: str) -> None:
        if answer.code == "STORE_NOT_FOUND" and store != REFERENCE_STORE:
            self.pool.drop_store(store)


# --- Faults -------------------------------------------------------------------------


@dataclass
class Fault:
    """A fault done to the system, and how long what it affected took to recover.

    ``recoveries``: seconds from the fault to the first success of each thing it
    affected (None: not seen); ``notes``: what there was nothing to measure for.
    """

    kind: str  # worker-kill, db-worker, redis, postgres
    label: str
    at: float  # time.monotonic() when it was done
    wall: float  # the same moment as time.time(), to compare with the database
    # When it had taken effect (a stop returned); traffic recoveries count only
    # requests sent from then on.
    effective: float = 0.0
    server: int | None = None
    down_sec: float | None = None
    recoveries: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def fault_schedule(duration: float) -> list[tuple[float, str, int | None]]:
    """(seconds into the run, kind, server): a worker kill every minute, the
    servers taking turns, and each dependency once, apart from the kills."""
    kills = [
        (30.0 + 60 * n, "worker-kill", n % SERVERS)
        for n in range(int(duration // 60) + 1)
        if 30 + 60 * n < duration
    ]
    once = [
        (duration * share, kind, None)
        for share, kind in ((0.2, "db-worker"), (0.4, "redis"), (0.6, "postgres"))
    ]
    return sorted(kills + once, key=lambda event: event[0])


class Faults:
    """Does the faults, and watches in the background for what recovers."""

    def __init__(
        self,
        servers: list[ServerProcess],
        worker: ManageProcess,
        redis: PrivateRedis,
        postgres: PrivatePostgres,
        database: Database,
        rng: random.Random,
    ) -> None:
        self.servers, self.worker, self.redis = servers, worker, redis
        self.postgres, self.database, self.rng = postgres, database, rng
        self.done: list[Fault] = []
        self.stopping = threading.Event()

    def run(self, kind: str, server: int | None) -> Fault:
        fault = {
            "worker-kill": lambda: self.kill_web_worker(server),
            "db-worker": self.restart_db_worker,
            "redis": self.restart_redis,
            "postgres": self.restart_postgres,
        }[kind]()
        self.done.append(fault)
        return fault

    def kill_web_worker(self, index: int) -> Fault:
        server = self.servers[index]
        before = worker_pids(server)
        pid = self.rng.choice(before)
        fault = self._begin("worker-kill", f"server {index + 1}: worker {pid} killed")
        fault.server = index
        os.kill(pid, signal.SIGKILL)
        self.watch(fault, "replacement worker started", self._respawned(server, before))
        return fault

    def restart_db_worker(self) -> Fault:
        in_flight = self._in_flight("worker:")
        fault = self._begin("db-worker", "db_worker killed, started again")
        self.worker.kill(signal.SIGKILL)
        self._down(fault)
        self.worker.start()
        self._watch_ingestion(fault, in_flight)
        return fault

    def restart_redis(self) -> Fault:
        fault = self._begin("redis", "Redis killed, started again")
        self.redis.kill()
        self._down(fault)
        self.redis.start()
        return fault

    def restart_postgres(self) -> Fault:
        in_flight = self._in_flight()
        fault = self._begin("postgres", "PostgreSQL stopped, started again")
        self.postgres.stop()
        self._down(fault)
        self.postgres.start()
        self._watch_ingestion(fault, in_flight)
        return fault

    @staticmethod
    def _begin(kind: str, label: str) -> Fault:
        now = time.monotonic()
        return Fault(kind, label, at=now, wall=time.time(), effective=now)

    @staticmethod
    def _down(fault: Fault) -> None:
        fault.effective = time.monotonic()
        time.sleep(DOWN_SEC)
        fault.down_sec = time.monotonic() - fault.at

    def _in_flight(self, owner_prefix: str = "") -> list[int]:
        try:
            return self.database.in_flight(owner_prefix)
        except psycopg.Error:
            return []

    def _watch_ingestion(self, fault: Fault, in_flight: list[int]) -> None:
        down_wall = fault.wall + fault.effective - fault.at  # once it was down

        def task_done() -> float | None:
            finished = self.database.first_task_done_after(down_wall)
            return None if finished is None else finished - fault.wall

        self.watch(fault, "db_worker finished a task", task_done)
        if not in_flight:
            fault.notes.append("no document was being ingested at the fault")
            return
        label = f"the {len(in_flight)} document(s) being ingested finished"
        self.watch(
            fault,
            label,
            self._since(fault, lambda: not self.database.still_active(in_flight)),
        )

    @staticmethod
    def _respawned(server: ServerProcess, before: list[int]) -> Callable[[], bool]:
        def new_worker() -> bool:
            pids = worker_pids(server)
            return len(pids) >= WORKERS and bool(set(pids) - set(before))

        return new_worker

    @staticmethod
    def _since(fault: Fault, condition: Callable[[], bool]) -> Callable:
        return lambda: time.monotonic() - fault.at if condition() else None

    def watch(self, fault: Fault, label: str, probe: Callable) -> None:
        """Poll ``probe`` until it gives the seconds to recovery (a bool probe
        gives True when recovered; the time is then taken from the fault)."""
        fault.recoveries[label] = None

        def loop() -> None:
            while not self.stopping.is_set():
                try:
                    value = probe()
                except (psycopg.Error, OSError):
                    value = None  # the database is still away, say
                if value is True:
                    value = time.monotonic() - fault.at
                if value not in (None, False):
                    fault.recoveries[label] = float(value)
                    return
                time.sleep(0.25)

        threading.Thread(target=loop, name=f"watch-{label}", daemon=True).start()


# Recoveries read from the traffic after the run: the first answer sent after
# the fault that shows the thing working again.
TRAFFIC_RECOVERIES: dict[str, list[tuple[str, Callable[[Answer, Fault], bool]]]] = {
    "worker-kill": [
        (
            "the server answered",
            lambda a, f: a.server == f.server and 0 < a.status < 500,
        )
    ],
    "redis": [
        ("a search answered", lambda a, f: a.kind == "search" and a.status == 200),
        ("a search answered from the cache", lambda a, f: a.cached is True),
    ],
    "postgres": [
        (
            "an upload accepted",
            lambda a, f: a.kind == "upload" and 200 <= a.status < 300,
        ),
        (
            "a search answered from the database",
            lambda a, f: a.kind == "search" and a.status == 200 and a.cached is False,
        ),
    ],
}


def traffic_recoveries(faults: list[Fault], answers: list[Answer]) -> None:
    for fault in faults:
        for label, shows in TRAFFIC_RECOVERIES.get(fault.kind, []):
            after = [
                a.received - fault.at
                for a in answers
                if a.sent >= fault.effective and shows(a, fault)
            ]
            fault.recoveries[label] = min(after) if after else None


# --- Judging the answers ------------------------------------------------------------


def expected(answer: Answer) -> bool:
    codes = EXPECTED[answer.kind].get(answer.status)
    if codes is None or (codes and answer.code not in codes):
        return False
    return answer.status != 503 or bool(answer.retry_after)


def explained_by_kill(answer: Answer, faults: list[Fault]) -> bool:
    """A request without an answer, under way on a server when a worker died."""
    return any(
        f.kind == "worker-kill"
        and f.server == answer.server
        and answer.sent - KILL_SLACK_SEC <= f.at <= answer.received + KILL_SLACK_SEC
        for f in faults
    )


def postgres_window(faults: list[Fault]) -> list[tuple[float, float]]:
    """When requests could find the database away (with slack after)."""
    return [
        (f.at, f.at + (f.down_sec or 0) + 15) for f in faults if f.kind == "postgres"
    ]


@dataclass
class Verdict:
    """The answers outside what the service documents, sorted by kind."""

    unexpected_5xx: list[Answer] = field(default_factory=list)
    unexpected_other: list[Answer] = field(default_factory=list)
    unexplained_errors: list[Answer] = field(default_factory=list)  # no answer
    explained_errors: int = 0  # no answer, with a worker kill on their server
    stray_503: list[Answer] = field(default_factory=list)  # outside the outage


def judge(answers: list[Answer], faults: list[Fault]) -> Verdict:
    verdict = Verdict()
    windows = postgres_window(faults)
    for answer in answers:
        if answer.status == 0:
            if explained_by_kill(answer, faults):
                verdict.explained_errors += 1
            else:
                verdict.unexplained_errors.append(answer)
        elif not expected(answer):
            if answer.status >= 500:
                verdict.unexpected_5xx.append(answer)
            else:
                verdict.unexpected_other.append(answer)
        elif answer.status == 503 and not any(
            answer.sent <= end and answer.received >= start for start, end in windows
        ):
            verdict.stray_503.append(answer)
    return verdict


# --- The run --------------------------------------------------------------------------


def service_env(folder: Path, postgres: PrivatePostgres, redis: PrivateRedis) -> dict:
    return server_env(
        folder,
        DATABASE_URL=postgres.url,
        REDIS_URL=redis.url,
        ENVIRONMENT="production",
        SECURE_SSL_REDIRECT="false",
        STATIC_ROOT=str(folder / "static"),
        WORKERS=str(WORKERS),
        TASKS_BACKEND="database",
        MAINTENANCE_INTERVAL_SEC=str(MAINTENANCE_INTERVAL_SEC),
        LOG_LEVEL="INFO",
        GEMINI_API_KEY="",
        GOOGLE_API_KEY="",
        **HIGH_RATE_LIMITS,
    )


def own_metrics(env: dict, folder: Path, name: str) -> dict:
    """Each process its own prometheus folder: gunicorn empties it at start."""
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder / f"prometheus-{name}")}


def elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}:{seconds % 60:02d}"


def seed_stores(traffic: Traffic, database: Database) -> list[Answer]:
    """The reference store (only searched) and the first stores of the pool;
    the answers of the setup."""
    setup = Tally()
    client = Client(traffic.urls, traffic.key, setup)
    rng = random.Random(traffic.seed)
    for name in [REFERENCE_STORE, *STORE_NAMES[:FIRST_STORES]]:
        answer = client.send(
            "setup", name, 0, "POST", "/api/stores/", json={"name": name}
        )
        if answer.status != 201:
            raise RuntimeError(f"creating store {name}: {answer.status} {answer.body}")
        if name != REFERENCE_STORE:
            traffic.pool.add_store(name)
    for number in range(1, REFERENCE_DOCUMENTS + 1):
        content = traffic.corpus.text(rng, number).encode()
        answer = client.send(
            "setup",
            REFERENCE_STORE,
            number % SERVERS,
            "POST",
            f"/api/stores/{REFERENCE_STORE}/documents/",
            files={"file": (f"reference-{number}.txt", content, "text/plain")},
        )
        if answer.status not in (201, 202):
            raise RuntimeError(f"reference upload: {answer.status} {answer.body}")
    deadline = time.monotonic() + 120
    while database.statuses().get("ready", 0) < REFERENCE_DOCUMENTS:
        if time.monotonic() > deadline:
            raise RuntimeError(f"reference documents not ready: {database.statuses()}")
        time.sleep(0.5)
    return setup.snapshot()


def progress(started: float, traffic: Traffic, database: Database) -> None:
    answers = traffic.tally.snapshot()
    classes = Counter(f"{a.status // 100}xx" if a.status else "none" for a in answers)
    try:
        documents = ", ".join(
            f"{k} {v}" for k, v in sorted(database.statuses().items())
        )
    except psycopg.Error:
        documents = "(database away)"
    print(
        f"[{elapsed(started)}] {len(answers)} requests ("
        + ", ".join(f"{k} {v}" for k, v in sorted(classes.items()))
        + f"); documents: {documents}",
        flush=True,
    )


def run_traffic(
    args: argparse.Namespace,
    traffic: Traffic,
    faults: Faults | None,
    database: Database,
) -> None:
    duration = args.minutes * 60
    events = [] if faults is None else fault_schedule(duration)
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_SEC
    traffic.start()
    print(f"[0:00] traffic started: {args.clients} clients", flush=True)
    while True:
        now = time.monotonic()
        if now - started >= duration:
            break
        if events and now - started >= events[0][0]:
            _, kind, server = events.pop(0)
            fault = faults.run(kind, server)
            down = f" (down {fault.down_sec:.1f} s)" if fault.down_sec else ""
            print(f"[{elapsed(started)}] fault: {fault.label}{down}", flush=True)
            continue
        if now >= next_progress:
            progress(started, traffic, database)
            next_progress += PROGRESS_EVERY_SEC
        wake = [started + duration, next_progress]
        if events:
            wake.append(started + events[0][0])
        time.sleep(max(0.0, min(min(wake) - time.monotonic(), 1.0)))
    print(f"[{elapsed(started)}] stopping the traffic", flush=True)
    traffic.stop()
    progress(started, traffic, database)


def drain(database: Database) -> tuple[float, list[tuple]]:
    """Wait until no document is pending or processing; (seconds, stuck rows)."""
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        try:
            if not database.stuck():
                return waited, []
        except psycopg.Error:
            pass
        if waited > DRAIN_LIMIT_SEC:
            return waited, database.stuck()
        time.sleep(1)


def run_fsck(env: dict) -> tuple[int, str]:
    done = subprocess.run(
        [PYTHON, "manage.py", "fsck", "--min-age", "0"],
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def processes_alive(servers: list[ServerProcess], worker: ManageProcess) -> list[str]:
    """What is not running as it should at the end."""
    missing = []
    for index, server in enumerate(servers, start=1):
        if server.process is None or server.process.poll() is not None:
            missing.append(f"server {index}: the gunicorn master exited")
            continue
        pids = worker_pids(server)
        if len(pids) != WORKERS:
            missing.append(f"server {index}: {len(pids)} workers, not {WORKERS}")
        try:
            health = requests.get(f"{server.base_url}/health", timeout=10)
            if health.status_code != 200:
                missing.append(f"server {index}: /health {health.status_code}")
        except requests.RequestException as exc:
            missing.append(f"server {index}: /health failed: {exc}")
    if not worker.alive():
        missing.append("the db_worker exited")
    return missing


# --- Report -----------------------------------------------------------------------


def print_requests(answers: list[Answer], duration: float) -> None:
    counts = Counter((a.kind, a.status) for a in answers)
    rate = len(answers) / duration
    print(f"\nRequests: {len(answers)} in {duration:.0f} s ({rate:.1f}/s)")
    for kind in MIX:
        row = sorted((status, n) for (k, status), n in counts.items() if k == kind)
        cells = ", ".join(f"{kind} {status or 'no answer'}: {n}" for status, n in row)
        print(f"  {cells or f'{kind}: none'}")
    searches = [a for a in answers if a.kind == "search" and a.status == 200]
    if searches:
        hits = sum(1 for a in searches if a.cached)
        print(f"  searches answered from the cache: {hits} of {len(searches)}")
    codes = Counter((a.kind, a.status, a.code) for a in answers if a.code and a.status)
    if codes:
        print(
            "  error codes: "
            + ", ".join(
                f"{kind} {status} {code}: {n}"
                for (kind, status, code), n in sorted(codes.items())
            )
        )


def log_lines_for(answer: Answer, servers: list[ServerProcess]) -> list[str]:
    """The server's log lines of this request, with one line either side."""
    lines = servers[answer.server].log_text().splitlines()
    picked: list[str] = []
    for index, line in enumerate(lines):
        if answer.request_id and answer.request_id in line:
            for neighbour in lines[max(0, index - 1) : index + 2]:
                if neighbour not in picked:
                    picked.append(neighbour)
    return [line[:3000] for line in picked]


def print_verdict(
    verdict: Verdict, servers: list[ServerProcess], started: float
) -> None:
    if verdict.unexpected_5xx:
        print("\n" + "!" * 78)
        print(f"!!! {len(verdict.unexpected_5xx)} UNDOCUMENTED 5xx ANSWERS")
        print("!" * 78)
        for answer in verdict.unexpected_5xx[:5]:
            print(
                f"\n{answer.kind} on server {answer.server + 1} at "
                f"{answer.sent - started:.1f} s: {answer.status}\nbody: {answer.body}"
            )
            for line in log_lines_for(answer, servers):
                print(f"  log: {line}")
    else:
        print("\nNo 5xx other than documented 503 DATABASE_UNAVAILABLE / 507.")
    if verdict.stray_503:
        print(f"WARNING: {len(verdict.stray_503)} 503s outside the PostgreSQL outage")
        for answer in verdict.stray_503[:5]:
            print(
                f"  {answer.kind} on server {answer.server + 1} at "
                f"{answer.sent - started:.1f} s: {answer.body[:300]}"
            )
    if verdict.unexpected_other:
        print(f"\nUNEXPECTED ANSWERS: {len(verdict.unexpected_other)}")
        for answer in verdict.unexpected_other[:5]:
            print(f"  {answer.kind} {answer.status}: {answer.body[:500]}")
    print(
        f"Requests without an answer: {verdict.explained_errors} while a worker "
        f"of their server was killed, {len(verdict.unexplained_errors)} otherwise"
    )
    for answer in verdict.unexplained_errors[:5]:
        print(
            f"  {answer.kind} on server {answer.server + 1} at "
            f"{answer.sent - started:.1f} s: {answer.code}: {answer.body[:300]}"
        )


def print_faults(faults: list[Fault], started: float) -> None:
    if not faults:
        print("\nFaults: none (--no-faults)")
        return
    print("\nFaults, and seconds from each to the first success of what it affected:")
    for fault in faults:
        down = f", down {fault.down_sec:.1f} s" if fault.down_sec else ""
        print(f"  [{fault.at - started:6.1f} s] {fault.label}{down}")
        for label, seconds in fault.recoveries.items():
            shown = "NOT SEEN" if seconds is None else f"{seconds:.2f} s"
            print(f"      {label}: {shown}")
        for note in fault.notes:
            print(f"      ({note})")


def print_documents(
    statuses: dict[str, int], failures: list[tuple], waited: float, stuck: list
) -> None:
    shown = ", ".join(f"{status} {n}" for status, n in sorted(statuses.items()))
    print(f"\nDocuments after the drain ({waited:.0f} s): {shown or 'none'}")
    for error, count in failures[:5]:
        print(f"  failed x{count}: {error[:200]}")
    if stuck:
        print(f"STUCK DOCUMENTS ({len(stuck)}), still pending or processing:")
        for row in stuck[:20]:
            print(
                "  id {} store {} {} {} owner={!r} attempts={} updated {}".format(*row)
            )


def print_stuck_history(
    stuck: list, database: Database, logs: dict[str, str], started_wall: float
) -> None:
    """What the task table and the logs say of the first stuck documents."""
    records = [
        (name, record)
        for name, text in logs.items()
        for record in json_records(text)
        if "document_id" in record
    ]
    for document_id, *_ in stuck[:3]:
        print(f"\nDocument {document_id}: ingestion tasks (seconds into the run)")
        for status, *times, workers, exception in database.tasks_of(document_id):
            enqueued, began, ended = (
                "-" if t is None else f"{float(t) - started_wall:.1f}" for t in times
            )
            print(
                f"  {status}: enqueued {enqueued}, started {began}, finished "
                f"{ended}, workers {workers}, exception {exception or '-'}"
            )
        print(f"Document {document_id}: log records")
        for name, record in records:
            if record.get("document_id") == document_id:
                print(
                    f"  {record.get('timestamp')} {name}: {record.get('level')} "
                    f"{record.get('event')} {record.get('error', '')}"[:300]
                )


def json_records(text: str) -> list[dict]:
    """The JSON log records in a process's output (other lines are skipped)."""
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def process_logs(servers: list[ServerProcess], worker: ManageProcess) -> dict:
    logs = {f"server {i}": s.log_text() for i, s in enumerate(servers, start=1)}
    logs["db_worker"] = worker.log_text()
    return logs


def print_log_errors(logs: dict[str, str]) -> None:
    """Log records at ERROR or above, by process and event, with the end of the
    first one's traceback (for context: a killed worker logs one, for example)."""
    seen: dict[tuple[str, str], list[dict]] = {}
    for name, text in logs.items():
        for record in json_records(text):
            if record.get("level") not in ("error", "critical"):
                continue
            seen.setdefault((name, str(record.get("event"))[:120]), []).append(record)
    if not seen:
        print("\nLog records at ERROR: none")
        return
    print("\nLog records at ERROR, by process and event:")
    for (name, event), records in sorted(seen.items()):
        print(f"  {name}: {len(records)} x {event}")
        first = records[0]
        context = {k: first[k] for k in ("document_id", "error") if k in first}
        if context:
            print(f"      first: {context}")
        for line in str(first.get("exception", "")).splitlines()[-3:]:
            print(f"      {line[:300]}")


def print_fsck(
    status: int,
    output: str,
    media_root: Path,
    answers: list[Answer],
    faults: list[Fault],
    started: float,
) -> None:
    """fsck's verdict; for each file it found without a document, its store's
    story and the requests that wrote and then touched it."""
    print(f"\nmanage.py fsck --min-age 0: exit status {status}\n{output}")
    folders: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith("stray_file: "):
            name = line.removeprefix("stray_file: ").split(":")[0]
            folders.setdefault(name.split("/")[1], []).append(name)
    for uid, names in folders.items():
        store = store_story(uid, answers, started)
        print(f"Stray files of {store[1]}:")
        for name in names:
            with contextlib.suppress(OSError):
                # mtime is wall-clock time: in monotonic terms, as the answers are.
                mtime = (media_root / name).stat().st_mtime
                written = mtime - time.time() + time.monotonic()
                print(f"  {name.split('/')[-1]}: written {written - started:.1f} s")
                for line in file_story(written, store[0], answers, faults, started):
                    print(f"      {line}")


def store_story(uid: str, answers: list[Answer], started: float) -> tuple[str, str]:
    """A store folder's store name, and what creating and deleting it answered."""
    created = [a for a in answers if a.uid == uid]
    if not created:
        return "", f"store folder {uid}"
    name = created[0].store
    deletes = [
        f"{describe(a, started)}"
        for a in answers
        if a.kind == "delete-store" and a.store == name and a.sent >= created[0].sent
    ]
    return name, (
        f"store {name} (created {created[0].sent - started:.1f} s into the run; "
        f"deleted: {'; '.join(deletes) or 'never'})"
    )


def file_story(
    written: float, store: str, answers: list[Answer], faults: list[Fault], started
) -> list[str]:
    """The uploads to ``store`` under way when a file was written, what later
    requests did to their documents, and a worker kill right after."""
    lines = []
    uploads = [
        a
        for a in answers
        if a.kind == "upload"
        and a.store == store
        and a.sent - 0.5 <= written <= a.received + 0.5
    ]
    for upload in uploads:
        lines.append(f"upload {describe(upload, started)}")
        lines += [
            f"then {a.kind} {describe(a, started)}"
            for a in answers
            if upload.document_id is not None
            and a.document_id == upload.document_id
            and a.kind in ("reindex", "delete")
        ]
    kills = [f for f in faults if f.kind == "worker-kill" and f.at >= written]
    if kills and kills[0].at - written < 5:
        lines.append(f"{kills[0].at - written:.2f} s later: {kills[0].label}")
    return lines


def describe(answer: Answer, started: float) -> str:
    status = answer.status or f"no answer ({answer.code})"
    document = "" if answer.document_id is None else f", document {answer.document_id}"
    return (
        f"sent {answer.sent - started:.1f} s to server {answer.server + 1}: "
        f"{status} after {answer.received - answer.sent:.2f} s{document}"
    )


def print_header(args: argparse.Namespace, postgres, redis) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average before the run {load}"
    )
    print(
        f"service: {SERVERS} gunicorn servers x {WORKERS} gthread workers, "
        f"ENVIRONMENT=production; 1 db_worker (TASKS_BACKEND=database); "
        f"MAINTENANCE_INTERVAL_SEC={MAINTENANCE_INTERVAL_SEC}"
    )
    print(
        f"         {postgres.version()} (port {postgres.port}), "
        f"{redis.version()} (port {redis.port})"
    )
    faults = (
        "none"
        if args.no_faults
        else ", ".join(
            f"{at:.0f} s {kind}" + ("" if server is None else f" (server {server + 1})")
            for at, kind, server in fault_schedule(args.minutes * 60)
        )
    )
    print(
        f"traffic: {args.minutes:g} min, {args.clients} clients, seed {args.seed}; "
        f"mix {', '.join(f'{k} {v:g}' for k, v in MIX.items())}"
    )
    print(f"faults:  {faults}\n", flush=True)


# --- Main ---------------------------------------------------------------------------


@dataclass
class System:
    """Everything the soak started, all stopped by the exit stack."""

    env: dict
    key: str
    redis: PrivateRedis
    postgres: PrivatePostgres
    servers: list[ServerProcess]
    worker: ManageProcess
    database: Database


def start_system(
    args: argparse.Namespace, folder: Path, stack: contextlib.ExitStack
) -> System:
    redis = stack.enter_context(PrivateRedis(folder))
    postgres = stack.enter_context(PrivatePostgres(folder / "postgres"))
    print_header(args, postgres, redis)
    env = service_env(folder, postgres, redis)
    prepare_database(env)
    key = create_api_key(env, scope="write")
    servers = [
        stack.enter_context(
            ServerProcess(own_metrics(env, folder, f"web{n}"), startup_timeout=120)
        )
        for n in range(1, SERVERS + 1)
    ]
    worker = stack.enter_context(
        ManageProcess(own_metrics(env, folder, "worker"), "db_worker")
    )
    database = Database(postgres.dsn)
    stack.callback(database.close)
    return System(env, key, redis, postgres, servers, worker, database)


def problems_of(
    verdict: Verdict, faults: list[Fault], statuses: dict[str, int], stuck: list
) -> list[str]:
    problems = []
    if verdict.unexpected_5xx:
        problems.append(f"{len(verdict.unexpected_5xx)} undocumented 5xx")
    if verdict.unexpected_other:
        problems.append(f"{len(verdict.unexpected_other)} unexpected answers")
    if verdict.unexplained_errors:
        count = len(verdict.unexplained_errors)
        problems.append(f"{count} requests without an answer and no worker kill")
    if stuck:
        problems.append(f"{len(stuck)} stuck documents")
    if statuses.get("failed"):
        # Every file the clients send is valid: a failure is ingestion's own.
        problems.append(f"{statuses['failed']} documents failed")
    problems += [
        f"recovery not seen: {fault.label}: {label}"
        for fault in faults
        for label, seconds in fault.recoveries.items()
        if seconds is None
    ]
    return problems


def soak(args: argparse.Namespace, folder: Path, stack: contextlib.ExitStack) -> int:
    system = start_system(args, folder, stack)
    database = system.database
    traffic = Traffic(
        [server.base_url for server in system.servers],
        system.key,
        Corpus(args.seed),
        args.seed,
        args.clients,
    )
    setup = seed_stores(traffic, database)
    stack.callback(traffic.stop)
    faults = None
    if not args.no_faults:
        faults = Faults(
            system.servers,
            system.worker,
            system.redis,
            system.postgres,
            database,
            random.Random(args.seed),
        )
        stack.callback(faults.stopping.set)

    started, started_wall = time.monotonic(), time.time()
    run_traffic(args, traffic, faults, database)
    duration = time.monotonic() - started
    waited, stuck = drain(database)
    if faults is not None:
        time.sleep(1)  # the last polls of the watchers
        faults.stopping.set()
    fsck_status, fsck_output = run_fsck(system.env)
    missing = processes_alive(system.servers, system.worker)

    answers = traffic.tally.snapshot()
    done = faults.done if faults else []
    traffic_recoveries(done, answers)
    verdict = judge(answers, done)
    logs = process_logs(system.servers, system.worker)
    print_requests(answers, duration)
    print_verdict(verdict, system.servers, started)
    print_faults(done, started)
    statuses = database.statuses()
    print_documents(statuses, database.failures(), waited, stuck)
    print_stuck_history(stuck, database, logs, started_wall)
    print_log_errors(logs)
    media = Path(system.env["DATA_DIR"]) / "media"
    print_fsck(fsck_status, fsck_output, media, setup + answers, done, started)

    problems = problems_of(verdict, done, statuses, stuck) + missing
    if fsck_status != 0:
        problems.append(f"fsck --min-age 0 exited {fsck_status}")
    problems += [f"client thread crashed: {crash}" for crash in traffic.crashes[:5]]
    print()
    if problems:
        print("FAIL:\n" + "\n".join(f"  - {problem}" for problem in problems))
        return 1
    print("PASS: no undocumented 5xx, nothing stuck, every fault recovered, fsck clean")
    return 0


def check_tools() -> None:
    if not (PG_BIN / "initdb").exists():
        sys.exit(f"PostgreSQL 15's server binaries are not in {PG_BIN}")
    if not shutil.which("redis-server"):
        sys.exit("redis-server is not on PATH (apt-get install redis-server)")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="traffic minutes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=6, help="client threads")
    parser.add_argument("--no-faults", action="store_true", help="traffic only")
    args = parser.parse_args()
    check_tools()
    # Ctrl-C, also when started in the background (where SIGINT is ignored), and
    # SIGTERM stop everything the run started.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    folder = Path(tempfile.mkdtemp(prefix="fh-soak-"))
    folder.chmod(0o711)  # the postgres user reaches its cluster inside
    try:
        with contextlib.ExitStack() as stack:
            return soak(args, folder, stack)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
