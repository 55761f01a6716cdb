"""bench.settings with only the libraries' middleware: the floor for issue 13.

`GET /bench/floor` under this stack is what Django, the security middleware,
sessions, CSRF, authentication, django-prometheus and django-axes cost with
none of the service's own middleware, served by the same gunicorn
configuration as the service (bench/cache_http.py).
"""

from bench.settings import *  # noqa: F403
from bench.settings import MIDDLEWARE

APP_PACKAGES = ("flamehaven.", "monitoring.", "accounts.", "stores.", "search.")

MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith(APP_PACKAGES)]
