"""bench.settings without the metrics and logging middleware (bench/observability.py).

The request id goes too: it exists for the log lines, so it counts as logging.
"""

from bench.settings import *  # noqa: F403
from bench.settings import MIDDLEWARE

OBSERVABILITY_MIDDLEWARE = (
    "monitoring.middleware.MetricsMiddleware",
    "flamehaven.middleware.RequestLogMiddleware",
)

MIDDLEWARE = [name for name in MIDDLEWARE if name not in OBSERVABILITY_MIDDLEWARE]
