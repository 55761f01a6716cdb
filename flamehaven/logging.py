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
        return event_dict

    return processor


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    environment = "production" if json_logs else "development"
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service_fields(environment),
        _redact_secrets,
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "structlog": {
                    "()": structlog.stdlib.ProcessorFormatter,
                    "foreign_pre_chain": [
                        *shared,
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
                # Our access log line replaces Django's per-request lines.
                "django.server": {"level": "WARNING"},
                "django.request": {"level": "ERROR"},
                "httpx": {"level": "WARNING"},
                "django_tasks": {"level": "WARNING"},
            },
        }
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
