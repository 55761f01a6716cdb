"""structlog for our records and for every stdlib record (Django, libraries).

Production writes one JSON object per line; development writes readable console
lines. The request id and any other context bound with
``structlog.contextvars.bind_contextvars`` appear in every record, including those
from the stdlib loggers of Django and the libraries.
"""

import logging
import logging.config

import structlog

from flamehaven import __version__

SERVICE = "flamehaven-filesearch"

# Keys whose values must never reach a log line.
_SECRET_KEYS = frozenset(
    {"authorization", "api_key", "apikey", "password", "secret", "token", "key"}
)


def _redact_secrets(logger, method_name, event_dict):
    for name in list(event_dict):
        if name.lower() in _SECRET_KEYS:
            event_dict[name] = "[redacted]"
    return event_dict


def _add_service_fields(environment: str):
    def processor(logger, method_name, event_dict):
        event_dict.setdefault("service", SERVICE)
        event_dict.setdefault("version", __version__)
        event_dict.setdefault("environment", environment)
        # Bound while a request is served; null in records outside requests.
        event_dict.setdefault("request_id", None)
        return event_dict

    return processor


def _shared_processors(environment: str) -> list:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service_fields(environment),
        _redact_secrets,
    ]


def logging_config(*, json_logs: bool, level: str = "INFO") -> dict:
    """The stdlib ``dictConfig``: every record goes through structlog's formatter.

    Django's settings and gunicorn's master (``logconfig_dict`` in
    deploy/gunicorn.conf.py) use the same one, so gunicorn's own lines are JSON
    in production too.
    """
    environment = "production" if json_logs else "development"
    renderer = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": [
                    *_shared_processors(environment),
                    structlog.stdlib.ExtraAdder(),
                ],
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            }
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structlog"}
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Our access log line replaces Django's and gunicorn's per-request
            # lines; the root handler formats gunicorn's other lines.
            "django.server": {"level": "WARNING"},
            "django.request": {"level": "ERROR"},
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # One line per HTTP call the Gemini SDK makes (httpx2) is noise.
            "httpx": {"level": "WARNING"},
            "httpx2": {"level": "WARNING"},
            "google_genai": {"level": "WARNING"},
            "django_tasks": {"level": "WARNING"},
            "environ": {"level": "WARNING"},  # "no .env file" on every start
        },
    }


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    environment = "production" if json_logs else "development"
    logging.config.dictConfig(logging_config(json_logs=json_logs, level=level))
    # Python warnings become records (logger "py.warnings") in the same format.
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(environment),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
