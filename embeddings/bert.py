"""BERT-family encoders without torch: the weights, a numpy forward pass, an ONNX graph.

Everything here works on a sentence-transformers folder's `config.json` and
`model.safetensors`. The same weights feed two runtimes:

- `NumpyBert`: the forward pass in float32 numpy. It is the reference the ONNX graph
  is checked against, and the fallback where onnxruntime cannot run.
- `build_onnx_graph`: the same network as an ONNX graph, written with the operators
  that run fastest on onnxruntime's CPU provider, which `quantize_dynamic` turns
  into int8 (`QAttention`, `DynamicQuantizeMatMul`). Writing them directly, rather
  than the primitive ops a PyTorch export makes, skips the fusion pass that would
  have to recognise them. They are not all the "fused" ones: by measurement
  (bench/embeddings.py; int8, one core, 128-token windows), onnxruntime's
  `SkipLayerNormalization` kernel is a scalar loop that took ~30% of a run, and
  `Add` + the standard `LayerNormalization` do the same in a fifth of the time
  (13,100 -> 17,400 tokens per CPU-second); `Add` + `Gelu` beat `BiasGelu` by
  another ~7% (18,700). The session must then not fuse them back
  (`SLOW_FUSIONS`); `onnxruntime.transformers.optimizer` would too (it turns this
  graph into the old one).

Both return the last hidden state (batch, sequence, hidden); pooling is the caller's.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.base import ModelFormatError

# Bump when the graph below changes: cached graphs carry it in their file name.
# 2: Add + LayerNormalization and Add + Gelu instead of SkipLayerNormalization and
# BiasGelu (version 1).
GRAPH_VERSION = 2

_SAFETENSORS_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
}
# Prefixes that some exports put before the BertModel's own parameter names.
_NAME_PREFIXES = ("bert.", "model.", "0.auto_model.", "auto_model.")


@dataclass(frozen=True)
class BertConfig:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    vocab_size: int
    max_positions: int

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"Cannot read {path}: {exc}") from exc
        model_type = data.get("model_type", "bert")
        if model_type not in ("bert", "roberta", "xlm-roberta"):
            raise ModelFormatError(
                f"{path}: model_type {model_type!r} is not of the BERT family"
            )
        if model_type != "bert" or data.get("position_embedding_type", "absolute") != (
            "absolute"
        ):
            # RoBERTa offsets its position ids by the padding index; not handled.
            raise ModelFormatError(
                f"{path}: only BERT with absolute positions runs from safetensors "
                "here; export the model to ONNX (onnx/model.onnx) instead"
            )
        if data.get("hidden_act", "gelu") != "gelu":
            raise ModelFormatError(
                f"{path}: hidden_act {data.get('hidden_act')!r} is not supported"
            )
        return cls(
            hidden_size=int(data["hidden_size"]),
            num_layers=int(data["num_hidden_layers"]),
            num_heads=int(data["num_attention_heads"]),
            intermediate_size=int(data["intermediate_size"]),
            layer_norm_eps=float(data.get("layer_norm_eps", 1e-12)),
            vocab_size=int(data["vocab_size"]),
            max_positions=int(data.get("max_position_embeddings", 512)),
        )


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor in a .safetensors file, as float32 (or integer) arrays.

    The format is an 8-byte little-endian header length, a JSON header of
    name -> {dtype, shape, data_offsets}, then the raw bytes; reading it takes a
    dozen lines, so the `safetensors` package is not needed.
    """
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > 100 * 1024 * 1024:
            raise ModelFormatError(f"{path}: not a safetensors file")
        try:
            header = json.loads(f.read(header_len))
        except ValueError as exc:
            raise ModelFormatError(f"{path}: bad safetensors header") from exc
        data = f.read()
    tensors: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        start, end = info["data_offsets"]
        raw = data[start:end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            array = bits.view(np.float32)
        elif dtype in _SAFETENSORS_DTYPES:
            array = np.frombuffer(raw, dtype=np.dtype(_SAFETENSORS_DTYPES[dtype]))
            array = array.newbyteorder("<") if array.dtype.byteorder == ">" else array
        else:
            raise ModelFormatError(f"{path}: tensor {name} has dtype {dtype}")
        array = array.reshape(info["shape"])
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        tensors[name] = array
    return tensors


@dataclass(frozen=True)
class Layer:
    qkv_weight: np.ndarray  # (hidden, 3 * hidden): x @ w gives q, k, v side by side
    qkv_bias: np.ndarray
    attn_out_weight: np.ndarray  # (hidden, hidden), already transposed for x @ w
    attn_out_bias: np.ndarray
    attn_ln_gamma: np.ndarray
    attn_ln_beta: np.ndarray
    ffn_in_weight: np.ndarray  # (hidden, intermediate)
    ffn_in_bias: np.ndarray
    ffn_out_weight: np.ndarray  # (intermediate, hidden)
    ffn_out_bias: np.ndarray
    ffn_ln_gamma: np.ndarray
    ffn_ln_beta: np.ndarray


@dataclass(frozen=True)
class BertWeights:
    config: BertConfig
    word_embeddings: np.ndarray
    position_embeddings: np.ndarray  # token type 0's embedding folded in
    embed_ln_gamma: np.ndarray
    embed_ln_beta: np.ndarray
    layers: tuple[Layer, ...]

    @classmethod
    def load(cls, config: BertConfig, safetensors_path: Path) -> BertWeights:
        raw = read_safetensors(safetensors_path)
        tensors = {_strip_prefix(name): value for name, value in raw.items()}

        def get(name: str) -> np.ndarray:
            try:
                return tensors[name]
            except KeyError:
                raise ModelFormatError(
                    f"{safetensors_path}: no tensor {name!r}; is this a BERT model?"
                ) from None

        def linear(prefix: str) -> tuple[np.ndarray, np.ndarray]:
            # torch.nn.Linear stores (out, in) and computes x @ W.T + b.
            weight = get(f"{prefix}.weight")
            return np.ascontiguousarray(weight.T), get(f"{prefix}.bias")

        layers = []
        for i in range(config.num_layers):
            p = f"encoder.layer.{i}"
            q_w, q_b = linear(f"{p}.attention.self.query")
            k_w, k_b = linear(f"{p}.attention.self.key")
            v_w, v_b = linear(f"{p}.attention.self.value")
            o_w, o_b = linear(f"{p}.attention.output.dense")
            i_w, i_b = linear(f"{p}.intermediate.dense")
            f_w, f_b = linear(f"{p}.output.dense")
            layers.append(
                Layer(
                    qkv_weight=np.ascontiguousarray(np.concatenate([q_w, k_w, v_w], 1)),
                    qkv_bias=np.concatenate([q_b, k_b, v_b]),
                    attn_out_weight=o_w,
                    attn_out_bias=o_b,
                    attn_ln_gamma=get(f"{p}.attention.output.LayerNorm.weight"),
                    attn_ln_beta=get(f"{p}.attention.output.LayerNorm.bias"),
                    ffn_in_weight=i_w,
                    ffn_in_bias=i_b,
                    ffn_out_weight=f_w,
                    ffn_out_bias=f_b,
                    ffn_ln_gamma=get(f"{p}.output.LayerNorm.weight"),
                    ffn_ln_beta=get(f"{p}.output.LayerNorm.bias"),
                )
            )
        word = get("embeddings.word_embeddings.weight")
        if word.shape != (config.vocab_size, config.hidden_size):
            raise ModelFormatError(
                f"{safetensors_path}: word embeddings are {word.shape}, config says "
                f"({config.vocab_size}, {config.hidden_size})"
            )
        positions = get("embeddings.position_embeddings.weight")
        token_types = tensors.get("embeddings.token_type_embeddings.weight")
        if token_types is not None:
            # Every input here is one segment (type 0): fold its embedding into the
            # position table, so the graph needs no token_type_ids input.
            positions = positions + token_types[0]
        return cls(
            config=config,
            word_embeddings=word,
            position_embeddings=np.ascontiguousarray(positions, dtype=np.float32),
            embed_ln_gamma=get("embeddings.LayerNorm.weight"),
            embed_ln_beta=get("embeddings.LayerNorm.bias"),
            layers=tuple(layers),
        )


def _strip_prefix(name: str) -> str:
    for prefix in _NAME_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


# --- numpy ------------------------------------------------------------------------


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float):
    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, -1, keepdims=True)
    return centered / np.sqrt(var + eps) * gamma + beta


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to within 1.5e-7 (Abramowitz and Stegun 7.1.26): BERT's GELU is the
    exact erf form, numpy has no erf, and scipy is not worth depending on."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592
        + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(1 / math.sqrt(2))))


