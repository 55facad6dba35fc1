"""Keep freed host memory for reuse, so that CPU training does not page-fault on every large tensor.

glibc's malloc serves a request above its mmap threshold (which grows to at most 32 MiB) with a
fresh `mmap`, and hands it back to the kernel on `free`. A CPU training step makes tensors above
that size every step: the masked-only MLM head's logits (640 x 30522 fp32: 78 MB), the word
embeddings' gradient and bf16 copy (47 MB and 23 MB at BERT's vocabulary), fine-tuning's attention
scores (batch 16 x 12 heads x 512^2 fp32: 200 MB). Each step the kernel maps those pages again and
zeroes them on first touch. Profiled on the MLM step (BENCHMARKS.md, round three), `fill_` and
`copy_` on the vocabulary-sized tensors took up to 40 to 70 ms a call, under 1 GB/s (how much a
fault costs varies with the kernel's state); keeping freed memory made the step 9% faster and
fine-tuning at 512 tokens 41% faster.

PyTorch's own answer is another allocator loaded before the process starts (jemalloc or tcmalloc
through LD_PRELOAD, as `python -m torch.backends.xeon.run_cpu` sets up); neither ships with torch
or pip, and LD_PRELOAD cannot be set from inside a running stage. glibc's `mallopt` gives the same
effect in process, which is why this is written by hand: no mmap for large blocks (M_MMAP_MAX 0),
no trimming of the heap (M_TRIM_THRESHOLD -1), so freed blocks are reused by the next step.

The cost: the process keeps its peak heap (RSS does not shrink after the largest step). The
setting is process-wide and stays for the life of the process, so it is made where a stage's process
starts (`pipeline.stage.run_stage`, every process under torchrun included), never as a side effect of a
library call; `train.keep_freed_memory: false` leaves glibc's defaults. On other C libraries (musl,
macOS, Windows) nothing is changed. glibc's own start-up switch, GLIBC_TUNABLES
(`glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...`), was measured too and did not give the
same effect here (glibc 2.36: a 96 MB tensor per step still faulted its pages in on most steps).
"""

from __future__ import annotations

import ctypes
import functools
import sys

# glibc's mallopt parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
# glibc's own steady state for a process that frees large blocks: the dynamic mmap threshold at its
# 32 MiB cap (64-bit), the trim threshold at twice that, and mmap allowed (DEFAULT_MMAP_MAX 65536)
GLIBC_STEADY_STATE = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 * 1024 * 1024, M_TRIM_THRESHOLD: 64 * 1024 * 1024}
KEEP_FREED = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: -1}

_state = {"applied": None}


@functools.cache  # the benches switch settings before every round
def glibc():
    """The glibc C library (ctypes), or None where the C library is another (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl names its C library otherwise)
        return None
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return None
    return libc


def set_malloc(settings: dict[int, int]) -> bool:
    """Apply glibc `mallopt` settings; False (nothing changed) where the C library is not glibc."""
    libc = glibc()
    if libc is None:
        return False
    return all(libc.mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1 for k, v in settings.items())


def keep_freed_memory(enabled: bool = True) -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); True if it now does.
    Idempotent; with `enabled` False it changes nothing."""
    if not enabled:
        return bool(_state["applied"])
    if _state["applied"] is None:
        _state["applied"] = set_malloc(KEEP_FREED)
    return bool(_state["applied"])
