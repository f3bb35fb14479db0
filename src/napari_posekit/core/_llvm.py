"""Importing timm or torchvision safely in a process that already holds another LLVM."""

from __future__ import annotations

import sys


def keep_triton_away_from_loaded_llvm() -> None:
    """Make torch see no triton when a shared ``libLLVM`` is already loaded in this process.

    Call before the first import of timm or torchvision.  Mesa's OpenGL
    (llvmpipe under Xvfb, remote desktops and virtual machines, and Mesa
    drivers built on LLVM) loads ``libLLVM`` when a viewer opens a window;
    importing ``triton`` afterwards (torchvision imports it through
    ``torch._dynamo``) ends the process with a segmentation fault, because
    triton's library carries its own LLVM.  Training and analysis here never
    need triton (it serves ``torch.compile`` on GPUs), so in that case torch
    is told triton is absent.  Cheap after the first call.
    """
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return
    try:
        with open("/proc/self/maps") as maps:
            llvm_loaded = any("libLLVM" in line for line in maps)
    except OSError:
        return
    if llvm_loaded:
        sys.modules["triton"] = None  # `import triton` now raises ImportError: torch treats it as missing
