import structlog
from django.conf import settings
from django.db import connection

log = structlog.get_logger("flamehaven")


def log_startup(server: str) -> None:
    """One line when a server process starts: what it runs on, without secrets."""
    log.info(
        "service_started",
        server=server,
        version=settings.VERSION,
        environment=settings.ENVIRONMENT,
        search_backend="gemini" if settings.GEMINI_API_KEY else "local",
        database=connection.vendor,
        cache=settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        tasks=settings.TASKS_BACKEND,
    )
