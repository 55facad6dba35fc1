"""Dropout with fewer random draws, for MLM pretraining on CPUs.

Profiling the MLM step on a CPU (BENCHMARKS.md) puts a quarter of it in dropout: PyTorch's CPU
SDPA kernel does not do dropout, so BERT-style attention (dropout 0.1) runs the math path with
a Bernoulli mask of batch x heads x seq x seq values per layer, and `bernoulli_` draws one
mt19937 number per value. Here one 64-bit draw serves four values (16 random bits each), a
3.5x cheaper mask. The drop probability is p rounded to 1/65536 (0.1 -> 0.1000061).

Written by hand because neither torch nor transformers has a cheaper CPU dropout. Used for
training on CPU only: CUDA dropout (Philox, fused into SDPA) is already fast, and evaluation
has no dropout.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface

from pipeline.compat import attn_implementation, sdpa_attention_forward, sdpa_mask

NAME = "dapt_cpu_dropout"
_INT16_MIN = -32768


def keep_mask(shape, p: float, device=None) -> torch.Tensor:
    """Boolean mask, True with probability 1 - p (p rounded to a multiple of 1/65536)."""
    n = math.prod(shape)
    words = torch.randint(torch.iinfo(torch.int64).min, torch.iinfo(torch.int64).max, (-(-n // 4),),
                          dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape) >= _INT16_MIN + round(p * 65536)


def drop(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout of `x` with a `keep_mask`: kept values are scaled by 1 / (1 - p)."""
    scale = keep_mask(x.shape, p, x.device).to(x.dtype) * (1.0 / (1.0 - p))
    return x * scale


class FastDropout(nn.Dropout):
    """`nn.Dropout` with a `keep_mask`; identical in evaluation (no dropout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return drop(x, self.p)


def attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
              **kwargs):
    """transformers attention function: SDPA without dropout; with dropout, SDPA's math path
    (which is what torch runs on CPU then) with a `keep_mask` on the attention probabilities."""
    special = getattr(module, "num_key_value_groups", 1) > 1 or getattr(module, "is_causal", False) or any(
        kwargs.get(k) is not None and kwargs.get(k) is not False
        for k in ("is_causal", "position_bias", "sliding_window", "softcap", "s_aux"))
    if dropout == 0.0 or special:  # anything but plain bidirectional attention: torch's SDPA as usual
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scores = torch.matmul(query, key.transpose(-2, -1)) * (scaling or query.shape[-1] ** -0.5)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    probs = drop(probs, dropout)
    out = torch.matmul(probs.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, attention)
# transformers builds no attention mask at all for an implementation without a mask function:
# padding would be attended to. This one takes SDPA's masks.
AttentionMaskInterface.register(NAME, sdpa_mask)


@contextlib.contextmanager
def fast_dropout(model, enabled: bool = True):
    """Inside the block, `model` (on CPU) uses `FastDropout` and the `attention` above; the
    original modules and attention implementation are put back on exit (so the saved model
    is a plain one)."""
    on_cpu = next(model.parameters()).device.type == "cpu"
    if not (enabled and on_cpu):
        yield model
        return
    swapped = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p))
                swapped.append((parent, name, child))
    before = attn_implementation(model)  # what from_pretrained resolved ("sdpa", "eager", ...)
    uses_sdpa = before in ("sdpa", None)
    if uses_sdpa:  # transformers' public switch: the model and every sub-model's config
        model.set_attn_implementation(NAME)
    try:
        yield model
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        if uses_sdpa:
            model.set_attn_implementation(before or "sdpa")