class NumpyBert:
    """The forward pass in float32 numpy (BLAS does the matrix products)."""

    def __init__(self, weights: BertWeights) -> None:
        self.weights = weights

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        w = self.weights
        cfg = w.config
        batch, seq = input_ids.shape
        heads = cfg.num_heads
        head_dim = cfg.hidden_size // heads
        x = w.word_embeddings[input_ids] + w.position_embeddings[:seq]
        # Tokens as rows of one 2-D matrix: one BLAS call per product. A 3-D
        # operand makes numpy call BLAS once per sequence, which is several
        # times slower for short sequences (worse still on a busy machine).
        x = x.reshape(batch * seq, cfg.hidden_size)
        x = _layer_norm(x, w.embed_ln_gamma, w.embed_ln_beta, cfg.layer_norm_eps)
        # Padding keys get -10000 added before the softmax, as in BERT.
        mask_bias = ((1.0 - attention_mask.astype(np.float32)) * -10000.0)[
            :, None, None, :
        ]
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for layer in w.layers:
            qkv = x @ layer.qkv_weight + layer.qkv_bias  # (B*S, 3H)
            qkv = qkv.reshape(batch, seq, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (B, heads, S, head_dim)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + mask_bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq, -1)
            attn = context @ layer.attn_out_weight + layer.attn_out_bias
            x = _layer_norm(
                attn + x, layer.attn_ln_gamma, layer.attn_ln_beta, cfg.layer_norm_eps
            )
            hidden = _gelu(x @ layer.ffn_in_weight + layer.ffn_in_bias)
            out = hidden @ layer.ffn_out_weight + layer.ffn_out_bias
            x = _layer_norm(
                out + x, layer.ffn_ln_gamma, layer.ffn_ln_beta, cfg.layer_norm_eps
            )
        x = x.reshape(batch, seq, cfg.hidden_size)
        return x.astype(np.float32, copy=False)


