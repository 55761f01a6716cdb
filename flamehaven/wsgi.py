import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flamehaven.settings")

application = get_wsgi_application()

from flamehaven.startup import log_startup  # noqa: E402  (needs settings loaded)

log_startup("wsgi")
