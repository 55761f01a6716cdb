from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from flamehaven.errors import permission_denied
from monitoring.exposition import may_scrape, scrape
from monitoring.health import health as health_report
from monitoring.report import report

_DENIED = (
    "Metrics need an admin API key, the metrics bearer token, or an address in "
    "METRICS_ALLOWED_CIDRS."
)


@never_cache
@require_safe
def health(request):
    """Open to everyone, never rate-limited: probes must always get an answer."""
    body, status = health_report()
    return JsonResponse(body, status=status)


@never_cache
@require_safe
def prometheus(request):
    """The Prometheus text exposition (admin key, token or allowed address)."""
    if not may_scrape(request):
        return permission_denied(_DENIED)
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_safe
def metrics(request):
    """Request, upload, search and cache figures as JSON (same access rule)."""
    if not may_scrape(request):
        return permission_denied(_DENIED)
    return JsonResponse(report())
