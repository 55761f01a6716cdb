"""The built-in model end to end: the real all-MiniLM-L6-v2 weights, both runtimes."""

import shutil
from collections import Counter

import numpy as np
import pytest

from embeddings import (
    LocalFolderEmbedder,
    ModelFormatError,
    ModelIntegrityError,
    bert,
    builtin,
    builtin_embedder,
    prepare_onnx_graph,
)
from embeddings.local import session_options
from tests.embeddings.texts import (
    LONG_TEXT,
    PARAPHRASES,
    PASSAGES,
    QUESTIONS,
    UNRELATED,
)

WEIGHTS_PREFIX = builtin.CHECKSUMS["model.safetensors"][:12]


def pair_cosines(embedder, pairs):
    a = embedder.embed_passages([p[0] for p in pairs])
    b = embedder.embed_passages([p[1] for p in pairs])
    return (a * b).sum(1)


def test_identity(int8, numpy_fp32, onnx_fp32):
    assert int8.name == f"all-MiniLM-L6-v2/onnx-int8@{WEIGHTS_PREFIX}"
    assert numpy_fp32.name == f"all-MiniLM-L6-v2/numpy-fp32@{WEIGHTS_PREFIX}"
    assert onnx_fp32.name == f"all-MiniLM-L6-v2/onnx-fp32@{WEIGHTS_PREFIX}"
    for embedder in (int8, numpy_fp32):
        assert embedder.dimensions == 384
        assert embedder.max_tokens == 256
        assert embedder.query_prefix == embedder.passage_prefix == ""


@pytest.mark.parametrize("which", ["int8", "numpy_fp32"])
def test_vectors_are_unit_float32_rows(request, which):
    embedder = request.getfixturevalue(which)
    vectors = embedder.embed_passages(["one", "two words", ""])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed_passages([]).shape == (0, 384)
    assert embedder.embed_query("one").shape == (384,)


def test_known_similarity_of_the_reference_model(numpy_fp32):
    # sentence-transformers' own example for all-MiniLM-L6-v2 scores this pair 0.7553.
    a, b = numpy_fp32.embed_passages(
        ["A man is eating food.", "A man is eating a piece of bread."]
    )
    assert float(a @ b) == pytest.approx(0.7553, abs=0.002)


@pytest.mark.parametrize("which", ["int8", "numpy_fp32"])
def test_paraphrases_score_far_above_unrelated_pairs(request, which):
    embedder = request.getfixturevalue(which)
    paraphrase = pair_cosines(embedder, PARAPHRASES)
    unrelated = pair_cosines(embedder, UNRELATED)
    assert paraphrase.mean() > 0.7
    assert unrelated.mean() < 0.15
    assert paraphrase.min() > unrelated.max() + 0.15


@pytest.mark.parametrize("which", ["int8", "numpy_fp32"])
def test_questions_find_the_passage_that_answers_them(request, which):
    embedder = request.getfixturevalue(which)
    scores = embedder.embed_queries([q for q, _ in QUESTIONS]) @ (
        embedder.embed_passages(PASSAGES).T
    )
    assert list(scores.argmax(1)) == [answer for _, answer in QUESTIONS]


def test_onnx_graph_computes_what_numpy_computes(onnx_fp32, numpy_fp32):
    texts = [*PASSAGES, LONG_TEXT, "short"]
    cosines = (onnx_fp32.embed_passages(texts) * numpy_fp32.embed_passages(texts)).sum(
        1
    )
    assert cosines.min() > 0.9999


def test_int8_agrees_with_fp32(int8, onnx_fp32):
    # onnx fp32 is numpy fp32 (the test above) and several times faster. The
    # tolerance: mean cosine >= 0.99, min >= 0.98. Graph version 2 gives mean
    # 0.994, min 0.991 on these 33 texts (min 0.986 over 400 chunk windows of
    # <=256 tokens in bench/embeddings.py).
    texts = [*PASSAGES, *(t for pair in PARAPHRASES for t in pair)]
    texts += int8.windows(LONG_TEXT * 3)
    cosines = (int8.embed_passages(texts) * onnx_fp32.embed_passages(texts)).sum(1)
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.98


def test_a_text_gets_the_same_vector_alone_or_in_a_batch(int8, numpy_fp32):
    texts = ["short text", LONG_TEXT, "another short one"]
    for embedder in (numpy_fp32, int8):  # fp32 pads a batch; int8 runs one by one
        alone = embedder.embed_passages(texts[:1])[0]
        batched = embedder.embed_passages(texts)[0]
        np.testing.assert_allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize("size", [128, 256])
