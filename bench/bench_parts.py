"""Candidates for the MLM step's non-matmul third, each part timed alone against today's code, in one process.

Two parts of the pipeline's CPU step (MiniLM shape, batch 32 x 128, bf16 autocast), forward + backward:
- the masked-only head's loss: today's `F.cross_entropy(logits.float(), targets)` after the decoder,
  against a fused linear + cross-entropy (`FusedLinearCrossEntropy` below: the gradient computed in
  the forward from one fp32 softmax, no fp32 copy of the logits kept, no zeroed gradient, no
  separate log-softmax backward; the idea of Liger Kernel's fused linear cross-entropy, which is
  for CUDA only);
- one layer's attention with dropout 0.1: today's `pipeline.fast_dropout.attention`, against the
  scale moved onto q, the mask applied by multiply or `where`, after the bf16 cast, the softmax
  in bf16 (autocast's fp32 softmax left out), and torch's
  fused SDPA without dropout (what the CPU kernel would cost if dropout were off).

    python bench/bench_parts.py [--rounds 5 --calls 6]

Runs with freed memory kept (`pipeline.allocator`), as the pipeline's CPU step does.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from common import alternate, machine, use_allocator
from pipeline.fast_dropout import attention, drop, keep_mask


class FusedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `x @ weight.T + bias` against `targets` (-100 ignored), in `dtype`,
    with the gradients computed in the forward (a candidate, not used by the pipeline)."""

    @staticmethod
    def forward(ctx, x, weight, bias, targets, dtype):
        with torch.autocast(x.device.type, enabled=False):
            xc, wc = x.to(dtype), weight.to(dtype)
            prob = torch.softmax(torch.addmm(bias.to(dtype), xc, wc.t()), dim=-1, dtype=torch.float32)
            valid = targets != -100
            count = valid.sum().clamp(min=1)
            t = torch.where(valid, targets, 0)[:, None]
            loss = -(torch.log(prob.gather(1, t).squeeze(1)) * valid).sum() / count
            prob.scatter_add_(1, t, -valid[:, None].to(prob.dtype))  # softmax - one_hot(target)
            grad = torch.empty(prob.shape, dtype=dtype, device=prob.device)
            torch.mul(prob, (valid / count)[:, None], out=grad)
            del prob
            ctx.save_for_backward((grad @ wc).to(x.dtype), (grad.t() @ xc).to(weight.dtype),
                                  grad.sum(0, dtype=torch.float32).to(bias.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        gx, gw, gb = ctx.saved_tensors
        return gx * grad_out, gw * grad_out, gb * grad_out, None, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    torch.manual_seed(0)
    use_allocator(keep_freed=True)  # as the pipeline runs on CPU (train.keep_freed_memory)
    print(f"machine: {machine()}; freed memory kept, as the pipeline does\n")

    # the head: masked rows (15% of batch x seq, rounded up to 64 as the pipeline does) x hidden -> vocabulary
    rows, hidden, vocab, dtype = -(-int(0.15 * args.batch * args.seq) // 64) * 64, 384, 30522, torch.bfloat16
    x = torch.randn(rows, hidden, requires_grad=True)
    w = (torch.randn(vocab, hidden) * 0.05).requires_grad_()
    b = torch.zeros(vocab, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,))
    targets[int(0.15 * args.batch * args.seq):] = -100

    def today():
        with torch.autocast("cpu", dtype=dtype):
            return F.cross_entropy(F.linear(x, w, b).float(), targets)

    def fused():
        with torch.autocast("cpu", dtype=dtype):
            return FusedLinearCrossEntropy.apply(x, w, b, targets, dtype)

    reference = F.cross_entropy(F.linear(x, w, b), targets)  # fp32
    ref_grads = torch.autograd.grad(reference, (x, w, b))
    for name, fn in (("today", today), ("fused", fused)):
        grads = torch.autograd.grad(fn(), (x, w, b))
        errs = [float((g - r).norm() / r.norm()) for g, r in zip(grads, ref_grads)]
        print(f"head loss {name}: gradient error vs fp32, relative: x {errs[0]:.1e}, weight {errs[1]:.1e}, "
              f"bias {errs[2]:.1e}")

    def step(fn):
        def run():
            x.grad = w.grad = b.grad = None
            fn().backward()
        return run

    head = alternate({"today: decoder, then cross_entropy on fp32 logits": step(today),
                      "fused linear + cross-entropy": step(fused)}, 1, args.calls, args.rounds)
    print(f"\n| head loss, {rows} x {hidden} -> {vocab} (forward + backward) | ms per call | vs today |\n|---|---:|---:|")
    first = next(iter(head.values()))
    for name, rate in head.items():
        print(f"| {name} | {1e3 / rate:.1f} | {rate / first:.2f}x |")

    # one layer's attention, dropout 0.1
    heads, head_dim, p = hidden // 32, 32, 0.1
    shape = (args.batch, heads, args.seq, head_dim)
    q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
    scale = head_dim ** -0.5

    class Module:
        num_key_value_groups = 1
        is_causal = False

    def out(probs):  # as today's: (batch, seq, heads, head_dim), contiguous for the output projection
        return (torch.matmul(probs, v) * (1.0 / (1.0 - p))).transpose(1, 2).contiguous()

    variants = {
        "today: pipeline.fast_dropout.attention (math path, fast dropout mask)":
            lambda: attention(Module(), q, k, v, None, dropout=p, scaling=scale)[0],
        "scale on q, mask multiplied, 1/(1-p) on the output": lambda: out(
            (lambda s: (s * keep_mask(s.shape, p)).to(dtype))(torch.softmax(torch.matmul(q * scale, k.transpose(-2, -1)), -1))),
        "scale on q, mask by where, 1/(1-p) on the output": lambda: out(
            (lambda s: torch.where(keep_mask(s.shape, p), s, 0.0).to(dtype))(
                torch.softmax(torch.matmul(q * scale, k.transpose(-2, -1)), -1))),
        "scale on q, mask after the bf16 cast": lambda: out(
            (lambda s: s * keep_mask(s.shape, p))(torch.softmax(torch.matmul(q * scale, k.transpose(-2, -1)), -1).to(dtype))),
        "softmax in bf16 (no fp32 copy of the scores; fp32 accumulation inside the kernel)": lambda: bf16_softmax(),
        "softmax in bf16, mask by where, 1/(1-p) on the output": lambda: bf16_softmax(where=True),
        "torch SDPA (fused CPU kernel), no dropout":
            lambda: F.scaled_dot_product_attention(q, k, v).transpose(1, 2).contiguous(),
    }

    def bf16_softmax(where: bool = False):  # today's path with autocast's fp32 softmax left out
        scores = torch.matmul(q, k.transpose(-2, -1)) * scale
        with torch.autocast("cpu", enabled=False):
            probs = torch.softmax(scores, -1)
            if where:
                return out(torch.where(keep_mask(probs.shape, p), probs, 0.0))
            return torch.matmul(drop(probs, p), v).transpose(1, 2).contiguous()

    def attn_step(fn):
        def run():
            q.grad = k.grad = v.grad = None
            with torch.autocast("cpu", dtype=dtype):
                o = fn()
            o.float().sum().backward()
        return run

    attn = alternate({n: attn_step(f) for n, f in variants.items()}, 1, args.calls, args.rounds)
    print(f"\n| attention, {args.batch} x {heads} heads x {args.seq}^2, one layer (forward + backward) | ms per call | "
          f"vs today |\n|---|---:|---:|")
    first = next(iter(attn.values()))
    for name, rate in attn.items():
        print(f"| {name} | {1e3 / rate:.1f} | {rate / first:.2f}x |")


if __name__ == "__main__":
    main()
