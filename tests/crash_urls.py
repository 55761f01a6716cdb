"""The service's URLs plus two views that crash: for error and logging tests.

``tests.crash_settings`` serves them from a real server process too.
"""

from django.urls import path
from rest_framework.views import APIView

from flamehaven.urls import (  # noqa: F401  (Django reads the handlers from here)
    handler400,
    handler403,
    handler404,
    handler500,
)
from flamehaven.urls import urlpatterns as service_urlpatterns

# Stands in for a secret that an exception message might carry.
LEAKY_MESSAGE = "secret-token-123 leaked?"


class Crash(APIView):
    permission_classes = []
    authentication_classes = []

    def get(self, request):
        raise RuntimeError(LEAKY_MESSAGE)


def crash_plain(request):
    raise RuntimeError(LEAKY_MESSAGE)


urlpatterns = [
    *service_urlpatterns,
    path("crash/api", Crash.as_view(), name="crash-api"),
    path("crash/plain", crash_plain, name="crash-plain"),
]
