import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flamehaven.settings")

application = get_asgi_application()

from flamehaven.startup import log_startup  # noqa: E402  (needs settings loaded)

log_startup("asgi")
