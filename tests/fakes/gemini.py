"""An HTTP fake of the Gemini API's File Search surface, for tests and benchmarks.

The real google-genai SDK talks to it over HTTP; nothing in the SDK is patched:

    with GeminiFake() as fake:
        client = fake.client()  # genai.Client(base_url=fake.base_url, retries off)
        store = client.file_search_stores.create(config={"display_name": "docs"})

or, pointing a client built elsewhere at it:

    genai.Client(
        api_key="any-key",
        http_options=types.HttpOptions(
            base_url=fake.base_url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )

What google-genai 3.4 sends, and so what this serves (v1beta only, see below):

| route name         | request                                                      |
|--------------------|--------------------------------------------------------------|
| `stores.create`    | POST /v1beta/fileSearchStores  {"displayName"}               |
| `stores.list`      | GET /v1beta/fileSearchStores?pageSize=&pageToken=            |
| `stores.get`       | GET /v1beta/fileSearchStores/{id}                            |
| `stores.delete`    | DELETE /v1beta/fileSearchStores/{id}?force=True              |
| `upload.start`     | POST /upload/v1beta/{store}:uploadToFileSearchStore          |
| `upload.chunk`     | POST {x-goog-upload-url of upload.start} (?upload_id=...)    |
| `operations.get`   | GET /v1beta/fileSearchStores/{id}/upload/operations/{op}     |
| `documents.list`   | GET /v1beta/fileSearchStores/{id}/documents                  |
| `documents.get`    | GET /v1beta/fileSearchStores/{id}/documents/{doc}            |
| `documents.delete` | DELETE /v1beta/fileSearchStores/{id}/documents/{doc}?force=True |
| `generateContent`  | POST /v1beta/models/{model}:generateContent                  |

Things about the SDK and the API that the fake reproduces on purpose:

- The SDK's default `api_version` is "v1", not "v1beta"; File Search is documented
  on v1beta only, so the fake answers other versions 404 (`api_versions=` to change).
- Every JSON request carries `x-goog-api-key`; the resumable upload's chunk requests
  do not (the SDK sends only the upload headers there; the `upload_id` in the URL is
  the credential), so only `upload.chunk` skips the key check. Without a key: 403
  PERMISSION_DENIED; with `GeminiFake(api_key=...)` and another key: 400
  INVALID_ARGUMENT "API key not valid", as Gemini answers.
- The SDK counts only HTTP 200 as success, and sends `force` as `force=True`.
- Bodies are what the SDK's converters make: field names camelCase, but the values
  they pass through whole (the `fileSearch` tool, `customMetadata` items,
  `chunkingConfig`) are pydantic dumps with snake_case keys
  (`{"key": "document_id", "numeric_value": 42.0}`), so the fake reads both
  spellings, as Gemini's JSON parser does.
- An upload chunk answer without `x-goog-upload-status` makes the SDK sleep and
  resend it (1, 2 and 4 s), so every chunk answer, errors included, carries one.
- Proto3 JSON: int64 fields (sizeBytes, document counts) are strings, and false,
  zero and empty fields are left out (a running operation is `{"name": ...}`
  without `done`; an empty list is `{}`).

Grounding: documents are split into word windows (paragraphs, at most
`maxTokensPerChunk` words, default 200) and ranked by case-insensitive word overlap
with the question; the answer is built from the best chunks, so it is deterministic.
Only documents whose upload operation is done (state STATE_ACTIVE) are searched.
A PDF's text is read page by page (with pypdf), no chunk spans two pages, and its
chunks carry `pageNumber` (from 1) in the retrieved context, as Gemini's do. The
answer is one part per chunk, "From <title>: <chunk>", joined by spaces; each
part has a `groundingSupports` entry whose `segment` offsets are UTF-8 bytes into
the answer (`startIndex` left out when 0, as proto3 JSON does), so a non-ASCII
answer has byte offsets that are not character offsets.

The request log keeps no API key: an entry says `has_api_key`, never the value, and
a `key=` query parameter is dropped from it.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hmac
import io
import json
import re
import secrets
import socket
import string
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.1"
DEFAULT_API_KEY = "fake-gemini-api-key"
UPLOAD_CHUNK_GRANULARITY = 8 * 1024 * 1024
MAX_STORES_PER_REQUEST = 5
MAX_CUSTOM_METADATA = 20
DEFAULT_CHUNK_WORDS = 200
DEFAULT_TOP_K = 5

ROUTES = (
    "stores.create",
    "stores.list",
    "stores.get",
    "stores.delete",
    "upload.start",
    "upload.chunk",
    "operations.get",
    "documents.list",
    "documents.get",
    "documents.delete",
    "generateContent",
)

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

DEFAULT_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}

UPLOAD_RESPONSE_TYPE = (
    "type.googleapis.com/google.ai.generativelanguage.v1main."
    "UploadToFileSearchStoreResponse"
)

# Headers worth seeing in the request log; the API key and any Authorization
# header are never among them.
LOGGED_HEADERS = (
    "content-type",
    "content-length",
    "user-agent",
    "x-goog-api-client",
    "x-server-timeout",
    "x-goog-upload-protocol",
    "x-goog-upload-command",
    "x-goog-upload-offset",
    "x-goog-upload-header-content-length",
    "x-goog-upload-header-content-type",
    "x-goog-upload-file-name",
)

TEXT_MIME_TYPES = {
    "application/json",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/javascript",
    "application/x-ndjson",
    "application/csv",
}

# Words too common to rank passages on.
STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        """a an and are as at be by do does for from has have how i in is it its of
        on or that the their this to was were what when where which who why will
        with you your""",
    )
)

_ID_ALPHABET = string.ascii_lowercase + string.digits
_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
_WORD = re.compile(r"\w+")
_FILTER_CLAUSE = re.compile(
    r"""^\s*(?P<key>[A-Za-z_][\w.]*)\s*(?P<op>!=|<=|>=|=|<|>|:)\s*"""
    r"""(?P<value>"[^"]*"|'[^']*'|-?\d+(?:\.\d+)?)\s*$"""
)

