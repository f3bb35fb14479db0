"""Importing, in the main thread, what training and analysis import lazily in their workers."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from contextlib import suppress


def _import_triton() -> None:
    """Import triton (torchvision pulls it in through ``torch._dynamo``) with its own LLVM symbols.

    Importing triton after an OpenGL driver has loaded Mesa's ``libLLVM``
    (napari's canvas on Linux without a vendor driver, or under Xvfb) crashes
    the process: the two LLVMs' symbols clash. With ``RTLD_DEEPBIND`` triton's
    library binds to its own copy.
    """
    if sys.platform != "linux" or "triton" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    try:
        if importlib.util.find_spec("triton") is None:
            return
        with open("/proc/self/maps") as maps:
            if "libLLVM" not in maps.read():
                return
    except (OSError, ValueError, ImportError):
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        with suppress(Exception):  # torch works without triton
            import triton  # noqa: F401
    finally:
        sys.setdlopenflags(flags)


def preload_training_modules() -> None:
    """Import here, in the main thread, the libraries that training and evaluation import lazily.

    An import in a worker thread holds the GIL for up to ~150 ms at a time
    (loading code and extension modules), which freezes the event loop; done
    once when a widget opens, the workers import nothing large.
    """
    _import_triton()
    for name in ("torchvision.transforms.v2", "torchvision.tv_tensors", "timm"):
        with suppress(ImportError):
            importlib.import_module(name)
