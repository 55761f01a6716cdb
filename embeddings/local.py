"""Embedders that run a sentence-transformers model folder on this machine's CPU.

A folder of the BERT family (all-MiniLM-L6-v2, bge-small, e5-small, ...) holds
`config.json`, `tokenizer.json`, `model.safetensors` (or an ONNX export in
`onnx/model.onnx` or `model.onnx`), and sentence-transformers' own files:
`1_Pooling/config.json` (how token vectors become one vector),
`sentence_bert_config.json` (the window, `max_seq_length`) and
`config_sentence_transformers.json` (`prompts`: query and passage prefixes).

From safetensors, the network runs either as an ONNX graph built from the weights
(`bert.build_onnx_graph`, int8 by default, cached on disk, see `prepare_onnx_graph`)
or as a numpy forward pass. An ONNX export found in the folder is run as it is.

Speed: int8 (weights int8, activations uint8: the U8S8 kernels onnxruntime runs
with VNNI/AMX) is ~3x fp32 here. Each text runs alone on one core, two at a time
on a 2-core machine; why each of those choices, with the figures that made it, is
next to `_QUANTIZATION`, `session_options` and in `bert.py`'s docstring.
`bench/embeddings.py` prints tokens/s, windows/s, chunks/s, load time and memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embeddings import bert
from embeddings.base import (
    Embedder,
    EmbeddingError,
    ModelFormatError,
    ModelIntegrityError,
    l2_normalize,
)

Runtime = Literal["onnx", "numpy"]
Precision = Literal["int8", "fp32"]

# Padded tokens per forward pass: one full window, or a few dozen short queries.
# Larger batches were slower here (fp32, 64 windows of 256: 5,900 tok/s one at a
# time, 1,500-3,400 in batches of 32; their attention scores outgrow the cache).
DEFAULT_BATCH_TOKENS = 512
MAX_BATCH = 64
_ONNX_FILES = ("onnx/model.onnx", "model.onnx")
_PASSAGE_PROMPTS = ("passage", "document", "corpus")
# int8 options, chosen by measurement (int8, one core, 192 windows of 128 tokens,
# tokens per CPU-second / min cosine to fp32; bench/embeddings.py and the report
# of the change that set them):
# - weight_type QInt8 (activations are uint8): onnxruntime's U8S8 kernels use
#   VNNI/AMX here; QUInt8 weights (U8U8) run 2.9x slower (5,900 vs 17,200).
# - per_channel: one weight scale per output column keeps min cosine 0.988; one
#   per tensor is as fast but falls to 0.87.
# - reduce_range off: 7-bit weights only help CPUs without VNNI; same speed
#   here, min cosine 0.984.
# - "Attention" quantized too (QAttention): the fp32 Attention with the other
#   MatMuls quantized is 35% slower (11,200).
_QUANTIZATION = {"per_channel": True, "reduce_range": False, "weight_type": "QInt8"}
_QUANTIZED_OPS = ["MatMul", "Attention"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flamehaven" / "embeddings"


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class LocalFolderEmbedder(Embedder):
    """A sentence-transformers folder of the BERT family, run in this process.

    `checksums` maps file names inside the folder to their expected sha256; a file
    that does not match is refused (`ModelIntegrityError`) before anything reads it.
    The weights are hashed on every load in any case: their hash is part of `name`.

    `runtime="onnx"` (the default) runs an ONNX graph built from the safetensors
    weights, quantized to int8 unless `precision="fp32"`, and kept in `cache_dir`
    (built once, in 2-5 s; later loads read it in ~0.3-0.5 s). `runtime="numpy"`
    runs the float32 forward pass in numpy. Both are safe to call from several threads.

    With onnxruntime, `threads` (default: the cores this process may use) texts
    or batches run at once, each on one core. int8 runs one text at a time
    (`max_batch=1`), so a text's vector never depends on what it was sent with;
    fp32 pads texts of similar length into batches of up to `batch_tokens`.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        runtime: Runtime = "onnx",
        precision: Precision = "int8",
        cache_dir: str | os.PathLike[str] | None = None,
        checksums: Mapping[str, str] | None = None,
        label: str | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        max_tokens: int | None = None,
        window_tokens: int | None = None,
        threads: int | None = None,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        max_batch: int | None = None,
    ) -> None:
        started = time.perf_counter()
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ModelFormatError(f"Model folder {self.folder} does not exist")
        if runtime not in ("onnx", "numpy"):
            raise ValueError(f"runtime must be 'onnx' or 'numpy', not {runtime!r}")
        if precision not in ("int8", "fp32"):
            raise ValueError(f"precision must be 'int8' or 'fp32', not {precision!r}")
        for relative, expected in (checksums or {}).items():
            _check_sha256(self.folder / relative, expected)

        self.label = label or self.folder.name
        self.batch_tokens = max(batch_tokens, 1)
        self._load_tokenizers()
        self._load_sentence_config(
            query_prefix, passage_prefix, max_tokens, window_tokens
        )
        self.pooling = _read_pooling(self.folder)

        weights_path = self.folder / "model.safetensors"
        onnx_path = next(
            (self.folder / f for f in _ONNX_FILES if (self.folder / f).is_file()), None
        )
        if weights_path.is_file():
            self.weights_sha256 = file_sha256(weights_path)
            config = bert.BertConfig.from_file(self.folder / "config.json")
            self.dimensions = config.hidden_size
            if runtime == "numpy":
                self.runtime, self.precision = "numpy", "fp32"
                self._encoder: Any = _NumpyEncoder(
                    bert.BertWeights.load(config, weights_path)
                )
            else:
                self.runtime, self.precision = "onnx", precision
                graph = prepare_onnx_graph(
                    self.folder,
                    precision=precision,
                    cache_dir=cache_dir,
                    weights_sha256=self.weights_sha256,
                )
                self._encoder = _OnnxEncoder(graph)
        elif onnx_path is not None:
            if runtime == "numpy":
                raise ModelFormatError(
                    f"{self.folder} has an ONNX model but no model.safetensors: "
                    "the numpy runtime needs the safetensors weights"
                )
            self.weights_sha256 = file_sha256(onnx_path)
            self.runtime, self.precision = "onnx", "as-shipped"
            self._encoder = _OnnxEncoder(onnx_path)
            self.dimensions = self._encoder.probe_dimensions(self._pad_id)
        else:
            raise ModelFormatError(
                f"{self.folder} has neither model.safetensors nor an ONNX model "
                f"({', '.join(_ONNX_FILES)})"
            )
        # int8 graphs quantize activations with one scale per run: texts run
        # together (and their padding) would change each other's vectors (cosine
        # ~0.99). One text per run keeps a text's vector its own, and costs
        # nothing measurable: batches of 4 windows of 128 tokens ran at 17,800
        # tokens per CPU-second, one at a time at 17,400.
        if max_batch is None:
            max_batch = 1 if self.precision == "int8" else MAX_BATCH
        self.max_batch = max(1, max_batch)
        # onnxruntime: each batch runs on one core, `threads` batches at a time:
        # on 2 cores, 1.9x one core (bench/embeddings.py), where one batch split
        # over both cores gained ~1.6x idle and lost on a busy machine (half the
        # speed, see `session_options`). numpy leaves threading to its BLAS.
        self.threads = 1 if self.runtime == "numpy" else max(1, threads or _cores())
        self._workers: ThreadPoolExecutor | None = None  # made at first need
        self._workers_lock = threading.Lock()
        variant = (
            "onnx"
            if self.precision == "as-shipped"
            else (f"{self.runtime}-{self.precision}")
        )
        self.name = f"{self.label}/{variant}@{self.weights_sha256[:12]}"
        self.load_seconds = time.perf_counter() - started

    # --- configuration ---------------------------------------------------------

    def _load_tokenizers(self) -> None:
        from tokenizers import Tokenizer

        path = self.folder / "tokenizer.json"
        if not path.is_file():
            raise ModelFormatError(f"{self.folder} has no tokenizer.json")
        # Two copies: one cuts inputs at the window, the other sees whole texts
        # (for `windows`). The file's own padding and truncation are dropped: its
        # 128-token truncation, for one, is not the model's window.
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._whole_tokenizer = Tokenizer.from_file(str(path))
        self._whole_tokenizer.no_padding()
        self._whole_tokenizer.no_truncation()
        self._special_tokens = len(self._whole_tokenizer.encode("").ids)
        pad = None
        padding = json.loads(path.read_text(encoding="utf-8")).get("padding") or {}
        if isinstance(padding, dict):
            pad = padding.get("pad_id")
        if pad is None:
            pad = self._tokenizer.token_to_id("[PAD]")
        self._pad_id = int(pad or 0)

    def _load_sentence_config(
        self,
        query_prefix: str | None,
        passage_prefix: str | None,
        max_tokens: int | None,
        window_tokens: int | None,
    ) -> None:
        st_config = _read_json(self.folder / "config_sentence_transformers.json")
        prompts = st_config.get("prompts") or {}
        self.query_prefix = (
            query_prefix if query_prefix is not None else prompts.get("query", "")
        )
        if passage_prefix is None:
            passage_prefix = next(
                (prompts[k] for k in _PASSAGE_PROMPTS if prompts.get(k)), ""
            )
        self.passage_prefix = passage_prefix
        bert_config = _read_json(self.folder / "sentence_bert_config.json")
        positions = _read_json(self.folder / "config.json").get(
            "max_position_embeddings"
        )
        self.max_tokens = int(
            max_tokens or bert_config.get("max_seq_length") or _tokenizer_limit(self)
        )
        if isinstance(positions, int) and positions > 0:
            self.max_tokens = min(self.max_tokens, positions)
        self.window_tokens = min(int(window_tokens or self.max_tokens), self.max_tokens)
        self._tokenizer.enable_truncation(max_length=self.max_tokens)
        self._passage_budget = (
            self.window_tokens
            - self._special_tokens
            - self._prefix_tokens(self.passage_prefix)
        )
        if self._passage_budget < 8:
            raise ModelFormatError(
                f"{self.folder}: a {self.window_tokens}-token window leaves no room "
                "for text after the prefix"
            )

    def _prefix_tokens(self, prefix: str) -> int:
        if not prefix:
            return 0
        return len(self._whole_tokenizer.encode(prefix, add_special_tokens=False).ids)

    # --- Embedder --------------------------------------------------------------

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.query_prefix + t for t in texts])

    def windows(self, text: str) -> list[str]:
        """Pieces of at most `window_tokens` tokens (prefix, [CLS] and [SEP]
        counted; `window_tokens` is `max_tokens` unless set lower).

        A text of n tokens over the budget b becomes ceil(n / b) pieces of about
        n / ceil(n / b) tokens each (so 300 tokens make two of ~150, not 254 + 46),
        each cut at the start of a word.
        """
        encoding = self._whole_tokenizer.encode(text, add_special_tokens=False)
        offsets = encoding.offsets
        count = len(offsets)
        if count == 0:
            return []
        budget = self._passage_budget
        if count <= budget:
            return [text]
        target = math.ceil(count / math.ceil(count / budget))
        pieces: list[str] = []
        start = 0
        while start < count:
            if count - start <= budget:
                end = count
            else:
                end = start + target
                # Back up to a space between tokens (the tokenizer's own words
                # split "command-line" in three), but never below half a window.
                floor = start + max(target // 2, 1)
                cut = end
                while cut > floor and offsets[cut - 1][1] >= offsets[cut][0]:
                    cut -= 1
                end = cut if cut > floor else end
            pieces.append(text[offsets[start][0] : offsets[end - 1][1]])
            start = end
        return pieces

    def token_count(self, text: str) -> int:
        """Tokens of `text` as a passage, prefix and special tokens included."""
        return (
            len(self._whole_tokenizer.encode(text, add_special_tokens=False).ids)
            + self._special_tokens
            + self._prefix_tokens(self.passage_prefix)
        )

    # --- inference -------------------------------------------------------------

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        # Longest first, so each batch pads to about its own length.
        order = np.argsort(-lengths, kind="stable")
        batches = []
        position = 0
        while position < len(order):
            longest = int(lengths[order[position]])
            size = max(1, min(self.max_batch, self.batch_tokens // max(longest, 1)))
            batches.append(order[position : position + size])
            position += size

        def run(batch: np.ndarray) -> None:
            longest = int(lengths[batch[0]])
            ids = np.full((len(batch), longest), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.int64)
            for row, index in enumerate(batch):
                tokens = encodings[index].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            out[batch] = self._pool(self._encoder(ids, mask), mask)

        if self.threads == 1 or len(batches) == 1:
            for batch in batches:
                run(batch)
        else:
            for _ in self._pool_of_workers().map(run, batches):
                pass
        return l2_normalize(out)

    def _pool_of_workers(self) -> ThreadPoolExecutor:
        with self._workers_lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(
                    self.threads, thread_name_prefix="embed"
                )
            return self._workers

    def _pool(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if hidden.ndim == 2:  # the ONNX export pools by itself
            return hidden
        weights = mask[..., None].astype(np.float32)
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "max":
            return np.where(weights > 0, hidden, -np.inf).max(1)
        summed = (hidden * weights).sum(1)
        counts = np.maximum(weights.sum(1), 1.0)
        if self.pooling == "mean_sqrt_len":
            return summed / np.sqrt(counts)
        return summed / counts


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _tokenizer_limit(embedder: LocalFolderEmbedder) -> int:
    config = _read_json(embedder.folder / "tokenizer_config.json")
    limit = config.get("model_max_length")
    if isinstance(limit, int) and 0 < limit <= 8192:
        return limit
    return 512


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"Cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _read_pooling(folder: Path) -> str:
    config = _read_json(folder / "1_Pooling" / "config.json")
    if not config:
        return "mean"
    for key, mode in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_mean_tokens", "mean"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ):
        if config.get(key):
            return mode
    raise ModelFormatError(
        f"{folder / '1_Pooling' / 'config.json'}: no pooling mode this package knows"
    )


def _check_sha256(path: Path, expected: str) -> None:
    if not path.is_file():
        raise ModelIntegrityError(f"Model file {path} is missing")
    actual = file_sha256(path)
    if actual != expected.lower():
        raise ModelIntegrityError(
            f"Model file {path} has sha256 {actual}, expected {expected}: it was "
            "changed or damaged; refusing to load it"
        )


# --- runtimes ---------------------------------------------------------------------


class _NumpyEncoder:
    def __init__(self, weights: bert.BertWeights) -> None:
        self._model = bert.NumpyBert(weights)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self._model(ids, mask)


def session_options() -> tuple[Any, list[str]]:
    """onnxruntime's session options and the graph transformers to disable.

    One thread per run: LocalFolderEmbedder runs batches side by side, which on
    this 2-core machine, shared with other work, beat one run on two threads by
    2x (int8, 128-token windows: 12,700 vs 6,100 tok/s; the second thread spins
    while it waits for a core). ORT_ENABLE_ALL, EXTENDED and BASIC were within
    noise of each other (18,400 / 17,200 / 17,400 tokens per CPU-second).
    `bert.SLOW_FUSIONS` stay off for a folder's own ONNX export too: fused, its
    layer norms would run the slow kernel as well.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options, list(bert.SLOW_FUSIONS)


class _OnnxEncoder:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options, disabled = session_options()
        try:
            self._session = ort.InferenceSession(
                str(path),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=disabled,
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph
            raise ModelFormatError(f"onnxruntime cannot load {path}: {exc}") from exc
        self._inputs = {i.name: i.type for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        if "input_ids" not in self._inputs:
            raise ModelFormatError(f"{path} has no input_ids input")

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds: dict[str, np.ndarray] = {}
        for name, kind in self._inputs.items():
            if name == "input_ids":
                value = ids
            elif name == "attention_mask":
                value = mask
            elif name == "token_type_ids":
                value = np.zeros_like(ids)
            else:
                raise ModelFormatError(f"ONNX model input {name!r} is not one we know")
            feeds[name] = value.astype(
                np.int32 if kind == "tensor(int32)" else np.int64, copy=False
            )
        return self._session.run([self._output], feeds)[0]

    def probe_dimensions(self, pad_id: int) -> int:
        ids = np.array([[pad_id, pad_id]], dtype=np.int64)
        return int(self(ids, np.ones_like(ids)).shape[-1])


# --- ONNX graph cache -------------------------------------------------------------

_build_lock = threading.Lock()


def prepare_onnx_graph(
    folder: str | os.PathLike[str],
    *,
    precision: Precision = "int8",
    cache_dir: str | os.PathLike[str] | None = None,
    weights_sha256: str | None = None,
) -> Path:
    """The ONNX graph of `folder`'s safetensors weights, built if not cached.

    Callable on its own (an image build, a deploy step) so the first request does
    not pay for the build. The file is named after the weights' hash, the graph
    version, the precision and onnxruntime's version, and a `.sha256` file beside it
    is checked on every load: a damaged or edited graph is built again from the
    (verified) weights. Writes are atomic, so processes that start together may
    each build, but none reads a half-written file.
    """
    import onnxruntime as ort

    folder = Path(folder)
    weights_path = folder / "model.safetensors"
    weights_sha256 = weights_sha256 or file_sha256(weights_path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    ort_version = ".".join(ort.__version__.split(".")[:2])
    stem = (
        f"{_safe_label(folder.name)}-{weights_sha256[:16]}-g{bert.GRAPH_VERSION}"
        f"-{precision}-ort{ort_version}"
    )
    graph_path = cache / f"{stem}.onnx"
    digest_path = cache / f"{stem}.onnx.sha256"
    if _cached_graph_ok(graph_path, digest_path):
        return graph_path
    with _build_lock:
        if _cached_graph_ok(graph_path, digest_path):
            return graph_path
        try:
            cache.mkdir(parents=True, exist_ok=True)
            _build_graph(folder, weights_path, precision, graph_path, digest_path)
        except OSError as exc:
            raise EmbeddingError(
                f"Cannot write the ONNX graph to {cache}: {exc}"
            ) from exc
    return graph_path


def _safe_label(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"


def _cached_graph_ok(graph_path: Path, digest_path: Path) -> bool:
    try:
        expected = digest_path.read_text(encoding="ascii").strip()
    except OSError:
        return False
    return graph_path.is_file() and file_sha256(graph_path) == expected


def _build_graph(
    folder: Path,
    weights_path: Path,
    precision: Precision,
    graph_path: Path,
    digest_path: Path,
) -> None:
    import onnx

    config = bert.BertConfig.from_file(folder / "config.json")
    model = bert.build_onnx_graph(bert.BertWeights.load(config, weights_path))
    with tempfile.TemporaryDirectory(dir=graph_path.parent, prefix=".build-") as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(fp32_path))
        del model
        if precision == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            built = Path(tmp) / "int8.onnx"
            with _quiet_root_logger():
                quantize_dynamic(
                    fp32_path,
                    built,
                    op_types_to_quantize=_QUANTIZED_OPS,
                    per_channel=_QUANTIZATION["per_channel"],
                    reduce_range=_QUANTIZATION["reduce_range"],
                    weight_type=QuantType[_QUANTIZATION["weight_type"]],
                    # Shape inference cannot see through the com.microsoft operators.
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
        else:
            built = fp32_path
        digest_tmp = Path(tmp) / "digest"
        digest_tmp.write_text(file_sha256(built) + "\n", encoding="ascii")
        os.replace(built, graph_path)
        os.replace(digest_tmp, digest_path)


@contextlib.contextmanager
def _quiet_root_logger():
    """quantize_dynamic warns through the root logger (and so would configure it,
    were it bare) that the graph was not pre-processed: that pre-processing fuses
    PyTorch-style graphs, and ours is fused already."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)

    def drop(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        root.removeHandler(guard)
