"""Run the real service in subprocesses, for tests and benchmarks.

Settings are read once per process, so a test that needs the service as it runs in
production (several gunicorn workers, one Redis, a database file they share) starts
it as child processes with its own environment:

    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "WORKERS": "2"}
    prepare_database(env)
    key = create_api_key(env)
    with ServerProcess(env) as server:
        urllib.request.urlopen(f"{server.base_url}/health")

`TcpProxy` stands between the service and Redis (or anything on TCP), so a test
can take the dependency away mid-run and bring it back.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Self

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
# Where test processes keep the built-in model's ONNX graph, built once per
# machine (the same folder the embedding tests use).
MODEL_CACHE = Path(tempfile.gettempdir()) / "flamehaven-test-models"
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable
HOST = "127.0.0.1"
# Benchmarks and volume tests raise the rate limits, never switch them off.
HIGH_RATE_LIMITS = {
    f"RATE_LIMIT_{group}": "1000000/m"
    for group in ("UPLOAD_SINGLE", "UPLOAD_MULTIPLE", "SEARCH", "STORES", "READ")
    + ("MONITORING",)
}


def server_env(folder: Path, **overrides: str) -> dict[str, str]:
    """A server's environment with everything of its own under `folder`.

    SQLite, locmem, one worker, development settings with DEBUG off; any
    setting can be overridden (e.g. ``REDIS_URL=...``, ``WORKERS="2"``).
    """
    return {
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "DATA_DIR": str(folder / "data"),
        "REDIS_URL": "",
        "WORKERS": "1",
        "ENVIRONMENT": "development",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "PROMETHEUS_MULTIPROC_DIR": str(folder / "prometheus"),
        # Lexical only unless a test asks (EMBEDDINGS="builtin"; keep
        # EMBEDDINGS_CACHE_DIR=MODEL_CACHE so the model's graph is built once).
        "EMBEDDINGS": "off",
        "EMBEDDINGS_CACHE_DIR": str(MODEL_CACHE),
        **overrides,
    }


def poll_health(
    base_url: str, until: Callable[[requests.Response], bool], timeout: float = 15
) -> tuple[requests.Response, float]:
    """GET /health until ``until(response)``: the response and the seconds it
    took. /health answers from a background probe, so a change shows within
    about HEALTH_PROBE_SEC, not at once."""
    started = time.monotonic()
    while True:
        response = requests.get(f"{base_url}/health", timeout=10)
        waited = time.monotonic() - started
        if until(response) or waited > timeout:
            return response, waited
        time.sleep(0.1)


def free_port() -> int:
    """A port free right now; another process may take it before it is used."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port where connections are refused, held so nobody else takes it.

    The socket is bound but not listening; a bare free_port() could be handed
    out again (to a proxy, say) before the test is done with it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]


def child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """os.environ with `env` over it; unbuffered so logs reach the files at once."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}


def manage(env: Mapping[str, str] | None, *args: str, timeout: float = 120) -> str:
    """Run `manage.py ARGS` in a child process; return its stdout."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} exited {result.returncode}:\n"
            f"{_tail(result.stderr)}"
        )
    return result.stdout


def prepare_database(env: Mapping[str, str] | None) -> None:
    """Migrate the database that `env` points at, before any server starts.

    Several workers migrating one SQLite file at once would race; one migrate
    before them does not.
    """
    manage(env, "migrate", "--noinput")


def create_api_key(env: Mapping[str, str] | None, scope: str = "admin") -> str:
    """A new API key of `scope` in the database that `env` points at."""
    name = f"test-{scope}-{secrets.token_hex(4)}"
    return manage(env, "create_api_key", name, "--scope", scope).strip()


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


class ServerProcess:
    """The service on 127.0.0.1:`port`, under gunicorn (or runserver), as a context.

    stdout and stderr go to files, never pipes, so a chatty server cannot block on
    a full pipe. The server runs in its own session; stopping it signals the whole
    process group (the gunicorn master and its workers): SIGTERM, then SIGKILL
    after `stop_timeout` seconds.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        runserver: bool = False,
        gunicorn_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.env = dict(env or {})
        self.port = port or free_port()
        self.runserver = runserver
        # Command-line options win over deploy/gunicorn.conf.py's.
        self.gunicorn_args = list(gunicorn_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.base_url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen | None = None
        self._log_dir: Path | None = None
        self._final_logs: tuple[str, str] | None = None

    def command(self) -> list[str]:
        if self.runserver:
            return [PYTHON, "manage.py", "runserver", "--noreload", self._address()]
        gunicorn = BIN / "gunicorn"
        program = [str(gunicorn)] if gunicorn.exists() else [PYTHON, "-m", "gunicorn"]
        return [*program, "-c", "deploy/gunicorn.conf.py", *self.gunicorn_args]

    def _address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> Self:
        if self.process is not None:
            raise RuntimeError("The server is already started.")
        self._log_dir = Path(tempfile.mkdtemp(prefix="fh-server-"))
        self._final_logs = None
        env = child_env({"HOST": HOST, "PORT": str(self.port), **self.env})
        with (
            open(self._log_dir / "stdout.log", "wb") as stdout,
            open(self._log_dir / "stderr.log", "wb") as stderr,
        ):
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll GET /health until it answers (any HTTP status) or time runs out."""
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"The server exited with {self.process.returncode} before "
                    f"answering /health:\n{_tail(self._read_log('stderr'))}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered; what it said is the caller's business
            except (OSError, http.client.HTTPException):
                pass  # not listening yet, or a worker restarting
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"The server did not answer /health within "
                    f"{self.startup_timeout:g} s:\n{_tail(self._read_log('stderr'))}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal(process, signal.SIGKILL)
                process.wait()
            # Workers may outlive a master that was killed; the group goes too.
            self._signal(process, signal.SIGKILL)
        if self._log_dir is not None:
            self._final_logs = (self._read_log("stdout"), self._read_log("stderr"))
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    @staticmethod
    def _signal(process: subprocess.Popen, signum: int) -> None:
        # The group id is the child's pid (start_new_session), even after it exits.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)

    def _read_log(self, name: str) -> str:
        if self._log_dir is None:
            if self._final_logs is None:
                return ""
            return self._final_logs[0 if name == "stdout" else 1]
        path = self._log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_text(self) -> str:
        """Everything the server wrote so far (also after it stopped)."""
        return self._read_log("stdout") + self._read_log("stderr")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.cut = False

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]


