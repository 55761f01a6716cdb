"""Embedding figures: speed, load time, memory, int8/fp32 agreement, windowing.

    .venv/bin/python bench/embeddings.py                 # everything (~5-10 min)
    .venv/bin/python bench/embeddings.py --runs 5 --windows 128
    .venv/bin/python bench/embeddings.py --only onnx-int8 --skip-quality
    .venv/bin/python bench/embeddings.py --skip-speed     # the quality part only
    make bench-embeddings

Speed: each runtime (numpy fp32, onnx fp32, onnx int8, and onnx int8 on one core)
is timed in a fresh child process, so its load time and memory are its own; the
load reads the cached ONNX graph (built beforehand, and that build is timed too).
Throughput is for full windows of real text (the project's Markdown and the long
descriptions of the installed packages): `--windows` windows of ~254 tokens and
twice as many of ~127, and the project's ~1,000-character chunks of that text cut
into <=128-token windows (`embed_windows`, as ingestion does: chunks/s; onnx
only), as medians of `--runs` runs after a warm-up; tokens count [CLS] and [SEP].
Each is also given per CPU-second of the process (all its threads): that figure
hardly moves when other processes share the cores, the wall-clock one does. numpy
runs a second time with OPENBLAS_CORETYPE changed (unset when it is set, set to
`--coretype` when not), and prints the BLAS kernel it ran (threadpoolctl).
onnxruntime does its own matrix products (MLAS): the variable does not reach it.
The machine's load average is printed first: other processes on these 2 cores
change every figure. Cold load is the default embedder's constructor in a fresh
process on an empty cache (unpack, build, quantize, open).

A summary at the end gathers the default's (onnx-int8) figures: tokens/s,
windows/s, chunks/s, load cold and warm, RSS, and its min cosine to fp32.

Quality, in this process: how the project's 1,000-character chunks fit MiniLM's
256-token window; paraphrase and unrelated pairs on each runtime; onnx fp32 and
int8 against numpy fp32 (cosine of the vectors each gives the same text); and
which windowing finds a chunk by one of its sentences.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from embeddings import builtin_embedder, builtin_model_dir, prepare_onnx_graph  # noqa: E402
from tests.embeddings.texts import PARAPHRASES, UNRELATED  # noqa: E402

VARIANTS = {
    "numpy-fp32": {"runtime": "numpy"},
    "onnx-fp32": {"runtime": "onnx", "precision": "fp32"},
    "onnx-int8": {"runtime": "onnx", "precision": "int8"},
}
# Speed only: the default on one core, to see what the second one adds.
SPEED_VARIANTS = {
    **VARIANTS,
    "onnx-int8, threads=1": {"runtime": "onnx", "precision": "int8", "threads": 1},
}
BLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# --- corpus -----------------------------------------------------------------------


def corpus_texts() -> dict[str, list[str]]:
    docs = [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "bench" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "stores" / "samples").glob("*.md")),
    ]
    markdown = [p.read_text(encoding="utf-8") for p in docs if p.is_file()]
    descriptions = []
    for dist in sorted(
        importlib.metadata.distributions(), key=lambda d: d.metadata["Name"].lower()
    ):
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        if len(body) > 4000:
            descriptions.append(body)
    return {"project Markdown": markdown, "package descriptions": descriptions[:15]}


def project_chunks(texts: list[str], data_dir: Path) -> list[str]:
    """The project's own chunker (1,000 characters, 150 overlap)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flamehaven.settings")
    os.environ.setdefault("DATA_DIR", str(data_dir))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from stores.extraction import ExtractedText, chunk_text

    return [
        span.text
        for text in texts
        for span in chunk_text(ExtractedText(text, None, None), size=1000, overlap=150)
    ]


def full_windows(embedder, texts: list[str], count: int) -> list[str]:
    """`count` windows of nearly `embedder.window_tokens` tokens each."""
    least = embedder.window_tokens * 15 // 16
    pieces: list[str] = []
    for text in texts:
        pieces.extend(
            p for p in embedder.windows(text) if embedder.token_count(p) >= least
        )
        if len(pieces) >= count:
            break
    return pieces[:count]


# --- child process: one runtime ---------------------------------------------------


