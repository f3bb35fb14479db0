"""Runtimes that run an exported network: onnxruntime and OpenVINO (torch's is in :mod:`.torch_engine`).

Every engine has a ``name`` and ``run(images) -> (heatmaps, locref)``:
``images`` are uint8 ``(B, H, W, 3)`` RGB frames whose sides are multiples of
the model's ``pad_to``; the outputs are float32 heatmap probabilities
``(B, K, h, w)`` and location refinement ``(B, 2K, h, w)`` (see
:class:`~napari_posekit.core.torch_engine.PoseNetwork`, the graph an exported
file holds).  Neither this module nor the engines import torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["EngineError", "OnnxRuntimeEngine", "OpenVinoEngine", "available_runtimes"]


class EngineError(RuntimeError):
    """A runtime is not installed or cannot load the model (the message says which and why)."""


def available_runtimes() -> list[str]:
    """The runtimes installed here among ``"onnxruntime"`` and ``"openvino"`` (found without importing them)."""
    from importlib.util import find_spec

    return [name for name in ("onnxruntime", "openvino") if find_spec(name) is not None]


def _threads(threads: int | None) -> int:
    if threads:
        return int(threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeEngine:
    """An ONNX file on onnxruntime's CPU provider (float32 or a quantised int8 graph)."""

    def __init__(self, path: str | os.PathLike, *, precision: str = "float32", threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineError("onnxruntime is not installed (pip install onnxruntime)") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads(threads)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # threads sleep between runs instead of spinning: the decoding thread needs the cores meanwhile
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EngineError(f"onnxruntime cannot load {Path(path).name}: {exc}") from exc
        self.name = f"onnxruntime-{precision}"

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heatmaps, locref = self.session.run(["heatmaps", "locref"], {"images": np.ascontiguousarray(images)})
        return heatmaps, locref


class OpenVinoEngine:
    """An ONNX file compiled by OpenVINO for the CPU; ``precision`` ``"bfloat16"`` asks for bfloat16 inference.

    An ``"int8"`` (quantised) file runs its remaining float layers in bfloat16
    where the processor computes it natively.  ``cache_dir`` keeps compiled
    blobs so that a second start compiles nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        precision: str = "float32",
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise EngineError("OpenVINO is not installed (pip install openvino)") from exc
        from .hardware import native_bfloat16_cpu

        hint = {"float32": "f32", "bfloat16": "bf16", "int8": "bf16" if native_bfloat16_cpu() else "f32"}.get(precision)
        if hint is None:
            raise EngineError(f"OpenVINO precision must be float32, bfloat16 or int8, not {precision!r}")
        config = {"INFERENCE_NUM_THREADS": _threads(threads), "INFERENCE_PRECISION_HINT": hint}
        try:
            core = ov.Core()
            if cache_dir is not None:
                core.set_property({"CACHE_DIR": str(cache_dir)})
            self._compiled = core.compile_model(str(path), "CPU", config)
            self._request = self._compiled.create_infer_request()
            self._outputs = [self._compiled.output("heatmaps"), self._compiled.output("locref")]
        except Exception as exc:
            raise EngineError(f"OpenVINO cannot compile {Path(path).name}: {exc}") from exc
        self.name = f"openvino-{precision}"

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = self._request.infer({"images": np.ascontiguousarray(images)})
        return np.array(result[self._outputs[0]]), np.array(result[self._outputs[1]])
