"""An HTTP fake of an OpenAI-compatible embedding server, for tests and benchmarks.

A real server on loopback that `embeddings.OpenAICompatibleEmbedder` (or any other
client) talks to over HTTP:

    with EmbeddingsFake(api_key="secret", max_batch=8) as fake:
        embedder = OpenAICompatibleEmbedder(fake.url, "fake-embed", "secret")
        vectors = embedder.embed_passages(["one", "two"])
        fake.requests  # what was asked, without the key

What it serves, as the servers it stands for do:

- `POST /v1/embeddings` with `{"model", "input": str or [str], "encoding_format"?}`
  answers `{"object": "list", "data": [{"object": "embedding", "index",
  "embedding"}], "model", "usage"}`.
- `GET /v1/models` answers `{"object": "list", "data": [{"id", "object"}]}`.
- With `api_key`, a request without `Authorization: Bearer <key>` gets 401 in
  OpenAI's error shape (`{"error": {"message", "type", "code"}}`); a wrong key gets
  401 "Incorrect API key provided" with the key masked, as OpenAI answers.
- `max_batch`: more inputs than that in one request gets 413
  `{"error": "batch size N > maximum allowed batch size M", "error_type":
  "validation"}`, as text-embeddings-inference answers (its
  `--max-client-batch-size`).
- An unknown model (when `models` is given) gets 404, as Ollama answers one it has
  not pulled; a body that is not JSON, or has no input, 400.
- Vectors are deterministic and not unit length (the client must normalise): a
  hashed bag of lower-cased words, so texts that share words score higher.
- `fail(status, ...)` answers the next requests with an error (with `Retry-After`
  if asked, or a message echoing the Authorization header, to test that clients
  never repeat a key); `delay(seconds)` holds the next answers back (timeouts).
- `reverse_order=True` lists `data` last index first (the spec keys rows by
  `index`, not position).

The request log (`requests`) keeps `has_api_key`, never the key.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HOST = "127.0.0.1"
DEFAULT_MODEL = "fake-embed"
_WORD = re.compile(r"\w+")


@dataclass
class Fault:
    status: int
    times: int | None
    message: str | None
    retry_after: float | None
    echo_authorization: bool
    hits: int = 0


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A hashed bag of words: each word adds +-1 to two coordinates."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()) or [""]:
        digest = hashlib.sha256(word.encode()).digest()
        for k in range(2):
            index = int.from_bytes(digest[4 * k : 4 * k + 4], "little") % dimensions
            vector[index] += 1.0 if digest[8 + k] & 1 else -1.0
    # Never all zero, and never unit length.
    vector[0] += 0.5
    return [3.0 * v for v in vector]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: EmbeddingsFake


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "EmbeddingsFake/1.0"
    timeout = 30
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class EmbeddingsFake:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        dimensions: int = 32,
        max_batch: int | None = None,
        models: tuple[str, ...] | None = None,
        reverse_order: bool = False,
    ) -> None:
        self.api_key = api_key
        self.dimensions = dimensions
        self.max_batch = max_batch
        self.models = models
        self.reverse_order = reverse_order
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._delays: list[list[float]] = []  # [seconds, remaining]
        self._requests: list[dict[str, Any]] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        server = _Server((HOST, 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="embeddings-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delays.clear()
            self._requests.clear()

    # --- control ---------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        times: int | None = 1,
        message: str | None = None,
        retry_after: float | None = None,
        echo_authorization: bool = False,
    ) -> None:
        """Answer the next `times` requests (None: all) with `status`."""
        with self._lock:
            self._faults.append(
                Fault(status, times, message, retry_after, echo_authorization)
            )

    def delay(self, seconds: float, *, times: int = 1) -> None:
        with self._lock:
            self._delays.append([seconds, times])

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._requests]

    def vector(self, text: str) -> list[float]:
        return fake_vector(text, self.dimensions)

    # --- serving ---------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        auth = handler.headers.get("Authorization")
        entry: dict[str, Any] = {
            "method": handler.command,
            "path": handler.path,
            "has_api_key": bool(auth),
            "user_agent": handler.headers.get("User-Agent"),
        }
        status, payload, headers = self._answer(handler, body, auth, entry)
        with self._lock:
            self._requests.append(entry)
            delay = 0.0
            for item in self._delays:
                if item[1] > 0:
                    item[1] -= 1
                    delay = item[0]
                    break
        if delay:
            time.sleep(delay)
        data = json.dumps(payload).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def _answer(
        self, handler: _Handler, body: bytes, auth: str | None, entry: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        fault = self._take_fault()
        if fault is not None:
            message = fault.message or f"Injected fault ({fault.status})"
            if fault.echo_authorization:
                message = f"{message}; you sent Authorization: {auth}"
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return fault.status, _openai_error(message, "server_error"), headers

        if self.api_key is not None:
            if not auth:
                return (
                    401,
                    _openai_error(
                        "You didn't provide an API key.", "invalid_request_error"
                    ),
                    {},
                )
            if auth != f"Bearer {self.api_key}":
                sent = auth.removeprefix("Bearer ")
                masked = f"{sent[:3]}***{sent[-4:]}" if len(sent) > 8 else "***"
                return (
                    401,
                    _openai_error(
                        f"Incorrect API key provided: {masked}.",
                        "invalid_request_error",
                        code="invalid_api_key",
                    ),
                    {},
                )

        path = handler.path.split("?", 1)[0]
        if handler.command == "GET" and path == "/v1/models":
            names = self.models or (DEFAULT_MODEL,)
            return (
                200,
                {
                    "object": "list",
                    "data": [{"id": n, "object": "model"} for n in names],
                },
                {},
            )
        if handler.command != "POST" or path != "/v1/embeddings":
            return 404, _openai_error(f"No route for {path}", "not_found"), {}

        try:
            request = json.loads(body)
        except ValueError:
            return 400, _openai_error("Body is not JSON", "invalid_request_error"), {}
        if not isinstance(request, dict):
            return 400, _openai_error("Body is not an object", "invalid_request"), {}
        model = request.get("model")
        inputs = request.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        entry.update(
            model=model,
            inputs=list(inputs) if isinstance(inputs, list) else inputs,
            batch=len(inputs) if isinstance(inputs, list) else None,
        )
        if not isinstance(model, str) or not model:
            return 400, _openai_error("model is required", "invalid_request_error"), {}
        if self.models is not None and model not in self.models:
            return (
                404,
                _openai_error(
                    f'model "{model}" not found, try pulling it first', "not_found"
                ),
                {},
            )
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(t, str) for t in inputs)
        ):
            return (
                400,
                _openai_error(
                    "input must be a string or a non-empty list of strings",
                    "invalid_request_error",
                ),
                {},
            )
        if request.get("encoding_format", "float") != "float":
            return (
                400,
                _openai_error("encoding_format must be float", "invalid_request_error"),
                {},
            )
        if self.max_batch is not None and len(inputs) > self.max_batch:
            return (
                413,
                {
                    "error": f"batch size {len(inputs)} > maximum allowed batch "
                    f"size {self.max_batch}",
                    "error_type": "validation",
                },
                {},
            )
        rows = [
            {"object": "embedding", "index": i, "embedding": self.vector(text)}
            for i, text in enumerate(inputs)
        ]
        if self.reverse_order:
            rows.reverse()
        tokens = sum(len(_WORD.findall(t)) + 2 for t in inputs)
        return (
            200,
            {
                "object": "list",
                "data": rows,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            {},
        )

    def _take_fault(self) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times is None or fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None


def _openai_error(message: str, kind: str, *, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
