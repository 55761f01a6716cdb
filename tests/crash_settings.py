"""The service's settings with ``tests.crash_urls``, for server-process tests."""

from flamehaven.settings import *  # noqa: F403

ROOT_URLCONF = "tests.crash_urls"
