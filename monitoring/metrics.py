"""Every metric of the service, defined once (names and labels: DESIGN.md, "Metrics").

The code records them where the event happens: HTTP requests and errors in
``monitoring.middleware``, uploads in the upload service, searches in the search
service, cache hits and misses in ``search.cache``, failed logins and lockouts in
``accounts.lockout``. ``endpoint`` labels are URL route names, never raw paths,
so label sets stay bounded.

Rate limits are counted in ``flamehaven.ratelimit``; the scrape-time gauges
(system_*, stores_total, cache_size) live in ``monitoring.exposition``.
"""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route name and status code.",
    ["method", "endpoint", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route name.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ACTIVE_REQUESTS = Gauge(
    "active_requests",
    "HTTP requests being answered now.",
    multiprocess_mode="livesum",
)
FILE_UPLOADS = Counter(
    "file_uploads_total",
    "Uploaded files: success (stored), duplicate (already stored), rejected.",
    ["store", "status"],
)
FILE_UPLOAD_SIZE = Histogram(
    "file_upload_size_bytes",
    "Size of each stored file.",
    buckets=(1e3, 1e4, 1e5, 1e6, 5e6, 1e7, 2.5e7, 5e7, 1e8),
)
FILE_UPLOAD_DURATION = Histogram(
    "file_upload_duration_seconds",
    "Time to store (and, with immediate tasks, index) one upload request.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SEARCH_REQUESTS = Counter(
    "search_requests_total",
    "Searches of an existing store, by backend, outcome and cache use.",
    ["store", "backend", "status", "cached"],
)
SEARCH_DURATION = Histogram(
    "search_duration_seconds",
    "Time the search service took, by backend and cache use.",
    ["backend", "cached"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SEARCH_RESULTS = Histogram(
    "search_results_count",
    "Sources in each answer.",
    buckets=(0, 1, 2, 3, 5, 10, 20),
)
CACHE_HITS = Counter("cache_hits_total", "Cache lookups answered.", ["cache"])
CACHE_MISSES = Counter("cache_misses_total", "Cache lookups missed.", ["cache"])
RATE_LIMIT_EXCEEDED = Counter(
    "rate_limit_exceeded_total",
    "Requests refused with 429, by route name.",
    ["endpoint"],
)
RATE_LIMIT_UNCHECKED = Counter(
    "rate_limit_unchecked_total",
    "Requests served without a rate-limit check: the cache did not answer.",
    ["endpoint"],
)
ERRORS = Counter(
    "errors_total",
    "Error responses the API built (4xx and 5xx), by error code and route name.",
    ["type", "endpoint"],
)
LOGIN_FAILURES = Counter(
    "login_failures_total",
    "Failed password logins (the admin, the browsable API), attempts refused "
    "during a lockout included; API keys never count.",
)
LOGIN_LOCKOUTS = Counter(
    "login_lockouts_total",
    "Lockouts started: a username at one client address reached "
    "LOGIN_FAILURE_LIMIT failed logins.",
)
