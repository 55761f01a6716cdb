"""One embedder from plain setting values (the Django settings pass them in)."""

from __future__ import annotations

import os
from typing import Any

from embeddings.base import Embedder, EmbeddingError

MODES = ("builtin", "local", "openai", "off")


class EmbeddingConfigError(EmbeddingError):
    """The embedding settings contradict each other or miss a value."""


def embedder_from_settings(
    embeddings: str = "builtin",
    *,
    model_dir: str | os.PathLike[str] | None = None,
    model_sha256: str | None = None,
    url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Embedder | None:
    """The embedder that EMBEDDINGS names, or None for "off".

    - "builtin" (default): all-MiniLM-L6-v2 from the installed package, its ONNX
      graph cached in `cache_dir` (DATA_DIR/models, say).
    - "local": the sentence-transformers folder EMBEDDINGS_MODEL_DIR (bge-small,
      e5-small, ...); EMBEDDINGS_MODEL_SHA256, if set, is its weights file's hash.
    - "openai": the server at EMBEDDINGS_URL (EMBEDDINGS_MODEL, EMBEDDINGS_API_KEY).
    - "off": no dense retrieval.

    A value that the chosen mode would ignore (a URL with "builtin", say) is an
    error rather than silently unused. `options` go to the embedder's constructor
    (runtime, precision, threads for the local ones; timeout, batch_size, retries
    for "openai").
    """
    mode = (embeddings or "builtin").strip().lower()
    if mode not in MODES:
        raise EmbeddingConfigError(
            f"EMBEDDINGS={embeddings!r}: use one of {', '.join(MODES)}"
        )
    given = {
        "EMBEDDINGS_MODEL_DIR": model_dir,
        "EMBEDDINGS_MODEL_SHA256": model_sha256,
        "EMBEDDINGS_URL": url,
        "EMBEDDINGS_MODEL": model,
        "EMBEDDINGS_API_KEY": api_key,
    }
    used = {
        "builtin": set(),
        "local": {"EMBEDDINGS_MODEL_DIR", "EMBEDDINGS_MODEL_SHA256"},
        "openai": {"EMBEDDINGS_URL", "EMBEDDINGS_MODEL", "EMBEDDINGS_API_KEY"},
        "off": set(given),
    }[mode]
    unused = [name for name, value in given.items() if value and name not in used]
    if unused:
        raise EmbeddingConfigError(
            f"EMBEDDINGS={mode} does not use {', '.join(unused)}: set EMBEDDINGS "
            "to the mode you mean (builtin, local, openai) or unset them"
        )
    if mode == "off":
        return None
    if mode == "builtin":
        from embeddings.builtin import builtin_embedder

        return builtin_embedder(cache_dir, **options)
    if mode == "local":
        if not model_dir:
            raise EmbeddingConfigError("EMBEDDINGS=local needs EMBEDDINGS_MODEL_DIR")
        from embeddings.local import LocalFolderEmbedder

        checksums = {"model.safetensors": model_sha256} if model_sha256 else None
        return LocalFolderEmbedder(
            model_dir, cache_dir=cache_dir, checksums=checksums, **options
        )
    if not url or not model:
        raise EmbeddingConfigError(
            "EMBEDDINGS=openai needs EMBEDDINGS_URL and EMBEDDINGS_MODEL"
        )
    from embeddings.remote import OpenAICompatibleEmbedder

    return OpenAICompatibleEmbedder(url, model, api_key, **options)
