"""A full disk: uploads are refused with 507 and leave no partial file behind.

MEDIA_ROOT is a 5 MB tmpfs mounted by the test (skipped where mounting is not
allowed); the server runs as operators run it, under gunicorn.
"""

import contextlib
import subprocess
import uuid

import pytest
import requests

from tests.servers import (
    ServerProcess,
    create_api_key,
    poll_health,
    prepare_database,
)
from tests.stores.conftest import fsck, service_state

pytestmark = [pytest.mark.slow]


@contextlib.contextmanager
def small_tmpfs(path, size: str = "5m"):
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_uploads_to_a_full_disk_are_507_and_leave_nothing_half_stored(
    service_env, tmp_path
):
    with small_tmpfs(tmp_path / "media") as media:
        env = {**service_env, "MEDIA_ROOT": str(media)}
        prepare_database(env)
        key = create_api_key(env, "write")
        with ServerProcess(env) as server:
            session = requests.Session()
            session.headers["Authorization"] = f"Api-Key {key}"
            url = f"{server.base_url}/api/stores/"
            assert session.post(url, json={"name": "s"}, timeout=10).ok
            answers = []
            for n in range(40):
                text = f"Tide table {n} {uuid.uuid4()}. ".encode() * 6_000
                answer = session.post(
                    f"{url}s/documents/",
                    files={"file": (f"tides{n}.txt", text[:300_000])},
                    timeout=60,
                )
                answers.append(answer)
                if answer.status_code == 507:
                    break
            health = poll_health(server.base_url, lambda r: r.json()["status"] != "ok")[
                0
            ].json()

        codes = [answer.status_code for answer in answers]
        assert set(codes) == {201, 507}, codes
        refused = answers[-1].json()
        assert refused["error"] == "INSUFFICIENT_STORAGE"
        assert "nothing was stored" in refused["message"]
        state = service_state(env)
        assert len(state["documents"]) == codes.count(201)
        sizes = {f.name: f.stat().st_size for f in media.rglob("*") if f.is_file()}
        assert len(sizes) == codes.count(201)
        assert set(sizes.values()) == {300_000}  # no empty or partial file
        assert health["status"] == "degraded"
        fsck(env)
