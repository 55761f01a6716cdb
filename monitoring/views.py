import functools

from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from flamehaven.errors import permission_denied
from flamehaven.ratelimit import monitoring_limit
from monitoring.exposition import may_scrape, scrape
from monitoring.health import health as health_report
from monitoring.report import report

_DENIED = (
    "Metrics need an admin API key, the metrics bearer token, or an address in "
    "METRICS_ALLOWED_CIDRS."
)


@csrf_exempt  # GET and HEAD only: a POST is 405, not a CSRF failure
@never_cache
@require_safe
def health(request):
    """Open to everyone, never rate-limited: probes must always get an answer."""
    body, status = health_report()
    response = JsonResponse(body, status=status)
    # Not Django's "Service Unavailable: /health" error line on every probe while
    # the database is down: the access line has the status, and the outage is
    # logged once (flamehaven.database_outage).
    response._has_been_logged = True
    return response


def _for_scrapers(view):
    """Never cached, GET/HEAD only, rate-limited, and only for whoever may scrape."""

    @csrf_exempt  # GET and HEAD only: a POST is 405, not a CSRF failure
    @never_cache
    @require_safe
    @monitoring_limit
    @functools.wraps(view)
    def guarded(request):
        if not may_scrape(request):
            return permission_denied(_DENIED)
        return view(request)

    return guarded


@_for_scrapers
def prometheus(request):
    """The Prometheus text exposition (admin key, token or allowed address)."""
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)


@_for_scrapers
def metrics(request):
    """Request, upload, search and cache figures as JSON (same access rule)."""
    return JsonResponse(report())
