import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flamehaven.settings")

from flamehaven.chunked import ChunkedBodyMiddleware  # noqa: E402

# Chunked request bodies get a length before Django reads them (flamehaven/chunked.py).
application = ChunkedBodyMiddleware(get_wsgi_application())

from flamehaven.startup import log_startup  # noqa: E402  (needs settings loaded)

log_startup("wsgi")
