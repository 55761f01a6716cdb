from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from stores.services import gemini_configured


def service_info() -> dict:
    return {
        "name": "Flamehaven FileSearch",
        "version": settings.VERSION,
        "endpoints": {
            "stores": reverse("store-list"),
            "search": reverse("search"),
            "upload_single": reverse("upload-single"),
            "upload_multiple": reverse("upload-multiple"),
            "cache_stats": reverse("cache-stats"),
            "cache_clear": reverse("cache-clear"),
            "health": reverse("health"),
            "metrics": reverse("metrics"),
            "prometheus": reverse("prometheus"),
            "schema": reverse("schema"),
            "docs": reverse("swagger-ui"),
            "redoc": reverse("redoc"),
            "admin": reverse("admin:index"),
        },
        "features": {
            "gemini": gemini_configured(),
            "local_search": True,
            "cache": "redis" if settings.REDIS_URL else "locmem",
            "tasks": settings.TASKS_BACKEND,
        },
    }


@csrf_exempt  # GET and HEAD only: a POST is 405, not a CSRF failure
@require_safe
def root(request):
    """Service info as JSON; a small landing page when a browser asks."""
    info = service_info()
    accept = request.headers.get("Accept", "")
    if "text/html" in accept and "application/json" not in accept:
        return render(request, "landing.html", {"info": info})
    return JsonResponse(info)
