import structlog
from django.apps import AppConfig

log = structlog.get_logger(__name__)


class FlamehavenConfig(AppConfig):
    name = "flamehaven"
    verbose_name = "Flamehaven FileSearch"

    def ready(self) -> None:
        from flamehaven import checks  # noqa: F401  (registers the system checks)
