"""The embedder interface and the errors every embedder raises."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class EmbeddingError(Exception):
    """Base of this package's errors; the message is safe to show and to log."""


class ModelFormatError(EmbeddingError):
    """A model folder is missing a file, or holds something this package cannot run."""


class ModelIntegrityError(EmbeddingError):
    """A model file's sha256 is not the expected one: refuse to load it."""


class EmbeddingServiceError(EmbeddingError):
    """An embedding server refused a request (4xx other than 408/429)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EmbeddingServiceUnavailable(EmbeddingServiceError):
    """An embedding server did not answer in time, was unreachable, rate-limited us
    or failed (5xx) after the retries: the same request may succeed later."""


@dataclass(frozen=True)
class WindowedVectors:
    """Vectors of every window of several passages.

    `owners[i]` is the index, in the passages given, of the passage that row `i` of
    `vectors` came from; a passage's windows are consecutive rows, in text order.
    """

    vectors: np.ndarray  # (windows, dimensions) float32, L2-normalised rows
    owners: np.ndarray  # (windows,) int
    windows: tuple[str, ...]


class Embedder(abc.ABC):
    """Turns text into unit-length float32 vectors; cosine similarity is a dot product.

    `name` identifies the vectors, not the object: two embedders with the same name
    give vectors that can be compared, so it is stored with every vector and a change
    of name means re-embedding.
    """

    name: str
    dimensions: int
    max_tokens: int  # the model's window, special tokens and prefixes included
    window_tokens: int  # the size `windows` cuts to: max_tokens or less

    @abc.abstractmethod
    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimensions) float32, one unit row per text.

        A text longer than the model's window is cut at it: call `windows` first to
        embed all of a long passage.
        """

    @abc.abstractmethod
    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Like `embed_passages`, with the model's query prefix where it has one."""

    @abc.abstractmethod
    def windows(self, text: str) -> list[str]:
        """`text` cut into consecutive pieces that each fit the model's window.

        The pieces are substrings of `text`, cut between words, of about equal size;
        a text that fits comes back whole, an empty one as [].
        """

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def embed_windows(self, passages: Sequence[str]) -> WindowedVectors:
        """Every window of every passage, embedded in one go (one batch pass)."""
        pieces: list[str] = []
        owners: list[int] = []
        for index, passage in enumerate(passages):
            for piece in self.windows(passage):
                pieces.append(piece)
                owners.append(index)
        vectors = (
            self.embed_passages(pieces)
            if pieces
            else np.zeros((0, self.dimensions), np.float32)
        )
        owner_index = np.asarray(owners, dtype=np.int64)
        return WindowedVectors(vectors, owner_index, tuple(pieces))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))
