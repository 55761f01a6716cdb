"""LocalFolderEmbedder on folders made from the built-in model's files."""

import json
import shutil

import numpy as np
import pytest

from embeddings import LocalFolderEmbedder, ModelFormatError, prepare_onnx_graph
from embeddings.bert import BertConfig, BertWeights, NumpyBert
from tests.embeddings.texts import LONG_TEXT, PASSAGES


def folder_like(model_dir, target, *, skip=(), **replace):
    """A model folder of links to the built-in's files, with some files replaced."""
    target.mkdir()
    for path in model_dir.rglob("*"):
        relative = path.relative_to(model_dir).as_posix()
        if path.is_dir() or relative in skip or relative in replace:
            continue
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).symlink_to(path)
    for relative, content in replace.items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text(json.dumps(content))
    return target


def test_the_built_in_folder_is_an_ordinary_local_folder(model_dir, model_cache, int8):
    local = LocalFolderEmbedder(model_dir, cache_dir=model_cache)
    assert local.name == f"{model_dir.name}/onnx-int8@{int8.weights_sha256[:12]}"
    np.testing.assert_allclose(
        local.embed_passages(PASSAGES), int8.embed_passages(PASSAGES), atol=1e-6
    )


def test_prompts_become_query_and_passage_prefixes(model_dir, tmp_path, numpy_fp32):
    folder = folder_like(
        model_dir,
        tmp_path / "e5-like",
        **{
            "config_sentence_transformers.json": {
                "prompts": {"query": "query: ", "passage": "passage: "},
                "default_prompt_name": None,
            }
        },
    )
    e5 = LocalFolderEmbedder(folder, runtime="numpy")
    assert (e5.query_prefix, e5.passage_prefix) == ("query: ", "passage: ")
    np.testing.assert_allclose(
        e5.embed_queries(["where is the office"]),
        numpy_fp32.embed_passages(["query: where is the office"]),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        e5.embed_passages(["the office is upstairs"]),
        numpy_fp32.embed_passages(["passage: the office is upstairs"]),
        atol=1e-5,
    )
    # The prefix takes room in the window: windows leave it that room.
    assert all(e5.token_count(w) <= 256 for w in e5.windows(LONG_TEXT * 2))
    assert e5.token_count(e5.windows(LONG_TEXT * 2)[0]) > 200


def test_pooling_comes_from_the_pooling_config(model_dir, tmp_path):
    folder = folder_like(
        model_dir,
        tmp_path / "cls",
        **{"1_Pooling/config.json": {"pooling_mode_cls_token": True}},
    )
    cls = LocalFolderEmbedder(folder, runtime="numpy")
    assert cls.pooling == "cls"
    tokens = cls._tokenizer.encode("pooling by the first token")
    ids = np.array([tokens.ids])
    weights = BertWeights.load(
        BertConfig.from_file(model_dir / "config.json"), model_dir / "model.safetensors"
    )
    first = NumpyBert(weights)(ids, np.ones_like(ids))[0, 0]
    np.testing.assert_allclose(
        cls.embed_passages(["pooling by the first token"])[0],
        first / np.linalg.norm(first),
        atol=1e-5,
    )


def test_a_folder_with_only_an_onnx_model_runs_it(
    model_dir, model_cache, tmp_path, numpy_fp32
):
    graph = prepare_onnx_graph(model_dir, precision="fp32", cache_dir=model_cache)
    folder = folder_like(model_dir, tmp_path / "onnx-only", skip={"model.safetensors"})
    (folder / "onnx").mkdir()
    shutil.copy(graph, folder / "onnx" / "model.onnx")
    embedder = LocalFolderEmbedder(folder)
    assert embedder.precision == "as-shipped"
    assert embedder.dimensions == 384
    assert embedder.name.startswith("onnx-only/onnx@")
    cosines = (
        embedder.embed_passages(PASSAGES) * numpy_fp32.embed_passages(PASSAGES)
    ).sum(1)
    assert cosines.min() > 0.9999
    with pytest.raises(ModelFormatError, match="numpy runtime needs"):
        LocalFolderEmbedder(folder, runtime="numpy")


def test_a_folder_that_is_not_a_model_is_refused(model_dir, tmp_path):
    with pytest.raises(ModelFormatError, match="does not exist"):
        LocalFolderEmbedder(tmp_path / "nowhere")
    no_weights = folder_like(model_dir, tmp_path / "a", skip={"model.safetensors"})
    with pytest.raises(ModelFormatError, match="neither model.safetensors"):
        LocalFolderEmbedder(no_weights)
    no_tokenizer = folder_like(model_dir, tmp_path / "b", skip={"tokenizer.json"})
    with pytest.raises(ModelFormatError, match="no tokenizer.json"):
        LocalFolderEmbedder(no_tokenizer)
    config = json.loads((model_dir / "config.json").read_text())
    t5 = folder_like(
        model_dir, tmp_path / "c", **{"config.json": {**config, "model_type": "t5"}}
    )
    with pytest.raises(ModelFormatError, match="not of the BERT family"):
        LocalFolderEmbedder(t5, runtime="numpy")
