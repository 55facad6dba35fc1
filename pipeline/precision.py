"""The numeric precision of training and evaluation on this device: `train.precision` resolved
(auto -> bf16 where the hardware has it) and the matching autocast."""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 instructions (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(preference: str) -> str:
    """`auto` -> bf16 on CUDA with bf16 support or a bf16-capable CPU, else fp32."""
    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast(precision: str):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16")