def _abort(sock: socket.socket) -> None:
    """Make the next close() send RST, and wake any thread waiting on `sock`."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`, until stopped.

    stop() closes the listening socket and resets every live connection, so clients
    fail at once and new connections are refused, as when the target goes away;
    start() listens on the same port again.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        port: int | None = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._links: set[_Link] = set()
        self._threads: set[threading.Thread] = set()

    @property
    def address(self) -> tuple[str, int]:
        return HOST, self.port

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> Self:
        with self._lock:
            if self._listener is not None:
                return self
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind(self.address)
                listener.listen(64)
            except OSError:
                listener.close()
                raise
            self._listener = listener
            self._acceptor = threading.Thread(
                target=self._accept_loop,
                args=(listener,),
                name=f"tcp-proxy-{self.port}",
                daemon=True,
            )
            self._acceptor.start()
        return self

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            acceptor, self._acceptor = self._acceptor, None
            links, self._links = list(self._links), set()
            threads, self._threads = list(self._threads), set()
            for link in links:
                link.cut = True
        if listener is not None:
            # shutdown() wakes the accept() blocked in the acceptor thread on Linux;
            # close() alone would not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for link in links:
            for sock in link.sockets():
                _abort(sock)
        for thread in [acceptor, *threads]:
            if thread is not None:
                thread.join(timeout=2)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stop() closed the listener
            link = _Link(client)
            thread = threading.Thread(target=self._pump, args=(link,), daemon=True)
            with self._lock:
                if self._listener is not listener:
                    _abort(client)
                    client.close()
                    return
                self._links.add(link)
                self._threads.add(thread)
            thread.start()

    def _pump(self, link: _Link) -> None:
        try:
            try:
                upstream = socket.create_connection(
                    self.target, timeout=self.connect_timeout
                )
            except OSError:
                _abort(link.client)  # the target is down: so is the proxy for them
                return
            upstream.settimeout(None)
            with self._lock:
                link.upstream = upstream
                cut = link.cut
            if cut:
                _abort(upstream)
                return
            self._forward(link.client, upstream)
        finally:
            with self._lock:
                self._links.discard(link)
                self._threads.discard(threading.current_thread())
            for sock in link.sockets():
                sock.close()

    @staticmethod
    def _forward(client: socket.socket, upstream: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            try:
                while True:
                    for key, _ in selector.select():
                        data = key.fileobj.recv(65536)
                        if not data:
                            return  # one side closed: close the other too
                        key.data.sendall(data)
            except OSError:
                return

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class ManageProcess:
    """`manage.py ARGS` running in the background (a db_worker, say), as a context.

    Output goes to a file; ``kill`` sends a real signal, as an operator or the
    kernel would.
    """

    def __init__(self, env: Mapping[str, str] | None, *args: str) -> None:
        self.env = dict(env or {})
        self.args = args
        self.process: subprocess.Popen | None = None
        self._log = Path(tempfile.mkstemp(prefix="fh-manage-", suffix=".log")[1])

    def start(self) -> Self:
        with open(self._log, "ab") as log:
            self.process = subprocess.Popen(
                [PYTHON, "manage.py", *self.args],
                cwd=ROOT,
                env=child_env(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, signum: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)
        self.process.wait(timeout=30)

    def log_text(self) -> str:
        return self._log.read_text(errors="replace")

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
        self._log.unlink(missing_ok=True)


def worker_pids(server: ServerProcess) -> list[int]:
    """The pids of a gunicorn master's workers."""
    import psutil

    return [child.pid for child in psutil.Process(server.process.pid).children()]


@contextlib.contextmanager
def scratch_postgres(prefix: str = "fh") -> Iterator[tuple[dict, str]]:
    """A PostgreSQL database of the caller's own on the test settings' server,
    dropped afterwards: ``(address, name)``, address as psycopg.connect takes it."""
    from django.conf import settings

    server = settings.DATABASES["default"]
    address = {
        "host": server["HOST"] or "127.0.0.1",
        "port": int(server["PORT"] or 5432),
        "user": server["USER"],
    }
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(**address, dbname="postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield address, name
    finally:
        with psycopg.connect(**address, dbname="postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Tests that stop the machine's PostgreSQL run only where this says so (CI):
# elsewhere other work may be using it.
ALLOW_POSTGRES_RESTART = os.environ.get("ALLOW_POSTGRES_RESTART") == "1"


def pg_ctlcluster(action: str, address: dict | None = None) -> None:
    """Stop or start the machine's PostgreSQL (tests that do must start it again,
    even when they fail); with ``address``, wait until it answers."""
    versions = sorted(os.listdir("/etc/postgresql"))
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", action],
        check=True,
        capture_output=True,
        timeout=120,
    )
    if address is not None:
        wait_for_postgresql(address)


def wait_for_postgresql(address: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(**address, dbname="postgres", connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
