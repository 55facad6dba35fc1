"""The matmul ceiling of this processor, at the MLM step's own shapes, in bf16 and fp32.

Times `torch.matmul` for each GEMM of a BERT MLM training step at the model's shape (MiniLM-L6-H384
by default; `--hidden 768 --intermediate 3072` for bert-base) with batch x seq rows, and a square
2048^3 product, in fp32 and in bf16. GFLOP/s is 2*M*N*K / seconds, best of `--rounds` rounds, fp32
and bf16 alternated in one process. BENCHMARKS.md states each MLM throughput as a fraction of the
`step mix` figure: the FLOP-weighted rate of these shapes, the most this processor's matmuls give at
this model's sizes. Says whether the CPU has AMX (amx_bf16) or AVX512-BF16.

    python bench/bench_peak.py [--batch 32 --seq 128 --hidden 384 --intermediate 1536 --vocab 30522]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from common import machine


def cpu_bf16_kind() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "AMX (amx_bf16)" if "amx_bf16" in flags else "AVX512-BF16, no AMX" if "avx512_bf16" in flags else "no bf16 units"


def gflops(m: int, n: int, k: int, dtype, rounds: int, min_seconds: float = 0.3) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up (kernel selection, packing)
    best = float("inf")
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while True:
            torch.matmul(a, b)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return 2.0 * m * n * k / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--intermediate", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--mask", type=float, default=0.15, help="share of positions the masked-only head sees")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    t, h, i = args.batch * args.seq, args.hidden, args.intermediate
    masked = int(t * args.mask)
    # (name, M, N, K, how many of them per layer-step forward); backward adds 2x the same FLOPs
    shapes = [("QKV / output projection", t, h, h), ("FFN up", t, i, h), ("FFN down", t, h, i),
              ("LM head (masked rows)", masked, args.vocab, h), ("square 2048^3", 2048, 2048, 2048)]
    print(f"machine: {machine()}; CPU bf16: {cpu_bf16_kind()}\n")
    print("| GEMM | M x N x K | fp32 GFLOP/s | bf16 GFLOP/s | bf16 / fp32 |")
    print("|---|---|---:|---:|---:|")
    rates = {}
    for name, m, n, k in shapes:
        f32, b16 = gflops(m, n, k, torch.float32, args.rounds), gflops(m, n, k, torch.bfloat16, args.rounds)
        rates[name] = (f32, b16, 2.0 * m * n * k)
        print(f"| {name} | {m} x {n} x {k} | {f32:,.0f} | {b16:,.0f} | {b16 / f32:.2f}x |")
    # FLOP-weighted over one step's GEMMs (the layers' projections and FFN, the LM head once; the
    # attention score products, 2 x seq/hidden of the projections' FLOPs, are left out): time = sum(flops / rate)
    L = args.layers
    weights = {"QKV / output projection": 4 * L, "FFN up": L, "FFN down": L, "LM head (masked rows)": 1}
    for col, label in ((0, "fp32"), (1, "bf16")):
        flops = sum(w * rates[n][2] for n, w in weights.items())
        seconds = sum(w * rates[n][2] / (rates[n][col] * 1e9) for n, w in weights.items())
        print(f"\nstep mix ({label}): {flops / seconds / 1e9:,.0f} GFLOP/s", end="")
    print()


if __name__ == "__main__":
    main()
