"""The service's settings with the bench's URLs (bench/urls.py)."""

from flamehaven.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
