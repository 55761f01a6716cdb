from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from monitoring.health import health as health_report


@never_cache
@require_safe
def health(request):
    """Open to everyone, never rate-limited: probes must always get an answer."""
    body, status = health_report()
    return JsonResponse(body, status=status)
