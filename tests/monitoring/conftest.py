"""A scrape after some traffic, to check the deploy/ files' metric names against."""

import pytest

from tests.conftest import upload
from tests.monitoring.promql import scraped_names


@pytest.fixture
def names_in_a_real_scrape(scraper, store, write_client, read_client) -> set[str]:
    """Every series name a scrape offers after an upload, a miss, a hit and an
    error (so that labelled counters have samples, not only # TYPE lines)."""
    upload(write_client, "default", {"a.txt": b"Bread needs flour."})
    read_client.get("/api/search", {"q": "bread"})
    read_client.get("/api/search", {"q": "bread"})
    assert read_client.get("/api/search").status_code == 400  # for errors_total
    return scraped_names(scraper.get("/prometheus").content.decode())
