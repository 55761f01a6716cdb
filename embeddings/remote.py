"""An embedding server that speaks OpenAI's `POST /v1/embeddings`.

Ollama, vLLM, Hugging Face text-embeddings-inference, LM Studio and llama.cpp's
server all do. Requests carry `{"model", "input": [texts], "encoding_format":
"float"}` and, with a key, `Authorization: Bearer <key>`; answers are
`{"data": [{"index", "embedding"}]}`.

Texts are sent in batches of `batch_size`. A 413 (text-embeddings-inference answers
it for a batch over its `--max-client-batch-size`) halves the batch and tries
again. 408, 429, 5xx, timeouts and refused connections are retried `retries` times
with exponential backoff (a `Retry-After` of at most `max_retry_delay` seconds is
honoured), then raise `EmbeddingServiceUnavailable`; other 4xx raise
`EmbeddingServiceError` at once. The API key is never logged, and is cut out of
any error message, even one where the server echoed it back.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from embeddings.base import (
    Embedder,
    EmbeddingServiceError,
    EmbeddingServiceUnavailable,
    l2_normalize,
)

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# English text runs about four characters a token; three leaves room for the rest.
CHARS_PER_TOKEN = 3
_MAX_ERROR_BODY = 64 * 1024
_SPACE = re.compile(r"\s+")


class OpenAICompatibleEmbedder(Embedder):
    """Vectors from an embedding server; see the module docstring.

    `dimensions` is asked of the server (one short request) the first time it is
    read, unless given. `max_tokens` is the server model's window, used by
    `windows`, which cuts by characters (the server's tokenizer is not here).
    """

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        *,
        dimensions: int | None = None,
        max_tokens: int = 512,
        batch_size: int = 64,
        timeout: float = 30.0,
        retries: int = 2,
        retry_delay: float = 0.5,
        max_retry_delay: float = 30.0,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        if not url:
            raise ValueError("url is required")
        if not model:
            raise ValueError("model is required")
        self.url = url.rstrip("/")
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        self.endpoint = (
            f"{self.url}/embeddings"
            if self.url.endswith("/v1")
            else f"{self.url}/v1/embeddings"
        )
        self.model = model
        self._api_key = api_key or None
        self._dimensions = dimensions
        self.max_tokens = self.window_tokens = max_tokens
        self.batch_size = max(1, batch_size)
        self.timeout = timeout
        self.retries = max(0, retries)
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.name = f"{model}/openai-compatible"
        self._opener = urllib.request.build_opener()

    @property
    def dimensions(self) -> int:  # type: ignore[override]
        if self._dimensions is None:
            self._dimensions = int(self._post(["dimensions"]).shape[1])
        return self._dimensions

    # --- Embedder --------------------------------------------------------------

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.query_prefix + t for t in texts])

    def windows(self, text: str) -> list[str]:
        """Pieces of at most `max_tokens * 3` characters, cut at spaces, about
        equal in size (the server's tokenizer is not here to count with)."""
        text = text.strip()
        if not text:
            return []
        budget = max(
            16, (self.max_tokens - 2) * CHARS_PER_TOKEN - len(self.passage_prefix)
        )
        if len(text) <= budget:
            return [text]
        target = math.ceil(len(text) / math.ceil(len(text) / budget))
        pieces: list[str] = []
        start = 0
        while start < len(text):
            if len(text) - start <= budget:
                pieces.append(text[start:])
                break
            end = start + target
            space = text.rfind(" ", start + target // 2, end + 1)
            if space > start:
                end = space
            pieces.append(text[start:end].strip())
            start = end
            while start < len(text) and text[start].isspace():
                start += 1
        return [p for p in pieces if p]

    # --- HTTP ------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dimensions or 0), dtype=np.float32)
        parts = [
            self._embed_batch(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        try:
            return self._post(texts)
        except EmbeddingServiceError as exc:
            if exc.status != 413 or len(texts) == 1:
                raise
        half = len(texts) // 2
        # The server refuses batches this large: use smaller ones from now on.
        self.batch_size = max(1, min(self.batch_size, half))
        logger.info(
            "embedding_batch_too_large", extra={"batch": len(texts), "now": half}
        )
        return np.concatenate(
            [self._embed_batch(texts[:half]), self._embed_batch(texts[half:])]
        )

    def _post(self, texts: list[str]) -> np.ndarray:
        body = json.dumps(
            {"model": self.model, "input": texts, "encoding_format": "float"}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "flamehaven-embeddings/1",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        attempt = 0
        while True:
            # The scheme was checked in __init__ (http or https only).
            request = urllib.request.Request(  # noqa: S310
                self.endpoint, data=body, headers=headers, method="POST"
            )
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    payload = response.read()
                return self._parse(payload, len(texts))
            except urllib.error.HTTPError as exc:
                status = exc.code
                message = self._error_message(exc)
                delay = _retry_after(exc.headers.get("Retry-After"))
                exc.close()
                if status not in RETRYABLE_STATUSES:
                    raise EmbeddingServiceError(
                        f"{self._where()} answered {status}: {message}", status=status
                    ) from None
                problem = f"answered {status}: {message}"
            except (OSError, http.client.HTTPException) as exc:
                # URLError (refused, DNS), TimeoutError, a connection reset or a
                # truncated answer.
                status, delay = None, None
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError):
                    problem = f"did not answer within {self.timeout:g} s"
                else:
                    detail = self._redact(str(reason) or type(reason).__name__)
                    problem = f"could not be reached: {detail}"
            if attempt >= self.retries:
                raise EmbeddingServiceUnavailable(
                    f"{self._where()} {problem} (after {attempt + 1} attempts)",
                    status=status,
                ) from None
            wait = self.retry_delay * 2**attempt
            if delay is not None:
                wait = max(wait, min(delay, self.max_retry_delay))
            logger.warning(
                "embedding_request_retry",
                extra={"url": self.endpoint, "status": status, "attempt": attempt + 1},
            )
            time.sleep(wait)
            attempt += 1

    def _parse(self, payload: bytes, expected: int) -> np.ndarray:
        try:
            data = json.loads(payload)
            items = data["data"]
            if not isinstance(items, list):
                raise TypeError("data is not a list")
            if all(isinstance(item, dict) and "index" in item for item in items):
                items = sorted(items, key=lambda item: item["index"])
            vectors = np.array([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingServiceError(
                f"{self._where()} sent an answer that is not an embeddings list: {exc}"
            ) from None
        if vectors.ndim != 2 or len(vectors) != expected:
            raise EmbeddingServiceError(
                f"{self._where()} sent {len(vectors)} vectors for {expected} texts"
            )
        if self._dimensions is not None and vectors.shape[1] != self._dimensions:
            raise EmbeddingServiceError(
                f"{self._where()} sent {vectors.shape[1]}-dimensional vectors, "
                f"expected {self._dimensions}"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingServiceError(f"{self._where()} sent non-finite values")
        self._dimensions = vectors.shape[1]
        return l2_normalize(vectors)

    def _error_message(self, exc: urllib.error.HTTPError) -> str:
        try:
            raw = exc.read(_MAX_ERROR_BODY)
        except OSError:
            raw = b""
        text = raw.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            error = data.get("error", data.get("message", data.get("detail")))
            if isinstance(error, dict):
                error = error.get("message") or error
            if error:
                text = error if isinstance(error, str) else json.dumps(error)
        text = _SPACE.sub(" ", text)[:300] or exc.reason or "no message"
        return self._redact(str(text))

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        return text

    def _where(self) -> str:
        return f"The embedding server at {self.endpoint} (model {self.model!r})"

    def __repr__(self) -> str:
        return f"<OpenAICompatibleEmbedder {self.model} at {self.endpoint}>"


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 and math.isfinite(seconds) else None
