from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from flamehaven.views import root
from monitoring.views import health, metrics, prometheus

handler400 = "flamehaven.errors.handler400"
handler403 = "flamehaven.errors.handler403"
handler404 = "flamehaven.errors.handler404"
handler500 = "flamehaven.errors.handler500"

urlpatterns = [
    path("", root, name="root"),
    path("health", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("prometheus", prometheus, name="prometheus"),
    path("api/", include("stores.urls")),
    path("api/", include("search.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split Swagger view serves its script as a file: no inline script, so the
    # page works under the Content-Security-Policy.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema"),
        name="swagger-ui",
    ),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
]
