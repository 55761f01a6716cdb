"""embedder_from_settings: plain setting values in, one embedder (or None) out."""

import pytest

from embeddings import (
    EmbeddingConfigError,
    LocalFolderEmbedder,
    ModelIntegrityError,
    OpenAICompatibleEmbedder,
    embedder_from_settings,
)
from tests.fakes.embeddings import EmbeddingsFake


def test_off_is_none():
    assert embedder_from_settings("off") is None


def test_builtin_is_the_default(model_cache, int8):
    embedder = embedder_from_settings(cache_dir=model_cache)
    assert isinstance(embedder, LocalFolderEmbedder)
    assert embedder.name == int8.name


def test_local_folder(model_dir, model_cache, int8):
    embedder = embedder_from_settings(
        "local",
        model_dir=str(model_dir),
        model_sha256=int8.weights_sha256,
        cache_dir=model_cache,
        runtime="numpy",
    )
    assert embedder.name.startswith(f"{model_dir.name}/numpy-fp32@")
    with pytest.raises(ModelIntegrityError):
        embedder_from_settings(
            "local", model_dir=str(model_dir), model_sha256="0" * 64, runtime="numpy"
        )


def test_openai_compatible():
    with EmbeddingsFake(api_key="k") as fake:
        embedder = embedder_from_settings(
            "openai", url=fake.url, model="fake-embed", api_key="k", timeout=5
        )
        assert isinstance(embedder, OpenAICompatibleEmbedder)
        assert embedder.name == "fake-embed/openai-compatible"
        assert embedder.embed_query("hello").shape == (32,)


@pytest.mark.parametrize(
    ("mode", "values", "message"),
    [
        ("vector", {}, "use one of builtin, local, openai, off"),
        ("local", {}, "needs EMBEDDINGS_MODEL_DIR"),
        ("openai", {"url": "http://127.0.0.1:1"}, "needs EMBEDDINGS_URL and"),
        ("builtin", {"url": "http://127.0.0.1:1"}, "does not use EMBEDDINGS_URL"),
        ("builtin", {"model_dir": "/models/bge"}, "EMBEDDINGS_MODEL_DIR"),
        ("openai", {"url": "http://x", "model": "m", "model_dir": "/m"}, "MODEL_DIR"),
    ],
)
def test_settings_that_do_not_fit_are_errors(mode, values, message):
    with pytest.raises(EmbeddingConfigError, match=message):
        embedder_from_settings(mode, **values)


def test_off_ignores_the_other_settings():
    assert embedder_from_settings("OFF", url="http://x", model="m") is None
