"""The service's URLs plus a floor: what the same middleware costs with no work.

`GET /bench/floor` is a plain Django view (no DRF, no authentication, no database,
no cache), so a cache-hit search can be compared with the fastest answer the
framework gives under the same middleware stack and server.
"""

from django.http import JsonResponse
from django.urls import path

from flamehaven.urls import (  # noqa: F401  (Django reads the handlers from here)
    handler400,
    handler403,
    handler404,
    handler500,
)
from flamehaven.urls import urlpatterns as service_urlpatterns


def floor(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    *service_urlpatterns,
    path("bench/floor", floor, name="bench-floor"),
]
