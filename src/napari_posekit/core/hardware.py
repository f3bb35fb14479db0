"""What the machine's processor can do, for choosing arithmetic and for naming it in benchmark reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where needed: the CPU readers run without torch
    import torch

__all__ = ["cpu_description", "cpu_flags", "cpu_model", "gpu_present", "native_bfloat16", "native_bfloat16_cpu"]

_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")
_REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo(*keys: str) -> str | None:
    """The first ``/proc/cpuinfo`` value under one of ``keys`` (Linux), or None."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(keys):
            return line.partition(":")[2].strip()
    return None


def cpu_flags() -> set[str]:
    """The processor's feature flags (Linux ``/proc/cpuinfo``; empty where unknown)."""
    return set((_cpuinfo("flags", "Features") or "").split())


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo``'s model name, else what :mod:`platform` says)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_description() -> str:
    """The processor's name and the flags that decide convolution speed, e.g. ``"AMD EPYC (avx2 fma avx512f …)"``."""
    name = cpu_model()
    flags = cpu_flags()
    shown = [f for f in _REPORTED_FLAGS if f in flags]
    return f"{name} ({' '.join(shown) if shown else 'no AVX2'})"


def gpu_present() -> bool:
    """Whether torch might find a GPU here, told without importing torch.

    An NVIDIA driver (Linux ``/proc/driver/nvidia``, or ``nvidia-smi`` on
    the path), a ROCm device node, or an Apple-silicon Mac (MPS).  A False
    lets the CPU be chosen without the seconds importing torch takes.
    """
    import shutil
    import sys

    if Path("/proc/driver/nvidia/version").exists() or Path("/dev/kfd").exists():
        return True
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return shutil.which("nvidia-smi") is not None


def _isa_capped_below_bfloat16() -> bool:
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    return cap in _ISAS_WITHOUT_BF16


def native_bfloat16_cpu() -> bool:
    """Whether this processor computes bfloat16 in hardware (AVX512-BF16 or AMX), from its flags, without torch.

    An ``ONEDNN_MAX_CPU_ISA`` cap below bfloat16 makes it False, as in
    :func:`native_bfloat16`.
    """
    flags = cpu_flags()
    return not _isa_capped_below_bfloat16() and bool(flags & {"avx512_bf16", "amx_bf16"})


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 convolutions in hardware (CPUs with AVX512-BF16 or AMX; CUDA).

    Other CPUs would emulate it, slower than float32.  So would one whose
    oneDNN instruction set is capped below bfloat16 by ``ONEDNN_MAX_CPU_ISA``
    (``AVX2`` makes an AVX-512 machine run as an AVX2-only one).
    """
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    if _isa_capped_below_bfloat16():
        return False
    try:
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return False
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False