# --- ONNX -------------------------------------------------------------------------

GRAPH_INPUTS = ("input_ids", "attention_mask")  # both int32, (batch, sequence)
GRAPH_OUTPUT = "last_hidden_state"  # float32, (batch, sequence, hidden)
# onnxruntime graph transformers that would turn the graph back into the slower
# operators (see the module docstring): sessions disable them.
SLOW_FUSIONS = ("SkipLayerNormFusion", "BiasGeluFusion")


def build_onnx_graph(weights: BertWeights) -> Any:
    """The encoder as an onnx.ModelProto (onnxruntime's `EmbedLayerNormalization`,
    `Attention` and `Gelu`, standard `MatMul`, `Add`, `LayerNormalization`).

    Padding must be on the right: `EmbedLayerNormalization` turns the mask into each
    row's length, which is what `Attention` masks by.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cfg = weights.config
    initializers: list[Any] = []
    nodes: list[Any] = []
    ms = "com.microsoft"

    def const(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def add_norm(name, x, bias, residual, gamma, beta, out):
        """LayerNorm(x + bias + residual): the bias Add folds into the quantized
        MatMul before it (DynamicQuantizeMatMul takes a bias)."""
        nodes.append(
            helper.make_node("Add", [x, bias], [f"{name}.biased"], name=f"{name}.bias")
        )
        nodes.append(
            helper.make_node(
                "Add",
                [f"{name}.biased", residual],
                [f"{name}.sum"],
                name=f"{name}.skip",
            )
        )
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [f"{name}.sum", gamma, beta],
                [out],
                name=name,
                axis=-1,
                epsilon=cfg.layer_norm_eps,
            )
        )

    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "input_ids",
                "",  # segment_ids: one segment, folded into the positions
                const("word_embeddings", weights.word_embeddings),
                const("position_embeddings", weights.position_embeddings),
                "",
                const("embed_ln_gamma", weights.embed_ln_gamma),
                const("embed_ln_beta", weights.embed_ln_beta),
                "attention_mask",
            ],
            ["hidden_0", "mask_index"],
            name="embeddings",
            domain=ms,
            epsilon=cfg.layer_norm_eps,
        )
    )
    hidden = "hidden_0"
    for i, layer in enumerate(weights.layers):
        p = f"layer{i}"
        nodes.append(
            helper.make_node(
                "Attention",
                [
                    hidden,
                    const(f"{p}.qkv_weight", layer.qkv_weight),
                    const(f"{p}.qkv_bias", layer.qkv_bias),
                    "mask_index",
                ],
                [f"{p}.context"],
                name=f"{p}.attention",
                domain=ms,
                num_heads=cfg.num_heads,
            )
        )
        nodes.append(
            helper.make_node(
                "MatMul",
                [f"{p}.context", const(f"{p}.attn_out_weight", layer.attn_out_weight)],
                [f"{p}.attn_out"],
                name=f"{p}.attn_out",
            )
        )
        add_norm(
            f"{p}.attn_norm",
            f"{p}.attn_out",
            const(f"{p}.attn_out_bias", layer.attn_out_bias),
            hidden,
            const(f"{p}.attn_ln_gamma", layer.attn_ln_gamma),
            const(f"{p}.attn_ln_beta", layer.attn_ln_beta),
            f"{p}.attn_norm",
        )
        nodes.append(
            helper.make_node(
                "MatMul",
                [f"{p}.attn_norm", const(f"{p}.ffn_in_weight", layer.ffn_in_weight)],
                [f"{p}.ffn_in"],
                name=f"{p}.ffn_in",
            )
        )
        nodes.append(
            helper.make_node(
                "Add",
                [f"{p}.ffn_in", const(f"{p}.ffn_in_bias", layer.ffn_in_bias)],
                [f"{p}.ffn_biased"],
                name=f"{p}.ffn_in_bias",
            )
        )
        nodes.append(  # the exact (erf) GELU, as BERT's
            helper.make_node(
                "Gelu",
                [f"{p}.ffn_biased"],
                [f"{p}.ffn_act"],
                name=f"{p}.gelu",
                domain=ms,
            )
        )
        nodes.append(
            helper.make_node(
                "MatMul",
                [f"{p}.ffn_act", const(f"{p}.ffn_out_weight", layer.ffn_out_weight)],
                [f"{p}.ffn_out"],
                name=f"{p}.ffn_out",
            )
        )
        out = GRAPH_OUTPUT if i == cfg.num_layers - 1 else f"hidden_{i + 1}"
        add_norm(
            f"{p}.ffn_norm",
            f"{p}.ffn_out",
            const(f"{p}.ffn_out_bias", layer.ffn_out_bias),
            f"{p}.attn_norm",
            const(f"{p}.ffn_ln_gamma", layer.ffn_ln_gamma),
            const(f"{p}.ffn_ln_beta", layer.ffn_ln_beta),
            out,
        )
        hidden = out

    graph = helper.make_graph(
        nodes,
        "bert_encoder",
        [
            helper.make_tensor_value_info(name, TensorProto.INT32, ["batch", "seq"])
            for name in GRAPH_INPUTS
        ],
        [
            helper.make_tensor_value_info(
                GRAPH_OUTPUT, TensorProto.FLOAT, ["batch", "seq", cfg.hidden_size]
            )
        ],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)],
        producer_name="flamehaven-embeddings",
        producer_version=str(GRAPH_VERSION),
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