def rss_mb() -> tuple[float, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def worker(args: argparse.Namespace) -> None:
    from threadpoolctl import threadpool_info

    payload = json.loads(Path(args.windows_file).read_text())
    rss_start, _ = rss_mb()
    started = time.perf_counter()
    embedder = builtin_embedder(args.cache, **SPEED_VARIANTS[args.worker])
    load = time.perf_counter() - started
    rss_loaded, _ = rss_mb()
    sizes = {}
    for size, windows in payload["windows"].items():
        embedder.embed_passages(windows[:8])  # warm-up
        times, cpu = timed(args.runs, embedder.embed_passages, windows)
        sizes[size] = {
            "windows": len(windows),
            "tokens": sum(embedder.token_count(w) for w in windows),
            "run_s": times,
            "cpu_s": cpu,
        }
    # The project's ~1,000-character chunks, cut into windows as ingestion does
    # (not with numpy: minutes per run, and it says nothing the windows do not).
    chunks = payload["chunks"] if embedder.runtime == "onnx" else []
    if chunks:
        pieces = [w for c in chunks for w in embedder.windows(c)]
        times, cpu = timed(args.runs, embedder.embed_windows, chunks)
        sizes["chunks"] = {
            "chunks": len(chunks),
            "windows": len(pieces),
            "tokens": sum(embedder.token_count(w) for w in pieces),
            "run_s": times,
            "cpu_s": cpu,
        }
    queries = [f"how do I configure the {w} setting?" for w in range(25)]
    query_times = []
    for query in queries:
        started = time.perf_counter()
        embedder.embed_query(query)
        query_times.append(time.perf_counter() - started)
    rss_end, rss_peak = rss_mb()
    blas = [
        f"{i['internal_api']} {i.get('architecture')} x{i['num_threads']}"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    print(
        json.dumps(
            {
                "name": embedder.name,
                "load_s": load,
                "sizes": sizes,
                "query_ms_p50": statistics.median(query_times) * 1000,
                "rss_start_mb": rss_start,
                "rss_loaded_mb": rss_loaded,
                "rss_end_mb": rss_end,
                "rss_peak_mb": rss_peak,
                "blas": blas,
                "blas_env": {k: os.environ.get(k) for k in BLAS_VARIABLES},
            }
        )
    )


def timed(runs: int, function, argument) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (all threads of this process) of each run. CPU seconds
    hardly move when other processes share the cores; wall seconds do."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        function(argument)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def cold_worker(args: argparse.Namespace) -> None:
    """The default embedder's constructor on an empty cache: unpack the zip, build
    and quantize the graph, open the session."""
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as cache:
        started = time.perf_counter()
        builtin_embedder(cache)
        load = time.perf_counter() - started
        print(json.dumps({"load_s": load, "rss_mb": rss_mb()[0]}))


def run_worker(
    variant: str, args: argparse.Namespace, windows_file: Path, env: dict[str, str]
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--cache",
        str(args.cache),
        "--windows-file",
        str(windows_file),
        "--runs",
        str(args.runs),
    ]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_speed(label: str, result: dict) -> None:
    for size, figures in result["sizes"].items():
        median = statistics.median(figures["run_s"])
        chunks = (
            f"{figures['chunks'] / median:>5.1f} chunks/s, "
            if "chunks" in figures
            else ""
        )
        speed = figures["tokens"] / median
        print(
            f"  {label:<34} {size + ':':<19} {chunks}{speed:>6,.0f} tok/s, "
            f"{figures['windows'] / median:>5.1f} win/s "
            f"({'/'.join(f'{t:.2f}' for t in figures['run_s'])} s); "
            f"{figures['tokens'] / statistics.median(figures['cpu_s']):>6,.0f} tok "
            "per CPU-second"
        )
        label = ""
    print(
        f"  {'':<34} load {result['load_s']:.2f} s, query p50 "
        f"{result['query_ms_p50']:.1f} ms, RSS {result['rss_start_mb']:.0f} MB at "
        f"start, {result['rss_loaded_mb']:.0f} MB loaded, "
        f"{result['rss_peak_mb']:.0f} MB peak"
    )
    if result["blas"] and "numpy" in result["name"]:
        env = ", ".join(f"{k}={v}" for k, v in result["blas_env"].items() if v)
        print(f"  {'':<34} BLAS {'; '.join(result['blas'])}  [{env or 'no env'}]")


# --- this process: quality --------------------------------------------------------


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1)


def describe(values: np.ndarray) -> str:
    return (
        f"mean {values.mean():.4f}  min {values.min():.4f}  "
        f"p1 {np.percentile(values, 1):.4f}  (n={len(values)})"
    )


def chunk_fit(cache: Path, chunks: list[str], label: str) -> None:
    embedder = builtin_embedder(cache, window_tokens=256)
    short = builtin_embedder(cache, window_tokens=128)
    counts = np.array([embedder.token_count(c) for c in chunks])
    over = counts > embedder.max_tokens
    kept = np.minimum(counts, embedder.max_tokens).sum() / counts.sum()
    per_chunk = {
        size: np.array([max(1, len(e.windows(c))) for c in chunks])
        for size, e in ((256, embedder), (128, short))
    }
    print(
        f"  {label}: {len(chunks)} chunks, tokens median {np.median(counts):.0f} "
        f"p90 {np.percentile(counts, 90):.0f} max {counts.max()}; "
        f"{over.mean():.0%} over {embedder.max_tokens}; truncating at 256 keeps "
        f"{kept:.1%} of the tokens; windows per chunk: "
        + ", ".join(
            f"<={size} tokens {w.mean():.2f} (max {w.max()})"
            for size, w in per_chunk.items()
        )
    )


def sentences_of(text: str, lo: int, hi: int) -> list[str]:
    """Whole sentences (40-300 characters) lying inside text[lo:hi]."""
    found = []
    for match in re.finditer(r"[^.!?\n]+[.!?]?", text):
        sentence = match.group().strip()
        start = match.start() + (len(match.group()) - len(match.group().lstrip()))
        if 40 <= len(sentence) <= 300 and lo <= start and start + len(sentence) <= hi:
            found.append(sentence)
    return found


def chunk_scores(query_vectors, windowed, chunk_count: int, how: str) -> np.ndarray:
    sims = query_vectors @ windowed.vectors.T
    if how == "best":
        scores = np.full((len(query_vectors), chunk_count), -1.0, dtype=np.float32)
        for column, owner in enumerate(windowed.owners):
            scores[:, owner] = np.maximum(scores[:, owner], sims[:, column])
        return scores
    means = np.zeros((chunk_count, windowed.vectors.shape[1]), dtype=np.float32)
    np.add.at(means, windowed.owners, windowed.vectors)
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return query_vectors @ means.T


def windowing(chunks: list[str], cache: Path) -> None:
    """Find a chunk by one of its sentences, with chunks embedded four ways.

    "past 256": a sentence that starts after the chunk's 256th token (truncation
    never sees it); "first 100": one inside the first 100 tokens; "any": one
    sentence from every chunk, picked with a fixed seed.
    """
    rng = np.random.default_rng(1)
    sets: dict[str, tuple[list[str], list[int]]] = {
        "past 256": ([], []),
        "first 100": ([], []),
        "any": ([], []),
    }
    embedder = builtin_embedder(cache, window_tokens=256)
    short = builtin_embedder(cache, window_tokens=128)
    tokenizer = short._whole_tokenizer  # a bench may look inside
    for index, chunk in enumerate(chunks):
        offsets = tokenizer.encode(chunk, add_special_tokens=False).offsets
        picks = {"any": sentences_of(chunk, 0, len(chunk))}
        if len(offsets) > 260:
            picks["past 256"] = sentences_of(chunk, offsets[254][0], len(chunk))
            picks["first 100"] = sentences_of(chunk, 0, offsets[100][0])
        for name, found in picks.items():
            if found:
                sets[name][0].append(found[int(rng.integers(len(found)))])
                sets[name][1].append(index)

    strategies = {
        "truncate at 256 (1 vector/chunk)": (embedder, None, "best"),
        "windows <=256, best window": (
            embedder,
            embedder.embed_windows(chunks),
            "best",
        ),
        "windows <=256, mean of windows": (embedder, None, "mean"),
        "windows <=128, best window": (short, short.embed_windows(chunks), "best"),
    }
    windowed_256 = strategies["windows <=256, best window"][1]
    truncated = embedder.embed_passages(chunks)
    print(
        f"  {len(chunks)} chunks; recall@1 / @5 of the chunk a sentence is from; "
        f"vectors: {len(chunks)} truncated, {len(windowed_256.owners)} of <=256, "
        f"{len(strategies['windows <=128, best window'][1].owners)} of <=128"
    )
    header = "".join(f"{name + f' ({len(q)})':>22}" for name, (q, _) in sets.items())
    print(f"    {'':<34}{header}")
    for label, (model, windowed, how) in strategies.items():
        cells = []
        for queries, targets in sets.values():
            if not queries:
                cells.append(f"{'-':>22}")
                continue
            query_vectors = model.embed_queries(queries)
            if windowed is None and how == "best":
                scores = query_vectors @ truncated.T
            else:
                scores = chunk_scores(
                    query_vectors, windowed or windowed_256, len(chunks), how
                )
            target = np.array(targets)
            own = scores[np.arange(len(target)), target][:, None]
            ranks = (scores > own).sum(1)
            cells.append(f"{np.mean(ranks < 1):>14.0%} / {np.mean(ranks < 5):>4.0%}")
        print(f"    {label:<34}{''.join(cells)}")


def quality(args: argparse.Namespace, chunks_by_corpus: dict[str, list[str]]) -> None:
    embedders = {
        name: builtin_embedder(args.cache, **options)
        for name, options in VARIANTS.items()
    }
    reference = embedders["numpy-fp32"]

    print("\nParaphrase pairs vs unrelated pairs (cosine):")
    for name, embedder in embedders.items():
        a = embedder.embed_passages([p[0] for p in PARAPHRASES])
        b = embedder.embed_passages([p[1] for p in PARAPHRASES])
        para = cosine_rows(a, b)
        ua = embedder.embed_passages([p[0] for p in UNRELATED])
        ub = embedder.embed_passages([p[1] for p in UNRELATED])
        unrelated = cosine_rows(ua, ub)
        print(
            f"  {name:<11} paraphrases mean {para.mean():.3f} min {para.min():.3f};"
            f"  unrelated mean {unrelated.mean():.3f} max {unrelated.max():.3f}"
        )

    cutter = builtin_embedder(args.cache, window_tokens=256)
    texts = [
        w
        for chunks in chunks_by_corpus.values()
        for c in chunks
        for w in cutter.windows(c)
    ]
    texts = texts[: args.agreement]
    print(
        f"\nAgreement with numpy fp32 ({len(texts)} chunk windows of <=256 tokens; "
        "cosine of the "
        "vectors each runtime gives the same text):"
    )
    base = reference.embed_passages(texts)
    for name in ("onnx-fp32", "onnx-int8"):
        cosines = cosine_rows(embedders[name].embed_passages(texts), base)
        args.summary[f"{name} vs numpy-fp32"] = cosines
        print(f"  {name:<11} {describe(cosines)}")
    # int8 scales activations per batch: a text's vector moves a little with its batch.
    int8 = embedders["onnx-int8"]
    alone = np.concatenate([int8.embed_passages([t]) for t in texts[:32]])
    batched = int8.embed_passages(texts)[:32]
    print(f"  onnx-int8, alone vs in a batch: {describe(cosine_rows(alone, batched))}")

    print("\nWindowing (onnx-int8): a chunk found by one of its sentences")
    all_chunks = [c for chunks in chunks_by_corpus.values() for c in chunks]
    windowing(all_chunks, args.cache)


def summary(args: argparse.Namespace) -> None:
    """The figures the default (onnx-int8) is held to, in one place."""
    print("\nSummary, onnx-int8 (the default):")
    result = args.summary.get("onnx-int8")
    if result:
        for size, figures in result["sizes"].items():
            median = statistics.median(figures["run_s"])
            chunks = (
                f"{figures['chunks'] / median:.1f} chunks/s, "
                if "chunks" in figures
                else ""
            )
            cpu = statistics.median(figures["cpu_s"])
            print(
                f"  {size + ':':<19} {chunks}{figures['tokens'] / median:,.0f} tok/s, "
                f"{figures['windows'] / median:.1f} windows/s "
                f"({figures['tokens'] / cpu:,.0f} tok per CPU-second)"
            )
        print(
            f"  load: warm {result['load_s']:.2f} s (graph cached), cold "
            f"{args.summary['cold']['load_s']:.2f} s (empty cache); RSS "
            f"{result['rss_loaded_mb']:.0f} MB loaded, {result['rss_end_mb']:.0f} MB "
            f"after the runs, {result['rss_peak_mb']:.0f} MB peak"
        )
    else:
        print(f"  cold load {args.summary['cold']['load_s']:.2f} s (empty cache)")
    cosines = args.summary.get("onnx-int8 vs numpy-fp32")
    if cosines is not None:
        print(
            f"  int8 vs fp32 cosine: min {cosines.min():.4f}, mean "
            f"{cosines.mean():.4f} ({len(cosines)} windows of <=256 tokens)"
        )
    print(f"  (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


# --- main -------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--windows", type=int, default=96, help="256-token windows per run"
    )
    parser.add_argument("--agreement", type=int, default=400, help="texts compared")
    parser.add_argument("--cache", type=Path, help="model cache (default: temporary)")
    parser.add_argument(
        "--coretype", default="Sandybridge", help="OPENBLAS_CORETYPE to try"
    )
    parser.add_argument("--only", choices=sorted(SPEED_VARIANTS), action="append")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument(
        "--worker", choices=sorted(SPEED_VARIANTS), help=argparse.SUPPRESS
    )
    parser.add_argument("--windows-file", help=argparse.SUPPRESS)
    parser.add_argument("--cold-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.cold_worker:
        cold_worker(args)
        return
    args.summary = {}

    with tempfile.TemporaryDirectory(prefix="bench-embeddings-") as scratch:
        args.data_dir = Path(scratch) / "data"  # Django's DATA_DIR, for the chunker
        if args.cache is None:
            args.cache = Path(scratch) / "models"
        run(args)


def run(args: argparse.Namespace) -> None:
    with open("/proc/cpuinfo") as f:
        cpu = f.read()
    lines = cpu.splitlines()
    model = next((x.split(":", 1)[1].strip() for x in lines if "model name" in x), "?")
    flags = next((x for x in lines if x.startswith("flags")), "")
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    import onnxruntime

    print(
        f"{model}, {os.cpu_count()} cores, AVX-512: {'avx512f' in flags}, "
        f"VNNI: {vnni}; "
        f"load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}, "
        f"numpy {np.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    env_now = {k: os.environ.get(k) for k in BLAS_VARIABLES}
    print(f"BLAS environment here: {env_now}")

    started = time.perf_counter()
    folder = builtin_model_dir(args.cache)
    unpack = time.perf_counter() - started
    builds = {}
    for precision in ("fp32", "int8"):
        started = time.perf_counter()
        prepare_onnx_graph(folder, precision=precision, cache_dir=args.cache)
        builds[precision] = time.perf_counter() - started
    sizes = {
        p.name.split("-")[-2]: p.stat().st_size / 1e6
        for p in Path(args.cache).glob("*.onnx")
    }
    print(
        f"First load: unpack model.zip {unpack:.2f} s; build graph fp32 "
        f"{builds['fp32']:.2f} s, int8 {builds['int8']:.2f} s (quantize included); "
        f"graph files {', '.join(f'{k} {v:.0f} MB' for k, v in sorted(sizes.items()))}"
    )
    done = subprocess.run(
        [sys.executable, __file__, "--cold-worker"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    args.summary["cold"] = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        f"Cold load, a fresh process on an empty cache (unpack, build int8, open): "
        f"{args.summary['cold']['load_s']:.2f} s"
    )

    corpora = corpus_texts()
    chunks_by_corpus = {
        name: project_chunks(texts, args.data_dir) for name, texts in corpora.items()
    }
    print("\nThe project's 1,000-character chunks against MiniLM's 256-token window:")
    for name, chunks in chunks_by_corpus.items():
        chunk_fit(args.cache, chunks, name)

    if not args.skip_speed:
        speed(args, corpora, chunks_by_corpus)
    if not args.skip_quality:
        quality(args, chunks_by_corpus)
    summary(args)


def speed(
    args: argparse.Namespace,
    corpora: dict[str, list[str]],
    chunks_by_corpus: dict[str, list[str]],
) -> None:
    env_now = {k: os.environ.get(k) for k in BLAS_VARIABLES}
    texts = [t for group in corpora.values() for t in group]
    window_sets = {}
    for size in (256, 128):
        embedder = builtin_embedder(args.cache, window_tokens=size)
        window_sets[f"{size}-token windows"] = full_windows(
            embedder, texts, args.windows * 256 // size
        )
    chunks = [c for group in chunks_by_corpus.values() for c in group]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"windows": window_sets, "chunks": chunks}, f)
        windows_file = Path(f.name)
    print(
        f"\nThroughput: {args.windows} windows of ~254 tokens, "
        f"{args.windows * 2} of ~127 (tokens include [CLS] and [SEP]), and the "
        f"{len(chunks)} ~1,000-character chunks above (embed_windows: windows of "
        f"<=128 tokens); median of {args.runs} runs each; load = constructor with "
        "the graph cached; RSS of each child process:"
    )
    try:
        base_env = dict(os.environ)
        for variant in args.only or SPEED_VARIANTS:
            result = run_worker(variant, args, windows_file, base_env)
            args.summary[variant] = result
            print_speed(variant, result)
            if variant == "numpy-fp32":
                other = dict(base_env)
                if any(env_now.values()):
                    for key in BLAS_VARIABLES:
                        other.pop(key, None)
                    label = "numpy-fp32, OPENBLAS_* unset"
                else:
                    other["OPENBLAS_CORETYPE"] = args.coretype
                    label = f"numpy-fp32, OPENBLAS_CORETYPE={args.coretype}"
                print_speed(label, run_worker(variant, args, windows_file, other))
    finally:
        windows_file.unlink()
    print(f"  (load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