_VERSION = r"(?P<version>[^/]+)"
_STORE = r"(?P<store>fileSearchStores/[^/:]+)"
_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), route)
    for method, pattern, route in (
        ("POST", rf"^/upload/{_VERSION}/{_STORE}:uploadToFileSearchStore$", "upload"),
        ("POST", rf"^/{_VERSION}/fileSearchStores$", "stores.create"),
        ("GET", rf"^/{_VERSION}/fileSearchStores$", "stores.list"),
        ("GET", rf"^/{_VERSION}/{_STORE}$", "stores.get"),
        ("DELETE", rf"^/{_VERSION}/{_STORE}$", "stores.delete"),
        ("GET", rf"^/{_VERSION}/{_STORE}/documents$", "documents.list"),
        (
            "GET",
            rf"^/{_VERSION}/(?P<document>{_STORE}/documents/[^/:]+)$",
            "documents.get",
        ),
        (
            "DELETE",
            rf"^/{_VERSION}/(?P<document>{_STORE}/documents/[^/:]+)$",
            "documents.delete",
        ),
        (
            "GET",
            rf"^/{_VERSION}/(?P<operation>{_STORE}/(?:upload/)?operations/[^/:]+)$",
            "operations.get",
        ),
        (
            "POST",
            rf"^/{_VERSION}/(?P<model>(?:models|tunedModels)/[^/:]+):generateContent$",
            "generateContent",
        ),
    )
)


class ApiError(Exception):
    """Answered as Gemini's error shape: {"error": {"code", "message", "status"}}."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")
        self.details = details
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return Reply(self.code, {"error": error}, dict(self.headers))


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """Answer the next `times` matching requests (None: all of them) with an error."""

    target: str
    status: int
    times: int | None
    message: str | None = None
    reason: str | None = None
    retry_after: float | None = None
    upload_status: str | None = "final"
    hits: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.times is None else max(self.times - self.hits, 0)

    def error(self) -> ApiError:
        headers: dict[str, str] = {}
        details = None
        if self.retry_after is not None:
            headers["Retry-After"] = f"{self.retry_after:g}"
            # Gemini says how long to wait in the body, as a google.rpc.RetryInfo.
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{self.retry_after:g}s",
                }
            ]
        message = self.message or DEFAULT_MESSAGES.get(
            self.status, f"Injected fault ({self.status})."
        )
        return ApiError(
            self.status, message, self.reason, details=details, headers=headers
        )


@dataclass
class Delay:
    target: str
    seconds: float
    times: int | None
    hits: int = 0


@dataclass
class Store:
    name: str
    display_name: str | None
    embedding_model: str | None
    create_time: str
    update_time: str


@dataclass
class Document:
    name: str
    store: str
    display_name: str | None
    mime_type: str
    size_bytes: int
    custom_metadata: list[dict[str, Any]]
    data: bytes
    text: str
    chunks: list[str]
    pages: list[int | None]  # each chunk's page (from 1), PDFs only
    state: str
    create_time: str
    update_time: str

    def as_dict(self) -> dict[str, Any]:
        """A copy for assertions: the resource fields plus the text and chunks."""
        return {
            "name": self.name,
            "store": self.store,
            "display_name": self.display_name,
            "mime_type": self.mime_type,
            "size_bytes": self.size_bytes,
            "custom_metadata": json.loads(json.dumps(self.custom_metadata)),
            "text": self.text,
            "chunks": list(self.chunks),
            "pages": list(self.pages),
            "state": self.state,
        }


@dataclass
class Operation:
    name: str
    store: str
    document: str
    polls_until_done: int | None
    error: dict[str, Any] | None
    polls: int = 0
    done: bool = False


@dataclass
class UploadSession:
    upload_id: str
    store: str
    metadata: dict[str, Any]
    mime_type: str
    declared_size: int | None
    file_name: str | None
    received: bytearray = field(default_factory=bytearray)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes
    params: dict[str, str]

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Invalid JSON payload received. Expected an object.")
        return data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: GeminiFake


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like Google's front end
    server_version = "GeminiFake/1.0"
    timeout = 30  # an idle keep-alive connection frees its thread after this
    # Headers and body are two writes: with Nagle on, each answer waits ~40 ms
    # for a delayed ACK, which would swamp latency benchmarks.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.fake._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._connection_closed(self.connection)

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    do_POST = do_DELETE = do_PATCH = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the fake keeps its own request log


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _pick(data: Any, camel: str, snake: str, default: Any = None) -> Any:
    """A field of a JSON object under either spelling, as the API accepts both."""
    if not isinstance(data, dict):
        return default
    if camel in data:
        return data[camel]
    return data.get(snake, default)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1"}


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _new_id(display_name: str | None, taken: Iterable[str], prefix: str) -> str:
    """`<slug of the display name>-<12 random characters>`, as Gemini names things."""
    slug = _SLUG_JUNK.sub("-", (display_name or "").lower()).strip("-")[:27]
    slug = slug.strip("-")
    taken = set(taken)
    while True:
        suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        name = f"{prefix}{slug}-{suffix}" if slug else f"{prefix}{suffix}"
        if name not in taken:
            return name


def _int64(value: int) -> str:
    return str(value)


def normalize_custom_metadata(items: Any) -> list[dict[str, Any]]:
    """Validate customMetadata and return it camelCased, one value kind per key."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise ApiError(400, "customMetadata must be a list.")
    if len(items) > MAX_CUSTOM_METADATA:
        raise ApiError(
            400, f"A Document can have at most {MAX_CUSTOM_METADATA} CustomMetadata."
        )
    normalized = []
    seen = set()
    for item in items:
        key = _pick(item, "key", "key")
        if not isinstance(key, str) or not key:
            raise ApiError(400, "CustomMetadata.key is required.")
        if key in seen:
            raise ApiError(400, f"Duplicate CustomMetadata key: {key}.")
        seen.add(key)
        string_value = _pick(item, "stringValue", "string_value")
        numeric_value = _pick(item, "numericValue", "numeric_value")
        list_value = _pick(item, "stringListValue", "string_list_value")
        given = [v for v in (string_value, numeric_value, list_value) if v is not None]
        if len(given) != 1:
            raise ApiError(
                400,
                f"CustomMetadata {key!r} needs exactly one of stringValue, "
                "numericValue or stringListValue.",
            )
        entry: dict[str, Any] = {"key": key}
        if string_value is not None:
            if not isinstance(string_value, str):
                raise ApiError(
                    400, f"CustomMetadata {key!r}: stringValue not a string."
                )
            entry["stringValue"] = string_value
        elif numeric_value is not None:
            if isinstance(numeric_value, bool) or not isinstance(
                numeric_value, int | float
            ):
                raise ApiError(
                    400, f"CustomMetadata {key!r}: numericValue not a number."
                )
            entry["numericValue"] = numeric_value
        else:
            values = _pick(list_value, "values", "values", [])
            if not isinstance(values, list) or not all(
                isinstance(v, str) for v in values
            ):
                raise ApiError(
                    400, f"CustomMetadata {key!r}: stringListValue.values not strings."
                )
            entry["stringListValue"] = {"values": list(values)}
        normalized.append(entry)
    return normalized


