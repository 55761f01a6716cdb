"""/health and the free space of the filesystem holding MEDIA_ROOT."""

import secrets
from pathlib import Path

import psutil
import pytest

from monitoring.health import data_disk_path


def _free_percent(path) -> float:
    return round(100 - psutil.disk_usage(data_disk_path(path)).percent, 1)


@pytest.mark.django_db
def test_enough_free_space_is_ok(client, settings, media_root):
    settings.DISK_FREE_MIN_PERCENT = 0.0

    response = client.get("/health")

    body = response.json()
    assert (response.status_code, body["status"]) == (200, "ok")
    assert body["disk"]["ok"] is True
    assert body["disk"]["min_free_percent"] == 0.0
    assert body["disk"]["free_percent"] == pytest.approx(
        _free_percent(media_root), abs=1
    )
    assert body["disk"]["free_mb"] > 0
    # The same disk as system.disk_percent: the two add up to 100.
    assert body["disk"]["free_percent"] + body["system"]["disk_percent"] == (
        pytest.approx(100, abs=0.2)
    )


@pytest.mark.django_db
def test_less_free_space_than_the_minimum_is_degraded_not_unhealthy(
    client, settings, media_root
):
    free = _free_percent(media_root)
    settings.DISK_FREE_MIN_PERCENT = min(100.0, free + 1)

    response = client.get("/health")

    body = response.json()
    assert (response.status_code, body["status"]) == (200, "degraded")
    assert body["disk"]["ok"] is False
    assert body["disk"]["free_percent"] < body["disk"]["min_free_percent"]
    assert body["database"]["ok"] is True
    assert body["cache"]["ok"] is True


SECOND_FILESYSTEM = Path("/dev/shm")  # a tmpfs on Linux


@pytest.mark.django_db
def test_the_disk_measured_is_the_one_holding_media_root(client, settings, tmp_path):
    """MEDIA_ROOT on another filesystem, and not made yet: the filesystem of
    its nearest existing folder is measured, not the one the service runs on."""
    if not SECOND_FILESYSTEM.is_dir() or (
        SECOND_FILESYSTEM.stat().st_dev == tmp_path.stat().st_dev
    ):
        pytest.skip(f"needs {SECOND_FILESYSTEM} on a filesystem of its own")
    settings.MEDIA_ROOT = SECOND_FILESYSTEM / f"fh-{tmp_path.name}" / "media"
    settings.DISK_FREE_MIN_PERCENT = 0.0
    there, here = _free_percent(SECOND_FILESYSTEM), _free_percent(tmp_path)
    if abs(there - here) < 5:
        pytest.skip("both filesystems have about as much room free")

    free = client.get("/health").json()["disk"]["free_percent"]

    assert free == pytest.approx(there, abs=1)


@pytest.mark.parametrize("value", ["-1", "101"])
def test_a_minimum_that_is_no_percentage_stops_the_start(value):
    from tests.flamehaven.test_project_files import _settings_in_production

    result = _settings_in_production(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
        DISK_FREE_MIN_PERCENT=value,
    )

    assert result.returncode != 0
    assert "DISK_FREE_MIN_PERCENT is a percentage" in result.stderr