def test_windows_cover_a_long_text_in_even_pieces_that_fit(model_cache, size):
    embedder = builtin_embedder(model_cache, window_tokens=size)
    assert embedder.window_tokens == size
    text = LONG_TEXT * 3
    assert embedder.token_count(text) > 3 * size
    pieces = embedder.windows(text)
    counts = [embedder.token_count(p) for p in pieces]
    assert all(c <= size for c in counts)
    assert len(pieces) == -(-(embedder.token_count(text) - 2) // (size - 2))
    assert max(counts) - min(counts) <= 16
    # In order, cut between words, nothing lost but the spaces between pieces.
    assert " ".join(pieces).split() == text.split()
    assert all(p == p.strip() and p in text for p in pieces)


def test_the_built_in_model_cuts_128_token_windows_of_its_256_token_input(int8):
    assert (int8.window_tokens, int8.max_tokens) == (128, 256)
    assert len(int8.windows(PASSAGES[0] + " " + PASSAGES[1])) == 1  # ~90 tokens
    assert len(int8.windows(LONG_TEXT)) == 3  # ~370 tokens


def test_windows_of_short_and_empty_texts(int8):
    assert int8.windows("A short passage.") == ["A short passage."]
    assert int8.windows("") == []
    assert int8.windows("   \n ") == []


def test_embed_windows_says_which_passage_each_vector_is_from(int8):
    result = int8.embed_windows(["one short passage", LONG_TEXT, "", "another"])
    assert list(result.owners) == [0, 1, 1, 1, 3]
    assert result.vectors.shape == (5, 384)
    assert result.windows[1:4] == tuple(int8.windows(LONG_TEXT))
    np.testing.assert_allclose(
        result.vectors[1:4], int8.embed_passages(int8.windows(LONG_TEXT)), atol=1e-6
    )


def test_a_long_text_is_cut_at_the_window_not_refused(model_cache):
    embedder = builtin_embedder(model_cache, window_tokens=256)
    vector = embedder.embed_passages([LONG_TEXT * 10])
    head = embedder.embed_passages([embedder.windows(LONG_TEXT * 10)[0]])
    assert vector.shape == (1, 384)
    assert float(vector[0] @ head[0]) > 0.8  # it sees the first 256 tokens


def test_a_tampered_weights_file_is_refused(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="model.safetensors.*refusing"):
        LocalFolderEmbedder(copy, checksums=builtin.CHECKSUMS, runtime="numpy")


def test_the_built_in_model_refuses_a_tampered_unpacked_file(tmp_path):
    cache = tmp_path / "cache"
    folder = builtin.builtin_model_dir(cache)
    tokenizer = folder / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text().replace('"[UNK]"', '"[UNKNOWN]"', 1))
    with pytest.raises(ModelIntegrityError, match="tokenizer.json"):
        builtin_embedder(cache)


def test_a_damaged_cached_graph_is_built_again(model_dir, model_cache, tmp_path):
    graph = prepare_onnx_graph(model_dir, precision="fp32", cache_dir=model_cache)
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in (graph, graph.with_name(graph.name + ".sha256")):
        shutil.copy(path, cache / path.name)
    copied = cache / graph.name
    with copied.open("r+b") as f:
        f.seek(1000)
        f.write(b"\0" * 16)
    rebuilt = prepare_onnx_graph(model_dir, precision="fp32", cache_dir=cache)
    assert rebuilt == copied
    assert rebuilt.read_bytes() == graph.read_bytes()


def test_a_missing_package_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelFormatError, match="requirements-model.txt"):
        builtin_embedder(tmp_path)


def test_sessions_run_the_fast_operators_of_the_int8_graph(model_dir, model_cache):
    # Add + LayerNormalization and Add + Gelu run ~40% faster than the fused
    # SkipLayerNormalization and BiasGelu (embeddings/bert.py): the session must
    # not fuse them back, and the MatMuls must run as int8 (U8S8).
    import onnx
    import onnxruntime as ort

    graph = prepare_onnx_graph(model_dir, cache_dir=model_cache)
    options, disabled = session_options()
    optimized = model_cache / "optimized-for-test.onnx"
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(
        str(graph),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=disabled,
    )
    ops = Counter(node.op_type for node in onnx.load(str(optimized)).graph.node)
    optimized.unlink()
    assert ops["LayerNormalization"] == ops["Add"] == 12
    assert ops["Gelu"] == ops["QAttention"] == 6
    assert ops["DynamicQuantizeMatMul"] == 18
    assert not ops.keys() & {"SkipLayerNormalization", "BiasGelu", "MatMul"}


def test_a_cached_graph_of_an_older_version_is_not_reused(
    model_dir, model_cache, tmp_path
):
    # The graph's version is in the file name: a graph cached by an older version
    # of this package (built differently) is left alone and a new one is built.
    graph = prepare_onnx_graph(model_dir, cache_dir=model_cache)
    current = f"-g{bert.GRAPH_VERSION}-"
    assert current in graph.name
    old = graph.name.replace(current, f"-g{bert.GRAPH_VERSION - 1}-")
    for path in (graph, graph.with_name(graph.name + ".sha256")):
        shutil.copy(path, tmp_path / path.name.replace(graph.name, old))
    rebuilt = prepare_onnx_graph(model_dir, cache_dir=tmp_path)
    assert rebuilt == tmp_path / graph.name
    assert rebuilt.read_bytes() == graph.read_bytes()