def split_chunks(text: str, chunking_config: Any = None) -> list[str]:
    """Paragraphs cut into windows of words, like a white-space chunker."""
    white_space = _pick(chunking_config, "whiteSpaceConfig", "white_space_config", {})
    size = _pick(white_space, "maxTokensPerChunk", "max_tokens_per_chunk")
    overlap = _pick(white_space, "maxOverlapTokens", "max_overlap_tokens") or 0
    size = int(size) if size else DEFAULT_CHUNK_WORDS
    overlap = min(max(int(overlap), 0), size - 1) if size > 1 else 0
    chunks = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = paragraph.split()
        start = 0
        while start < len(words):
            chunks.append(" ".join(words[start : start + size]))
            if start + size >= len(words):
                break
            start += size - overlap
    return chunks


def split_pages(
    text: str, mime_type: str, chunking_config: Any = None
) -> list[tuple[int | None, str]]:
    """Chunks with their page: a PDF's pages are the form-feed-separated parts
    of its text (see default_extract_text), and no chunk spans two of them."""
    if mime_type.split(";")[0].strip().lower() != "application/pdf":
        return [(None, chunk) for chunk in split_chunks(text, chunking_config)]
    return [
        (number, chunk)
        for number, page in enumerate(text.split("\f"), start=1)
        for chunk in split_chunks(page, chunking_config)
    ]


