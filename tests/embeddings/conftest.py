"""Session fixtures: the built-in model unpacked and its graphs built once, in a
temporary cache folder (never the user's ~/.cache)."""

import pytest

from embeddings import builtin_embedder, builtin_model_dir


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("embedding-models")


@pytest.fixture(scope="session")
def model_dir(model_cache):
    return builtin_model_dir(model_cache)


@pytest.fixture(scope="session")
def int8(model_cache):
    """The default: onnxruntime, int8."""
    return builtin_embedder(model_cache)


@pytest.fixture(scope="session")
def onnx_fp32(model_cache):
    return builtin_embedder(model_cache, precision="fp32")


@pytest.fixture(scope="session")
def numpy_fp32(model_cache):
    """The reference: the float32 forward pass in numpy."""
    return builtin_embedder(model_cache, runtime="numpy")
