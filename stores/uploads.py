"""Every refusal of an upload, before anything is stored.

Uploads always go to temporary files (never read whole into memory), and the size
limit is enforced while the body streams in, so an oversized file costs at most
MAX_FILE_SIZE bytes of disk before it is refused. Then each file's name, size,
type and structure are checked (:func:`check_uploads`), the whole request before
any of it is kept.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil
import structlog
from django.conf import settings
from django.core.files import temp
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import (
    FileUploadHandler,
    SkipFile,
    TemporaryFileUploadHandler,
)
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from flamehaven.errors import (
    ApiError,
    EmptyFile,
    FileSizeExceeded,
    InvalidFilename,
    RequestTooLarge,
    TooManyFiles,
    ValidationFailed,
)
from stores import filetypes

log = structlog.get_logger(__name__)

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
        # FileUploadHandler's bookkeeping, then our file in place of the one
        # TemporaryFileUploadHandler.new_file would make.
        FileUploadHandler.new_file(self, *args, **kwargs)
        self.file = OwnedTemporaryUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )
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


# --- Temporary upload files -----------------------------------------------------

# upload-<host>-<pid>-<random>.upload: who wrote it, so a dead writer's file can
# be told from one still streaming in.
_TEMP_FILE_NAME = re.compile(
    r"^upload-(?P<host>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)-[A-Za-z0-9_]+\.upload$"
)
# A file of another machine (a folder shared between containers) cannot be
# checked by pid; it is removed once untouched for this long, which no upload
# still streaming ever is.
FOREIGN_TEMP_FILE_MAX_AGE_SEC = 24 * 3600
# A process started this much after a file's last write still counts as its
# writer: process start times are rounded to clock ticks.
_START_TIME_SLACK_SEC = 1.0


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:32] or "host"


class OwnedTemporaryUploadedFile(TemporaryUploadedFile):
    """A temporary upload file named after the host and process writing it.

    Django deletes a temporary upload file when it is closed, which a worker
    killed while a body streams in never does. The name lets
    :func:`remove_abandoned_temp_files` find the files whose writer is gone.
    """

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        file = temp.NamedTemporaryFile(
            prefix=f"upload-{_host_tag()}-{os.getpid()}-",
            suffix=".upload",
            dir=settings.FILE_UPLOAD_TEMP_DIR,
        )
        # UploadedFile's constructor: TemporaryUploadedFile's would make its own.
        super(TemporaryUploadedFile, self).__init__(
            file, name, content_type, size, charset, content_type_extra
        )


def abandoned_temp_files(folder: Path | str | None = None) -> list[Path]:
    """Temporary upload files in FILE_UPLOAD_TEMP_DIR whose writer is gone.

    Gone: no process has the pid in the name any more, or the one that has it
    started after the file was last written (the pid was reused). Files of
    another host are judged by age alone (FOREIGN_TEMP_FILE_MAX_AGE_SEC).
    """
    folder = Path(folder or settings.FILE_UPLOAD_TEMP_DIR or temp.gettempdir())
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    host = _host_tag()
    found = []
    for entry in entries:
        match = _TEMP_FILE_NAME.match(entry.name)
        if not match or not entry.is_file(follow_symlinks=False):
            continue
        try:
            written = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue  # its upload finished meanwhile
        if match["host"] != host:
            abandoned = time.time() - written > FOREIGN_TEMP_FILE_MAX_AGE_SEC
        else:
            abandoned = not _is_writer_alive(int(match["pid"]), written)
        if abandoned:
            found.append(Path(entry.path))
    return sorted(found)


def _is_writer_alive(pid: int, written: float) -> bool:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= written + _START_TIME_SLACK_SEC
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; when it started cannot be known, so keep it


def remove_abandoned_temp_files(folder: Path | str | None = None) -> list[Path]:
    """Delete the temporary upload files left by killed processes; return them.

    Safe to run at any time, next to live uploads: a file is removed only when
    its writer is gone.
    """
    removed = []
    for path in abandoned_temp_files(folder):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("upload_temp_file_left", file=str(path), error=str(exc))
            continue
        removed.append(path)
    if removed:
        log.info("upload_temp_files_removed", count=len(removed))
    return removed


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


_HEAD_BYTES = 8192
_HASH_BLOCK = 1024 * 1024


@dataclass
class CheckedUpload:
    file: IO[bytes]
    filename: str
    size: int
    mime_type: str
    sha256: str


def check_uploads(files: list[tuple[IO[bytes], str]]) -> list[CheckedUpload]:
    """Validate the whole request first: one bad file rejects all, with details."""
    if not files:
        raise ValidationFailed(
            "No file was submitted.", details={"file": ["No file was submitted."]}
        )
    if len(files) > settings.MAX_FILES_PER_REQUEST:
        raise TooManyFiles(
            f"At most {settings.MAX_FILES_PER_REQUEST} files per request; "
            f"got {len(files)}.",
            details={"max_files": settings.MAX_FILES_PER_REQUEST, "got": len(files)},
        )
    checked, failures = [], []
    for index, (file, name) in enumerate(files):
        try:
            checked.append(_check_upload(file, name))
        except ApiError as exc:
            failures.append((index, name, exc))
    if not failures:
        return checked
    first = failures[0][2]
    if len(files) == 1:
        raise first
    per_file = {
        f"{index}:{name}": {"error": exc.code, "message": exc.message}
        for index, name, exc in failures
    }
    raise type(first)(
        f"{len(failures)} of {len(files)} files were rejected; nothing was stored. "
        f"First: {first.message}",
        details={"files": per_file},
    )


def _check_upload(file: IO[bytes], name: str) -> CheckedUpload:
    """Validate one file without storing anything; raise the matching ApiError."""
    filename = safe_filename(name)
    size = getattr(file, "size", None)
    if size is None:
        file.seek(0, 2)
        size = file.tell()
    if size == 0:
        raise EmptyFile(f"'{filename}' is empty.", details={"filename": filename})
    if size > settings.MAX_FILE_SIZE_BYTES:
        raise FileSizeExceeded(
            f"'{filename}' is larger than the limit of {settings.MAX_FILE_SIZE_MB} MB.",
            details={"filename": filename, "max_bytes": settings.MAX_FILE_SIZE_BYTES},
        )
    file.seek(0)
    head = file.read(_HEAD_BYTES)
    mime_type = filetypes.detect_mime_type(filename=filename, head=head)
    file.seek(0)
    filetypes.inspect_upload(path=file, mime_type=mime_type)
    file.seek(0)
    digest = hashlib.sha256()
    while block := file.read(_HASH_BLOCK):
        digest.update(block)
    file.seek(0)
    return CheckedUpload(file, filename, size, mime_type, digest.hexdigest())