def parse_metadata_filter(expression: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A small subset of the AIP-160 filters File Search takes.

    `key op value` clauses (op: = != < <= > >= and `:` for "list contains"),
    joined by AND or by OR (not both; no parentheses); values are numbers or
    quoted strings.
    """
    ors = re.split(r"\s+OR\s+", expression.strip())
    ands = re.split(r"\s+AND\s+", expression.strip())
    if len(ors) > 1 and len(ands) > 1:
        raise ApiError(400, "metadata_filter: the fake cannot mix AND and OR.")
    parts, combine = (ors, any) if len(ors) > 1 else (ands, all)
    clauses = []
    for part in parts:
        match = _FILTER_CLAUSE.match(part)
        if not match:
            raise ApiError(400, f"Invalid metadata_filter: {expression!r}.")
        raw = match["value"]
        value: Any = raw[1:-1] if raw[0] in "\"'" else float(raw)
        clauses.append((match["key"], match["op"], value))

    def accepts(metadata: list[dict[str, Any]]) -> bool:
        by_key = {item["key"]: item for item in metadata}
        return combine(_clause_holds(by_key.get(k), op, v) for k, op, v in clauses)

    return accepts


def _clause_holds(item: dict[str, Any] | None, op: str, value: Any) -> bool:
    if item is None:
        return False
    if "stringListValue" in item:
        values = item["stringListValue"]["values"]
        contained = isinstance(value, str) and value in values
        return contained if op in {":", "="} else not contained if op == "!=" else False
    actual = item.get("stringValue", item.get("numericValue"))
    if isinstance(actual, str) != isinstance(value, str):
        return False
    comparisons = {
        "=": actual == value,
        ":": actual == value,
        "!=": actual != value,
        "<": actual < value,
        "<=": actual <= value,
        ">": actual > value,
        ">=": actual >= value,
    }
    return comparisons[op]


def default_extract_text(data: bytes, mime_type: str) -> str:
    """Text of text-like uploads; a PDF's pages joined by form feeds; other
    bytes only if they are valid UTF-8."""
    base = mime_type.split(";")[0].strip().lower()
    if base.startswith("text/") or base in TEXT_MIME_TYPES:
        return data.decode("utf-8", errors="replace")
    if base == "application/pdf":
        return _pdf_text(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def _pdf_text(data: bytes) -> str:
    try:
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        return "\f".join(page.extract_text() or "" for page in reader.pages)
    except Exception:  # pypdf missing, or not a PDF it can read: no text
        return ""


class GeminiFake:
    """The Gemini File Search API on 127.0.0.1, in memory, in a daemon thread.

    Use it as a context manager, or start() and stop() it from a fixture; reset()
    empties it (stores, documents, operations, log, faults, delays) between tests
    while the server keeps running.

    Settings a test may change (reset() restores them); an upload's operation takes
    the values in force when its last chunk arrives:

    - `operation_polls_until_done`: the operations.get call that finds it done
      (1: the first; 0: done in the upload answer; None: never, until
      finish_operations()).
    - `operation_error`: a google.rpc.Status such as `{"code": 13, "message": ...}`
      that operations finish with instead of a document (which becomes FAILED).
    - `missing_status`: 404 NOT_FOUND (default) or 403 PERMISSION_DENIED for
      unknown stores, documents and operations.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_versions: Iterable[str] = ("v1beta",),
        operation_polls_until_done: int | None = 1,
        extract_text: Callable[[bytes, str], str] = default_extract_text,
    ) -> None:
        # api_key None accepts any non-empty key.
        self._expected_key = api_key
        self.api_versions = tuple(api_versions)
        self._default_polls = operation_polls_until_done
        self.extract_text = extract_text
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.base_url = ""
        self._generation = 0
        self._clear()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("The Gemini fake is already running.")
        server = _Server((HOST, 0), _Handler)
        server.fake = self
        self._server = server
        self.base_url = f"http://{HOST}:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gemini-fake",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        # Keep-alive connections would otherwise go on being served.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget everything (state, log, faults, delays); settings back to default."""
        self._clear()

    def _clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._stores: dict[str, Store] = {}
            self._documents: dict[str, Document] = {}
            self._operations: dict[str, Operation] = {}
            self._sessions: dict[str, UploadSession] = {}
            self._log: list[dict[str, Any]] = []
            self._searches: list[dict[str, Any]] = []
            self._faults: list[Fault] = []
            self._delays: list[Delay] = []
            self.operation_polls_until_done: int | None = self._default_polls
            self.operation_error: dict[str, Any] | None = None
            self.missing_status = 404

    def _connection_opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _connection_closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # -- a client for tests --------------------------------------------------------

    @property
    def api_version(self) -> str:
        return self.api_versions[0]

    def http_options(self, *, attempts: int = 1, **options: Any) -> Any:
        """types.HttpOptions aimed at the fake; SDK retries off unless attempts > 1."""
        from google.genai import types

        options.setdefault(
            "retry_options",
            types.HttpRetryOptions(
                attempts=attempts, initial_delay=0.01, max_delay=0.05, jitter=0
            ),
        )
        options.setdefault("api_version", self.api_version)
        return types.HttpOptions(base_url=self.base_url, **options)

    def client(self, *, api_key: str | None = None, **options: Any) -> Any:
        """A real genai.Client talking to the fake (see http_options)."""
        from google import genai

        return genai.Client(
            api_key=api_key or self._expected_key or DEFAULT_API_KEY,
            http_options=self.http_options(**options),
        )

    # -- fault injection -----------------------------------------------------------

    def fail(
        self,
        target: str,
        status: int = 503,
        *,
        times: int | None = 1,
        message: str | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
        upload_status: str | None = "final",
    ) -> Fault:
        """Answer the next `times` requests matching `target` with `status`.

        `target` is a route name (see ROUTES) or a part of the path. `times=None`
        fails every matching request. `reason` overrides the status name (e.g.
        "FAILED_PRECONDITION" with 400). `retry_after` adds a Retry-After header and
        a RetryInfo detail. On upload.chunk the answer carries
        `x-goog-upload-status: final` so the SDK raises at once; None leaves it
        out, and the SDK then resends the chunk after 1, 2 and 4 s.
        """
        fault = Fault(
            target, status, times, message, reason, retry_after, upload_status
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def rate_limit(
        self, target: str, *, retry_after: float = 1, times: int | None = 1
    ) -> Fault:
        """429 RESOURCE_EXHAUSTED with Retry-After (the SDK itself ignores it)."""
        return self.fail(target, 429, times=times, retry_after=retry_after)

    def delay(self, target: str, seconds: float, *, times: int | None = None) -> Delay:
        """Answer requests matching `target` after `seconds` (None times: always)."""
        rule = Delay(target, seconds, times)
        with self._lock:
            self._delays.append(rule)
        return rule

    def clear_faults(self) -> None:
        """Drop every fault and delay."""
        with self._lock:
            self._faults.clear()
            self._delays.clear()

    def finish_operations(self) -> None:
        """Complete every operation still running (also ones set never to finish)."""
        with self._lock:
            for operation in self._operations.values():
                if not operation.done:
                    self._complete(operation)

    @staticmethod
    def _matches(target: str, route: str | None, path: str) -> bool:
        return target == route or target in path

    def _take_fault(self, route: str | None, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining != 0 and self._matches(fault.target, route, path):
                    fault.hits += 1
                    return fault
        return None

    def _take_delay(self, route: str | None, path: str) -> float:
        with self._lock:
            for rule in self._delays:
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                if self._matches(rule.target, route, path):
                    rule.hits += 1
                    return rule.seconds
        return 0.0

    # -- what tests read -----------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (copies)."""
        with self._lock:
            return json.loads(json.dumps(self._log))

    def calls(
        self,
        method: str | None = None,
        path_contains: str | None = None,
        *,
        route: str | None = None,
    ) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.requests
            if (method is None or entry["method"] == method.upper())
            and (path_contains is None or path_contains in entry["path"])
            and (route is None or entry["route"] == route)
        ]

    @property
    def searches(self) -> list[dict[str, Any]]:
        """One entry per generateContent: model, query, stores, temperature, ..."""
        with self._lock:
            return json.loads(json.dumps(self._searches))

    def store_names(self) -> list[str]:
        with self._lock:
            return list(self._stores)

    def document(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._documents[name].as_dict()

    def documents(self, store: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                document.as_dict()
                for document in self._documents.values()
                if store is None or document.store == store
            ]

    def uploaded_bytes(self, document_name: str) -> bytes:
        with self._lock:
            return bytes(self._documents[document_name].data)

    def operation(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self._operation_json(self._operations[name])

    # -- seeding without HTTP --------------------------------------------------------

    def add_store(self, display_name: str | None = None) -> str:
        with self._lock:
            store = self._new_store(display_name, None)
            return store.name

    def add_document(
        self,
        store: str,
        text: str,
        *,
        display_name: str | None = None,
        mime_type: str = "text/plain",
        custom_metadata: list[dict[str, Any]] | None = None,
    ) -> str:
        """An active document, as if uploaded and indexed; returns its name."""
        data = text.encode()
        with self._lock:
            if store not in self._stores:
                raise KeyError(store)
            document = self._new_document(
                store,
                data,
                display_name=display_name,
                mime_type=mime_type,
                custom_metadata=normalize_custom_metadata(custom_metadata),
                chunking_config=None,
            )
            document.state = "STATE_ACTIVE"
            return document.name

    # -- HTTP ----------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        path = unquote(split.path)
        query = {
            name: values[-1]
            for name, values in parse_qs(split.query, keep_blank_values=True).items()
        }
        query_key = query.pop("key", None)
        header_key = handler.headers.get("x-goog-api-key")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        method = handler.command.upper()
        route, params = self._route(method, path, query)
        entry: dict[str, Any] = {
            "route": route,
            "method": method,
            "path": path,
            "query": dict(query),
            "headers": {
                name: handler.headers[name]
                for name in LOGGED_HEADERS
                if handler.headers.get(name) is not None
            },
            "has_api_key": bool(header_key or query_key),
            "size": len(body),
            "json": None,
            "status": None,
            "time": time.time(),
        }
        if body and route != "upload.chunk":
            with contextlib.suppress(ValueError):
                entry["json"] = json.loads(body)
        with self._lock:
            self._log.append(entry)

        request = Request(method, path, query, handler.headers, body, params)
        reply = self._answer(route, request, header_key or query_key)
        with self._lock:
            entry["status"] = reply.status
        self._write(handler, reply)

    def _route(
        self, method: str, path: str, query: dict[str, str]
    ) -> tuple[str | None, dict[str, str]]:
        for pattern_method, pattern, route in _PATTERNS:
            match = pattern.match(path)
            if match and pattern_method == method:
                if route == "upload":
                    route = "upload.chunk" if "upload_id" in query else "upload.start"
                return route, {k: v for k, v in match.groupdict().items() if v}
        return None, {}

    def _answer(self, route: str | None, request: Request, key: str | None) -> Reply:
        # Faults are taken on arrival and the state is checked after the delay, so a
        # request still sleeping when a test ends cannot touch the next test's.
        generation = self._generation
        fault = self._take_fault(route, request.path)
        seconds = self._take_delay(route, request.path)
        if seconds:
            time.sleep(seconds)
        try:
            if generation != self._generation:
                raise ApiError(503, "The fake was reset while this request waited.")
            if fault is not None:
                error = fault.error()
                if route == "upload.chunk" and fault.upload_status:
                    error.headers["X-Goog-Upload-Status"] = fault.upload_status
                raise error
            if route is None:
                raise ApiError(
                    404, f"{request.method} {request.path} is not a File Search route."
                )
            version = request.params.get("version")
            if version not in self.api_versions:
                raise ApiError(
                    404,
                    f"API version {version!r} is not served: File Search is on "
                    f"{', '.join(self.api_versions)} (set HttpOptions.api_version).",
                )
            if route != "upload.chunk":
                self._check_key(key)
            handler = getattr(self, "_do_" + route.replace(".", "_"))
            return handler(request)
        except ApiError as error:
            reply = error.reply()
            if route == "upload.chunk":
                reply.headers.setdefault("X-Goog-Upload-Status", "final")
            return reply
        except Exception:
            traceback.print_exc()
            return ApiError(500, DEFAULT_MESSAGES[500]).reply()

    def _check_key(self, key: str | None) -> None:
        if not key:
            raise ApiError(
                403,
                "Method doesn't allow unregistered callers (callers without "
                "established identity). Please use API Key or other form of API "
                "consumer identity to call this API.",
            )
        if self._expected_key is not None and not hmac.compare_digest(
            key.encode(), self._expected_key.encode()
        ):
            raise ApiError(
                400,
                "API key not valid. Please pass a valid API key.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )

    @staticmethod
    def _write(handler: _Handler, reply: Reply) -> None:
        if reply.body is None:
            data = b""
        else:
            data = json.dumps(reply.body, ensure_ascii=False).encode()
        try:
            handler.send_response(reply.status)
            if reply.body is not None:
                handler.send_header("Content-Type", "application/json; charset=UTF-8")
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True  # the client went away (its timeout)

    # -- state helpers (call with the lock held) -------------------------------------

    def _missing(self, what: str, name: str) -> ApiError:
        if self.missing_status == 403:
            return ApiError(
                403,
                f"You do not have permission to access the {what} {name} "
                "or it may not exist.",
            )
        return ApiError(self.missing_status, f"{what} {name} not found.")

    def _get_store(self, name: str) -> Store:
        store = self._stores.get(name)
        if store is None:
            raise self._missing("FileSearchStore", name)
        return store

    def _get_document(self, name: str) -> Document:
        document = self._documents.get(name)
        if document is None:
            raise self._missing("Document", name)
        return document

    def _new_store(self, display_name: str | None, embedding_model: Any) -> Store:
        now = _now()
        name = _new_id(display_name, self._stores, "fileSearchStores/")
        store = Store(name, display_name, embedding_model, now, now)
        self._stores[name] = store
        return store

    def _new_document(
        self,
        store: str,
        data: bytes,
        *,
        display_name: str | None,
        mime_type: str,
        custom_metadata: list[dict[str, Any]],
        chunking_config: Any,
    ) -> Document:
        now = _now()
        text = self.extract_text(data, mime_type)
        pages = split_pages(text, mime_type, chunking_config)
        document = Document(
            name=_new_id(display_name, self._documents, f"{store}/documents/"),
            store=store,
            display_name=display_name,
            mime_type=mime_type,
            size_bytes=len(data),
            custom_metadata=custom_metadata,
            data=data,
            text=text,
            chunks=[chunk for _, chunk in pages],
            pages=[page for page, _ in pages],
            state="STATE_PENDING",
            create_time=now,
            update_time=now,
        )
        self._documents[document.name] = document
        return document

    def _complete(self, operation: Operation) -> None:
        operation.done = True
        document = self._documents.get(operation.document)
        if document is not None:
            document.state = "STATE_FAILED" if operation.error else "STATE_ACTIVE"
            document.update_time = _now()

    def _store_json(self, store: Store) -> dict[str, Any]:
        documents = [d for d in self._documents.values() if d.store == store.name]
        counts = collections.Counter(d.state for d in documents)
        body: dict[str, Any] = {
            "name": store.name,
            "createTime": store.create_time,
            "updateTime": store.update_time,
        }
        if store.display_name:
            body["displayName"] = store.display_name
        if store.embedding_model:
            body["embeddingModel"] = store.embedding_model
        for state, field_name in (
            ("STATE_ACTIVE", "activeDocumentsCount"),
            ("STATE_PENDING", "pendingDocumentsCount"),
            ("STATE_FAILED", "failedDocumentsCount"),
        ):
            if counts[state]:
                body[field_name] = _int64(counts[state])
        size = sum(d.size_bytes for d in documents)
        if size:
            body["sizeBytes"] = _int64(size)
        return body

    @staticmethod
    def _document_json(document: Document) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": document.name,
            "state": document.state,
            "mimeType": document.mime_type,
            "createTime": document.create_time,
            "updateTime": document.update_time,
        }
        if document.display_name:
            body["displayName"] = document.display_name
        if document.size_bytes:
            body["sizeBytes"] = _int64(document.size_bytes)
        if document.custom_metadata:
            body["customMetadata"] = json.loads(json.dumps(document.custom_metadata))
        return body

    @staticmethod
    def _operation_json(operation: Operation) -> dict[str, Any]:
        body: dict[str, Any] = {"name": operation.name}
        if operation.done:
            body["done"] = True
            if operation.error:
                body["error"] = dict(operation.error)
            else:
                body["response"] = {
                    "@type": UPLOAD_RESPONSE_TYPE,
                    "parent": operation.store,
                    "documentName": operation.document,
                }
        return body

    @staticmethod
    def _page(
        items: list[dict[str, Any]], query: dict[str, str], key: str
    ) -> dict[str, Any]:
        try:
            size = int(query.get("pageSize") or 0)
        except ValueError:
            raise ApiError(400, "Invalid pageSize.") from None
        size = 10 if size <= 0 else min(size, 20)
        offset = 0
        token = query.get("pageToken")
        if token:
            try:
                offset = int(base64.urlsafe_b64decode(token).decode().split(":")[1])
            except (ValueError, IndexError, UnicodeDecodeError):
                raise ApiError(400, "Invalid page token.") from None
        page = items[offset : offset + size]
        body: dict[str, Any] = {key: page} if page else {}
        if offset + size < len(items):
            body["nextPageToken"] = base64.urlsafe_b64encode(
                f"offset:{offset + size}".encode()
            ).decode()
        return body

    # -- routes ----------------------------------------------------------------------

    def _do_stores_create(self, request: Request) -> Reply:
        data = request.json()
        display_name = _pick(data, "displayName", "display_name")
        if display_name is not None and (
            not isinstance(display_name, str) or len(display_name) > 512
        ):
            raise ApiError(400, "displayName must be a string of at most 512 chars.")
        embedding_model = _pick(data, "embeddingModel", "embedding_model")
        with self._lock:
            store = self._new_store(display_name, embedding_model)
            return Reply(body=self._store_json(store))

    def _do_stores_list(self, request: Request) -> Reply:
        with self._lock:
            stores = [self._store_json(store) for store in self._stores.values()]
        return Reply(body=self._page(stores, request.query, "fileSearchStores"))

    def _do_stores_get(self, request: Request) -> Reply:
        with self._lock:
            return Reply(
                body=self._store_json(self._get_store(request.params["store"]))
            )

    def _do_stores_delete(self, request: Request) -> Reply:
        name = request.params["store"]
        with self._lock:
            self._get_store(name)
            documents = [d for d in self._documents.values() if d.store == name]
            if documents and not _truthy(request.query.get("force")):
                raise ApiError(
                    400,
                    "Cannot delete non-empty FileSearchStore",
                    "FAILED_PRECONDITION",
                )
            for document in documents:
                del self._documents[document.name]
            for upload_id, session in list(self._sessions.items()):
                if session.store == name:
                    del self._sessions[upload_id]
            del self._stores[name]
        return Reply(body={})

    def _do_documents_list(self, request: Request) -> Reply:
        name = request.params["store"]
        with self._lock:
            self._get_store(name)
            documents = [
                self._document_json(d)
                for d in self._documents.values()
                if d.store == name
            ]
        return Reply(body=self._page(documents, request.query, "documents"))

    def _do_documents_get(self, request: Request) -> Reply:
        with self._lock:
            self._get_store(request.params["store"])
            document = self._get_document(request.params["document"])
            return Reply(body=self._document_json(document))

    def _do_documents_delete(self, request: Request) -> Reply:
        with self._lock:
            self._get_store(request.params["store"])
            document = self._get_document(request.params["document"])
            if document.chunks and not _truthy(request.query.get("force")):
                raise ApiError(
                    400, "Cannot delete non-empty Document", "FAILED_PRECONDITION"
                )
            del self._documents[document.name]
        return Reply(body={})

    def _do_operations_get(self, request: Request) -> Reply:
        name = request.params["operation"]
        with self._lock:
            operation = self._operations.get(name)
            if operation is None:
                raise self._missing("Operation", name)
            if not operation.done:
                operation.polls += 1
                until = operation.polls_until_done
                if until is not None and operation.polls >= until:
                    self._complete(operation)
            return Reply(body=self._operation_json(operation))

    def _do_upload_start(self, request: Request) -> Reply:
        headers = request.headers
        protocol = (headers.get("X-Goog-Upload-Protocol") or "").lower()
        command = (headers.get("X-Goog-Upload-Command") or "").lower()
        if protocol != "resumable" or command != "start":
            raise ApiError(
                400,
                "The fake serves resumable uploads only: X-Goog-Upload-Protocol: "
                "resumable with X-Goog-Upload-Command: start.",
            )
        data = request.json()
        declared = headers.get("X-Goog-Upload-Header-Content-Length")
        try:
            declared_size = int(declared) if declared else None
        except ValueError:
            raise ApiError(
                400, "Invalid X-Goog-Upload-Header-Content-Length."
            ) from None
        mime_type = (
            _pick(data, "mimeType", "mime_type")
            or headers.get("X-Goog-Upload-Header-Content-Type")
            or "application/octet-stream"
        )
        display_name = _pick(data, "displayName", "display_name")
        if display_name is not None and not isinstance(display_name, str):
            raise ApiError(400, "displayName must be a string.")
        metadata = {
            "display_name": display_name,
            "custom_metadata": normalize_custom_metadata(
                _pick(data, "customMetadata", "custom_metadata")
            ),
            "chunking_config": _pick(data, "chunkingConfig", "chunking_config"),
        }
        store = request.params["store"]
        with self._lock:
            self._get_store(store)
            upload_id = secrets.token_urlsafe(18)
            self._sessions[upload_id] = UploadSession(
                upload_id=upload_id,
                store=store,
                metadata=metadata,
                mime_type=mime_type,
                declared_size=declared_size,
                file_name=headers.get("X-Goog-Upload-File-Name"),
            )
        url = (
            f"{self.base_url}/upload/{request.params['version']}/{store}"
            f":uploadToFileSearchStore?upload_id={upload_id}&upload_protocol=resumable"
        )
        return Reply(
            headers={
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-URL": url,
                "X-Goog-Upload-Control-URL": url,
                "X-Goog-Upload-Chunk-Granularity": str(UPLOAD_CHUNK_GRANULARITY),
            }
        )

    def _do_upload_chunk(self, request: Request) -> Reply:
        upload_id = request.query["upload_id"]
        commands = {
            part.strip()
            for part in (request.headers.get("X-Goog-Upload-Command") or "")
            .lower()
            .split(",")
            if part.strip()
        }
        with self._lock:
            session = self._sessions.get(upload_id)
            if session is None:
                raise ApiError(404, f"Upload session {upload_id} not found.")
            if commands == {"query"}:
                return Reply(
                    headers={
                        "X-Goog-Upload-Status": "active",
                        "X-Goog-Upload-Size-Received": str(len(session.received)),
                    }
                )
            if commands == {"cancel"}:
                del self._sessions[upload_id]
                return Reply(headers={"X-Goog-Upload-Status": "cancelled"})
            if not commands or not commands <= {"upload", "finalize"}:
                raise ApiError(400, f"Unknown X-Goog-Upload-Command {commands}.")
            if "upload" in commands:
                offset = request.headers.get("X-Goog-Upload-Offset")
                if offset is None or offset != str(len(session.received)):
                    raise ApiError(
                        400,
                        f"X-Goog-Upload-Offset {offset} does not match the "
                        f"{len(session.received)} bytes received.",
                    )
                session.received.extend(request.body)
            if "finalize" not in commands:
                return Reply(headers={"X-Goog-Upload-Status": "active"})
            del self._sessions[upload_id]
            if (
                session.declared_size is not None
                and len(session.received) != session.declared_size
            ):
                raise ApiError(
                    400,
                    f"Received {len(session.received)} bytes, "
                    f"{session.declared_size} declared.",
                )
            self._get_store(session.store)
            document = self._new_document(
                session.store,
                bytes(session.received),
                display_name=session.metadata["display_name"],
                mime_type=session.mime_type,
                custom_metadata=session.metadata["custom_metadata"],
                chunking_config=session.metadata["chunking_config"],
            )
            operation_id = _new_id(None, (), "")
            operation = Operation(
                name=f"{session.store}/upload/operations/{operation_id}",
                store=session.store,
                document=document.name,
                polls_until_done=self.operation_polls_until_done,
                error=self.operation_error,
            )
            self._operations[operation.name] = operation
            if operation.polls_until_done == 0:
                self._complete(operation)
            return Reply(
                body=self._operation_json(operation),
                headers={"X-Goog-Upload-Status": "final"},
            )

    def _do_generateContent(self, request: Request) -> Reply:
        data = request.json()
        contents = data.get("contents")
        if not contents:
            raise ApiError(
                400, "* GenerateContentRequest.contents: contents is not specified"
            )
        query = self._question(contents)
        config = data.get("generationConfig") or {}
        temperature = config.get("temperature")
        if temperature is not None and not 0 <= temperature <= 2:
            raise ApiError(400, "temperature must be in [0.0, 2.0].")
        max_tokens = config.get("maxOutputTokens")
        file_search = None
        for tool in data.get("tools") or []:
            found = _pick(tool, "fileSearch", "file_search")
            if found is not None:
                file_search = found
        model = request.params["model"]
        search: dict[str, Any] = {
            "model": model,
            "query": query,
            "stores": [],
            "temperature": temperature,
            "max_output_tokens": max_tokens,
            "top_k": None,
            "metadata_filter": None,
            "results": [],
        }
        hits: list[tuple[Document, int]] = []
        if file_search is not None:
            stores = _pick(
                file_search, "fileSearchStoreNames", "file_search_store_names"
            )
            if not stores:
                raise ApiError(400, "fileSearch.fileSearchStoreNames is required.")
            if len(stores) > MAX_STORES_PER_REQUEST:
                raise ApiError(
                    400,
                    f"At most {MAX_STORES_PER_REQUEST} FileSearchStores can be "
                    "searched in one request.",
                )
            top_k = _pick(file_search, "topK", "top_k") or DEFAULT_TOP_K
            metadata_filter = _pick(file_search, "metadataFilter", "metadata_filter")
            accepts = (
                parse_metadata_filter(metadata_filter) if metadata_filter else None
            )
            with self._lock:
                for store in stores:
                    self._get_store(store)
                hits = self._rank(query, stores, int(top_k), accepts)
            search.update(
                stores=list(stores),
                top_k=int(top_k),
                metadata_filter=metadata_filter,
                results=[document.name for document, _ in hits],
            )
        with self._lock:
            self._searches.append(search)
        return Reply(body=self._answer_body(model, query, hits, max_tokens))

    @staticmethod
    def _question(contents: list[Any]) -> str:
        """The text of the last user turn."""
        for content in reversed(contents):
            if isinstance(content, dict) and content.get("role", "user") == "user":
                return " ".join(
                    part["text"]
                    for part in content.get("parts") or []
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
        return ""

    def _rank(
        self,
        query: str,
        stores: list[str],
        top_k: int,
        accepts: Callable[[list[dict[str, Any]]], bool] | None,
    ) -> list[tuple[Document, int]]:
        """The best chunks, as (document, index of the chunk in it)."""
        all_terms = list(dict.fromkeys(_words(query)))
        terms = [t for t in all_terms if t not in STOP_WORDS] or all_terms
        scored = []
        order = 0
        for document in self._documents.values():
            if document.store not in stores or document.state != "STATE_ACTIVE":
                continue
            if accepts is not None and not accepts(document.custom_metadata):
                continue
            for index, chunk in enumerate(document.chunks):
                counts = collections.Counter(_words(chunk))
                overlap = sum(1 for term in terms if counts[term])
                if overlap:
                    frequency = sum(counts[term] for term in terms)
                    scored.append((-overlap, -frequency, order, document, index))
                order += 1
        scored.sort(key=lambda hit: hit[:3])
        return [(document, index) for *_, document, index in scored[:top_k]]

    @staticmethod
    def _answer_body(
        model: str,
        query: str,
        hits: list[tuple[Document, int]],
        max_tokens: int | None,
    ) -> dict[str, Any]:
        if hits:
            parts = [
                f"From {document.display_name or document.name}: "
                f"{document.chunks[index]}"
                for document, index in hits
            ]
        else:
            parts = [f"No passage in the documents answers: {query}"]
        text = " ".join(parts)
        finish_reason = "STOP"
        words = text.split()
        if max_tokens and len(words) > max_tokens:
            text = " ".join(words[:max_tokens])
            finish_reason = "MAX_TOKENS"
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": finish_reason,
            "index": 0,
        }
        if hits:
            chunks = []
            for document, index in hits:
                context: dict[str, Any] = {
                    "title": document.display_name or document.name.rsplit("/", 1)[1],
                    "text": document.chunks[index],
                    "fileSearchStore": document.store,
                }
                if document.pages[index] is not None:
                    context["pageNumber"] = document.pages[index]
                if document.custom_metadata:
                    context["customMetadata"] = json.loads(
                        json.dumps(document.custom_metadata)
                    )
                chunks.append({"retrievedContext": context})
            candidate["groundingMetadata"] = {
                "groundingChunks": chunks,
                "groundingSupports": _supports(text, parts),
            }
        prompt_tokens = len(query.split())
        answer_tokens = len(text.split())
        return {
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": answer_tokens,
                "totalTokenCount": prompt_tokens + answer_tokens,
            },
            "modelVersion": model.rsplit("/", 1)[-1],
            "responseId": secrets.token_urlsafe(12),
        }


def _supports(text: str, parts: list[str]) -> list[dict[str, Any]]:
    """One support per part still in the (maybe cut) answer; UTF-8 byte offsets."""
    encoded = text.encode()
    supports = []
    start = 0
    for index, part in enumerate(parts):
        end = min(start + len(part.encode()), len(encoded))
        if start >= len(encoded):
            break
        segment: dict[str, Any] = {
            "endIndex": end,
            "text": encoded[start:end].decode(errors="ignore"),
        }
        if start:
            segment["startIndex"] = start  # proto3 JSON leaves zeros out
        supports.append(
            {
                "segment": segment,
                "groundingChunkIndices": [index],
                "confidenceScores": [round(1 - index / (len(parts) + 1), 3)],
            }
        )
        start = end + 1  # the space joining the parts
    return supports
