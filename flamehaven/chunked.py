"""Request bodies sent with ``Transfer-Encoding: chunked``, made readable to Django.

Django reads a request body only up to CONTENT_LENGTH, so a chunked body (which
gunicorn passes on de-chunked, without a length) would reach the views empty: an
upload answered "no file was submitted", a JSON search "query is required". This
WSGI wrapper reads such a body first, into a spooled temporary file (memory up to
SPOOL_BYTES, then disk), and gives Django the file with its length. It reads at
most MAX_REQUEST_SIZE_BYTES + 1 bytes: Django then sees a length over the limit
and answers 413 REQUEST_TOO_LARGE without parsing, as for a declared length.

It only reads where the server says the input ends by itself
(``wsgi.input_terminated``, PEP 3333's extension, which gunicorn sets). Elsewhere
(Django's runserver) the body cannot be read safely, and
:class:`flamehaven.middleware.RequestChecksMiddleware` answers 411.
"""

from __future__ import annotations

import tempfile

from django.conf import settings

SPOOL_BYTES = 1024 * 1024
BLOCK_BYTES = 64 * 1024


def is_chunked_without_length(environ) -> bool:
    return not environ.get("CONTENT_LENGTH") and "chunked" in (
        environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    )


class ChunkedBodyMiddleware:
    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if not (
            is_chunked_without_length(environ) and environ.get("wsgi.input_terminated")
        ):
            return self.application(environ, start_response)
        # The view has read what it needs when the application returns; on disk
        # the file is already unlinked, so a dying worker leaves nothing behind.
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as body:
            length = _copy(
                environ["wsgi.input"], body, settings.MAX_REQUEST_SIZE_BYTES + 1
            )
            body.seek(0)
            return self.application(
                {**environ, "wsgi.input": body, "CONTENT_LENGTH": str(length)},
                start_response,
            )


def _copy(source, target, limit: int) -> int:
    """Copy at most `limit` bytes; the number copied."""
    copied = 0
    while copied < limit:
        block = source.read(min(BLOCK_BYTES, limit - copied))
        if not block:
            break
        target.write(block)
        copied += len(block)
    return copied
