"""gunicorn settings for production: `gunicorn -c deploy/gunicorn.conf.py`.

gthread workers, so a worker waiting on Gemini or the database still serves its
other threads. Several workers need Redis (REDIS_URL) for a shared cache.
"""

import os
import shutil
import tempfile
from pathlib import Path

import environ
from gunicorn.glogging import Logger

from flamehaven.logging import logging_config

# The same .env file as the settings (the real environment wins).
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)

wsgi_app = "flamehaven.wsgi:application"
# A container listens on all interfaces; set HOST to narrow it.
host = os.environ.get("HOST", "0.0.0.0")  # noqa: S104
bind = f"{host}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WORKERS", "4"))
worker_class = "gthread"
threads = int(os.environ.get("THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
# gunicorn's largest request line (the default is 4094): room for a long search
# by GET, e.g. 1,000 accented characters; longer ones belong in a POST body.
limit_request_line = 8190
reload = os.environ.get("RELOAD", "false").lower() in ("1", "true", "yes")
# Our access-log line (JSON in production) replaces gunicorn's, and gunicorn's
# own lines go through the service's log format (settings read the same names).
accesslog = None
errorlog = "-"


class _Logger(Logger):
    """gunicorn's logger without its access line, which ours replaces: with a
    logging config gunicorn builds the line's fields on every request even when
    no handler takes it (3% of a cache hit's time under load, py-spy)."""

    def access(self, resp, req, environ, request_time):
        pass


logger_class = _Logger
logconfig_dict = logging_config(
    json_logs=os.environ.get("ENVIRONMENT", "development") == "production",
    level=os.environ.get("LOG_LEVEL", "INFO"),
)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Every worker writes its metric samples here and /prometheus sums them. Set
# before the workers start, so prometheus_client in each of them sees it.
multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(
    tempfile.gettempdir(), f"flamehaven-prometheus-{os.getpid()}"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir


def on_starting(server):
    """Start from an empty samples folder: old files would add old counts."""
    shutil.rmtree(multiproc_dir, ignore_errors=True)
    os.makedirs(multiproc_dir, exist_ok=True)


def child_exit(server, worker):
    """A dead worker's gauges stop counting; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Django runs no system checks under gunicorn: run the one that matters here."""
    if worker.age == 1:  # the first worker speaks for the server, once
        from flamehaven.checks import log_shared_cache_warnings

        log_shared_cache_warnings(workers=worker.cfg.workers)
