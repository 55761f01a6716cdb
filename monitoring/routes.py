"""The one name of a request's route, for metrics, the access line and limits."""

# Unmatched paths (404 before any route) share one label value.
UNMATCHED = "unmatched"


def route_name(request) -> str:
    """The URL pattern's name, never the raw path, so label sets stay bounded."""
    match = getattr(request, "resolver_match", None)
    return (match.url_name if match else None) or UNMATCHED
