"""Upload handling: streaming size limit and safe file names.

Uploads always go to temporary files (never read whole into memory), and the size
limit is enforced while the body streams in, so an oversized file costs at most
MAX_FILE_SIZE bytes of disk before it is refused.
"""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings
from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from flamehaven.errors import FileSizeExceeded, InvalidFilename, RequestTooLarge

MAX_FILENAME_BYTES = 255

# Names Windows reserves for devices, with or without an extension.
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.I)


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    """Streams each file to a temporary file and drops it past MAX_FILE_SIZE_BYTES.

    It records the dropped name on the request instead of raising: the parser may
    run inside middleware (CSRF on admin forms), where an exception would become
    a 500. Views call :func:`raise_if_oversized` after reading the files.
    """

    def handle_raw_input(
        self, input_data, META, content_length, boundary, encoding=None
    ):
        """Refuse a request larger than MAX_REQUEST_SIZE before reading its body.

        Returning empty data ends the parse; raise_if_oversized then answers 413.
        """
        if content_length and content_length > settings.MAX_REQUEST_SIZE_BYTES:
            self.request.oversized_request = content_length
            return QueryDict(encoding=encoding), MultiValueDict()
        return super().handle_raw_input(
            input_data, META, content_length, boundary, encoding
        )

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.MAX_FILE_SIZE_BYTES:
            self.file.close()
            oversized = getattr(self.request, "oversized_uploads", [])
            oversized.append(self.file_name)
            self.request.oversized_uploads = oversized
            raise SkipFile()
        return super().receive_data_chunk(raw_data, start)


def raise_if_oversized(request) -> None:
    request = getattr(request, "_request", request)  # a DRF Request wraps Django's
    size = getattr(request, "oversized_request", None)
    if size:
        raise RequestTooLarge(
            f"The request is {size / 2**20:,.1f} MB; at most "
            f"{settings.MAX_REQUEST_SIZE_MB} MB are accepted.",
            details={"max_bytes": settings.MAX_REQUEST_SIZE_BYTES},
        )
    oversized = getattr(request, "oversized_uploads", None)
    if oversized:
        raise FileSizeExceeded(
            f"Files must be at most {settings.MAX_FILE_SIZE_MB} MB: "
            + ", ".join(f"'{name}'" for name in oversized),
            details={
                "files": {name: "too large" for name in oversized},
                "max_bytes": settings.MAX_FILE_SIZE_BYTES,
            },
        )


def safe_filename(name: str) -> str:
    """The client's file name reduced to a safe base name, or InvalidFilename.

    Path parts are dropped (a name is only ever a label, never a storage path);
    hidden names, control characters, reserved device names and over-long names
    are refused, because no honest client sends them.
    """
    original = name
    name = unicodedata.normalize("NFC", name or "")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise InvalidFilename(
            "File names may not contain control characters.",
            details={"filename": repr(original)},
        )
    name = re.split(r"[/\\]", name)[-1].strip().rstrip(". ")
    if not name or name in {".", ".."}:
        raise InvalidFilename("The file name is empty.", details={"filename": original})
    if name.startswith("."):
        raise InvalidFilename(
            f"Hidden files such as '{name}' are not accepted.",
            details={"filename": name},
        )
    if _RESERVED.match(name):
        raise InvalidFilename(
            f"'{name}' is a reserved device name.", details={"filename": name}
        )
    if len(name.encode()) > MAX_FILENAME_BYTES:
        raise InvalidFilename(
            f"File names may be at most {MAX_FILENAME_BYTES} bytes long.",
            details={"filename": name[:64] + "…"},
        )
    return name
