"""Temporary upload files: named after their process, removed once it is gone.

Django deletes a temporary upload file when the request is done with it; a
worker killed while a body streams in never is, and its file stays behind.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from stores.uploads import (
    OwnedTemporaryUploadedFile,
    _host_tag,
    abandoned_temp_files,
    remove_abandoned_temp_files,
)
from tests.factories import multipart_body
from tests.servers import (
    PYTHON,
    ROOT,
    ServerProcess,
    child_env,
    create_api_key,
    manage,
    prepare_database,
    server_env,
)

_LEAVE_A_FILE = """
import os
import django

django.setup()
from stores.uploads import OwnedTemporaryUploadedFile

file = OwnedTemporaryUploadedFile("notes.pdf", "application/pdf", 0, None)
file.write(b"half of a body")
file.flush()
print(file.temporary_file_path(), flush=True)
os._exit(0)  # as a killed worker: nothing closes, so nothing deletes, the file
"""


def leave_temp_file(folder: Path) -> Path:
    """A temporary upload file left by a process that has exited, in ``folder``."""
    result = subprocess.run(
        [PYTHON, "-c", _LEAVE_A_FILE],
        cwd=ROOT,
        env=child_env(
            {
                "DJANGO_SETTINGS_MODULE": "flamehaven.settings",
                "UPLOAD_TEMP_DIR": str(folder),
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == folder and path.exists()
    return path


def test_uploads_stream_to_files_named_after_their_process(upload_temp_dir):
    file = OwnedTemporaryUploadedFile("notes.pdf", "application/pdf", 0, None)
    path = Path(file.temporary_file_path())

    assert path.parent == upload_temp_dir
    assert path.name.startswith(f"upload-{_host_tag()}-{os.getpid()}-")
    assert path.suffix == ".upload"
    assert abandoned_temp_files() == []  # its writer, this process, is alive
    file.close()
    assert not path.exists()


def _temp_file(folder: Path, name: str, *, age: float = 0) -> Path:
    path = folder / name
    path.write_bytes(b"part of a body")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_only_files_whose_writer_is_gone_are_removed(upload_temp_dir):
    host, me, day = _host_tag(), os.getpid(), 24 * 3600
    dead = leave_temp_file(upload_temp_dir)
    live = _temp_file(upload_temp_dir, f"upload-{host}-{me}-e5f6g7h8.upload")
    # Our pid, but written long before this process started: the pid was reused.
    reused = _temp_file(
        upload_temp_dir, f"upload-{host}-{me}-i9j0k1l2.upload", age=400 * day
    )
    # Another machine's files (a shared volume) can only be judged by age.
    foreign_fresh = _temp_file(
        upload_temp_dir, f"upload-elsewhere-{me}-m3n4o5p6.upload"
    )
    foreign_old = _temp_file(
        upload_temp_dir, "upload-elsewhere-1-q7r8s9t0.upload", age=day
    )
    unrelated = _temp_file(upload_temp_dir, "notes.txt", age=400 * day)

    removed = remove_abandoned_temp_files()

    assert sorted(removed) == sorted([dead, reused, foreign_old])
    assert sorted(upload_temp_dir.iterdir()) == sorted([live, foreign_fresh, unrelated])
    assert remove_abandoned_temp_files() == []


def _wait_for(find, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (found := find()):
        if time.monotonic() > deadline:
            raise TimeoutError("nothing appeared")
        time.sleep(0.05)
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_upload_leaves_a_file_that_fsck_removes(tmp_path):
    # No maintenance thread: it would remove the file before the test looks.
    env = server_env(tmp_path, BACKGROUND_MAINTENANCE="false")
    prepare_database(env)
    key = create_api_key(env, "write")
    server_temp_dir = tmp_path / "data" / "tmp"  # UPLOAD_TEMP_DIR's default
    body, content_type = multipart_body("slow.txt", b"Words sent slowly. " * 60_000)

    with ServerProcess(env) as server:
        headers = {"Authorization": f"Api-Key {key}"}
        created = requests.post(
            f"{server.base_url}/api/stores/",
            json={"name": "live"},
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        [worker] = psutil.Process(server.process.pid).children()
        request_head = (
            "POST /api/stores/live/documents/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Api-Key {key}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request_head + body[: len(body) // 2])
            [left] = _wait_for(lambda: list(server_temp_dir.glob("upload-*.upload")))
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)

        assert left.exists()
        assert f"-{worker.pid}-" in left.name
        # fsck from another process, on this server's database and folders.
        report = subprocess.run(
            [PYTHON, "manage.py", "fsck"],
            cwd=ROOT,
            env=child_env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert report.returncode == 1, report.stderr
        assert f"abandoned_upload: {left.name}: " in report.stdout
        manage(env, "fsck", "--fix")  # exits 0, or this raises
        assert not left.exists()

        # The master started a new worker, which takes uploads as before.
        accepted = requests.post(
            f"{server.base_url}/api/stores/live/documents/",
            files={"file": ("small.txt", b"Words sent at once.")},
            headers=headers,
            timeout=30,
        )
        assert accepted.status_code == 201, accepted.text
        assert list(server_temp_dir.iterdir()) == []
