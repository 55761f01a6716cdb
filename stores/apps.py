from django.apps import AppConfig
from django.core.signals import request_started


class StoresConfig(AppConfig):
    name = "stores"
    verbose_name = "Stores and documents"

    def ready(self) -> None:
        request_started.connect(_start_maintenance, dispatch_uid="stores-maintenance")


def _start_maintenance(**kwargs) -> None:
    """A web process that runs its own tasks also finishes what crashes left.

    Started by the first request rather than at import, so that management
    commands start no threads and each forked gunicorn worker starts its own.
    """
    from django.conf import settings

    from stores import maintenance, tasks

    if settings.BACKGROUND_MAINTENANCE and tasks.runs_in_process():
        maintenance.start_in_background()
        request_started.disconnect(dispatch_uid="stores-maintenance")
