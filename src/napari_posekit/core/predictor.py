"""A trained model ready for inference: :class:`Predictor`.

It holds an engine (the network on one backend: torch, onnxruntime or
OpenVINO, see :mod:`~napari_posekit.core.backends`), the codec, the input
scale, the body parts and the project's skeleton, and predicts keypoints for
batches of frames, on the whole frame or on a window of it.  Frames are
scaled and padded, and heatmaps decoded, in NumPy: the same steps whatever
the backend, and none of them needs torch, so that an exported model file
(``.onnx``) analyses videos where torch is not installed.
:mod:`~napari_posekit.core.inference` runs it over videos.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .codec import HeatmapCodec
from .options import ANALYSIS_BATCH_SIZE

__all__ = ["AnalysisError", "Predictor", "resize_bilinear"]


class AnalysisError(RuntimeError):
    """A video cannot be analysed with this model (the message says why)."""


def resize_bilinear(frames: np.ndarray, scale: float) -> np.ndarray:
    """``uint8 (B, H, W, C)`` frames resized by ``scale`` to ``floor(H * scale) x floor(W * scale)``.

    Bilinear with pixel centres mapped as training's resizing maps them
    (``torch.nn.functional.interpolate(..., align_corners=False)``), rounded
    back to uint8.
    """
    h, w = frames.shape[1:3]
    oh, ow = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))

    def taps(n_out: int, n_in: int):
        src = np.maximum((np.arange(n_out) + 0.5) / scale - 0.5, 0.0)
        i0 = np.minimum(np.floor(src).astype(np.intp), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (src - i0).astype(np.float32)

    y0, y1, fy = taps(oh, h)
    x0, x1, fx = taps(ow, w)
    f = frames.astype(np.float32)
    rows = f[:, y0] * (1 - fy)[None, :, None, None] + f[:, y1] * fy[None, :, None, None]
    out = rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- predictor
class Predictor:
    """A trained model ready for inference.

    Use :meth:`load` with a project folder (its latest checkpoint), a
    ``config.yaml``, a checkpoint file or an exported ``.onnx`` file.
    :meth:`predict` returns keypoints in frame pixels ``(x, y)`` and
    likelihoods in [0, 1].

    ``network`` is an engine (an object with ``name`` and ``run(images)``,
    see :mod:`~napari_posekit.core.engines`) or a torch model, which runs on a
    :class:`~napari_posekit.core.torch_engine.TorchEngine` (``device``,
    ``precision`` ``"auto"``/``"float32"``/``"bfloat16"``, ``freeze``).
    ``pad_to`` (input sides are padded to a multiple of it) defaults to the
    metadata's or the torch model's.
    """

    def __init__(
        self,
        network: Any,
        codec: HeatmapCodec,
        meta: dict[str, Any],
        *,
        checkpoint: str | os.PathLike | None = None,
        skeleton: Sequence[tuple[str, str]] = (),
        device: Any = None,
        precision: str = "auto",
        freeze: bool = True,
        pad_to: int | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        if hasattr(network, "run") and hasattr(network, "name"):
            self.engine = network
        else:
            from .forward import pad_multiple
            from .hardware import native_bfloat16
            from .torch_engine import TorchEngine

            if precision not in ("auto", "float32", "bfloat16"):
                raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', not {precision!r}")
            engine = TorchEngine(network, device=device, precision="float32", freeze=freeze)
            if precision == "auto":
                precision = "bfloat16" if native_bfloat16(engine.device) else "float32"
            engine.precision = precision
            self.engine = engine
            pad_to = pad_to or pad_multiple(network, codec)
            if network.n_keypoints != len(meta["bodyparts"]):
                raise AnalysisError(
                    f"checkpoint predicts {network.n_keypoints} keypoints but names {len(meta['bodyparts'])} body parts"
                )
        self.codec = codec
        self.meta = meta
        self.bodyparts: list[str] = list(meta["bodyparts"])
        self.input_scale = float(meta.get("input_scale", 1.0))
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.skeleton = [tuple(edge) for edge in skeleton]
        self.pad_to = int(pad_to or meta.get("pad_to") or max(32, codec.stride))
        self.notes: list[str] = list(notes)

    # ------------------------------------------------------------------ torch engine settings
    @property
    def backend(self) -> str:
        """The engine's name, e.g. ``"openvino-bfloat16"`` or ``"torch-frozen-float32"``."""
        return self.engine.name

    @property
    def model(self) -> Any:
        """The torch model (torch engines only)."""
        return self.engine.model

    @property
    def precision(self) -> str:
        return getattr(self.engine, "precision", self.backend.rsplit("-", 1)[-1])

    @precision.setter
    def precision(self, value: str) -> None:
        self.engine.precision = value

    @property
    def freeze(self) -> bool:
        return bool(getattr(self.engine, "freeze", False))

    @freeze.setter
    def freeze(self, value: bool) -> None:
        self.engine.freeze = bool(value)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, source: str | os.PathLike, *, device: Any = "cpu", backend: str = "auto", **options: Any
    ) -> Predictor:
        """Predictor from a project folder / ``config.yaml`` (latest model), a checkpoint or an ``.onnx`` file.

        ``backend`` is ``"auto"`` (the fastest one that keeps the accuracy,
        measured once per model and machine, see
        :func:`~napari_posekit.core.backends.choose_backend`) or a backend
        name.  Raises :class:`FileNotFoundError` for a missing path,
        :class:`~napari_posekit.core.checkpoint.CheckpointError` /
        :class:`~napari_posekit.core.model_file.ModelFileError` for a file
        that is not a usable model and :class:`AnalysisError` for a model
        whose body parts differ from its project's.  ``options`` go to the
        backend choice (``precision``, ``freeze``, ``probe_frames``).
        """
        from .backends import load_predictor

        return load_predictor(cls, source, device=device, backend=backend, **options)

    @property
    def scorer(self) -> str:
        """DeepLabCut-style scorer name, e.g. ``DLC_efficientnetlite0_openfieldOct30shuffle1_4200``.

        An exported model keeps the name of the checkpoint it was exported from.
        """
        from .model_file import is_model_file, scorer_name

        if self.checkpoint is not None and is_model_file(self.checkpoint) and self.meta.get("scorer"):
            return str(self.meta["scorer"])
        return scorer_name(self.meta, self.checkpoint)

    # ------------------------------------------------------------------ prediction
    @staticmethod
    def _as_frames(frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim == 3:  # (B, H, W) grayscale
            frames = np.repeat(frames[..., None], 3, axis=-1)
        if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
            raise ValueError(f"frames must be (B, H, W, 3) or (B, H, W), got shape {frames.shape}")
        frames = frames[..., :3]
        if frames.dtype != np.uint8:
            frames = np.clip(frames, 0, 255).astype(np.uint8)
        return frames

    def _run(self, frames: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (float64) and likelihoods (float64) for uint8 frames, in their own pixels."""
        frames = self._as_frames(frames)
        if scale != 1.0:
            frames = resize_bilinear(frames, scale)
        h, w = frames.shape[1:3]
        ph, pw = (-h) % self.pad_to, (-w) % self.pad_to
        if ph or pw:
            frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)))
        heatmaps, locref = self.engine.run(np.ascontiguousarray(frames))
        hc, wc = math.ceil(h / self.codec.stride), math.ceil(w / self.codec.stride)
        xy, conf = self.codec.decode_numpy(heatmaps[..., :hc, :wc], locref[..., :hc, :wc])
        if scale != 1.0:
            xy = (xy + 0.5) / scale - 0.5
        return xy, conf.astype(np.float64)

    def predict(self, frames: np.ndarray, *, batch_size: int = ANALYSIS_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """``(xy (B, K, 2), likelihood (B, K))`` for whole frames ``(B, H, W, 3)`` uint8."""
        out_xy, out_p = [], []
        for i in range(0, len(frames), max(1, batch_size)):
            xy, p = self._run(frames[i : i + batch_size], self.input_scale)
            out_xy.append(xy)
            out_p.append(p)
        if not out_xy:
            k = len(self.bodyparts)
            return np.zeros((0, k, 2)), np.zeros((0, k))
        return np.concatenate(out_xy), np.concatenate(out_p)

    def predict_crops(
        self,
        frames: np.ndarray,
        origin: tuple[int, int],
        size: tuple[int, int],
        *,
        batch_size: int = ANALYSIS_BATCH_SIZE,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints from the window ``origin=(x0, y0)``, ``size=(w, h)`` (frame pixels) of every frame."""
        x0, y0 = origin
        w, h = size
        out_xy, out_p = [], []
        for i in range(0, len(frames), max(1, batch_size)):
            crop = np.asarray(frames[i : i + batch_size])[:, y0 : y0 + h, x0 : x0 + w]
            xy, p = self._run(crop, self.input_scale)
            out_xy.append(xy + np.array([x0, y0], dtype=np.float64))
            out_p.append(p)
        return np.concatenate(out_xy), np.concatenate(out_p)

    def locate(self, frame: np.ndarray, *, scale: float = 0.5, min_likelihood: float = 0.1) -> np.ndarray | None:
        """Rough ``(x, y)`` of the animal's confident keypoints from one low-resolution pass, or None."""
        xy, p = self._run(np.asarray(frame)[None], self.input_scale * scale)
        good = p[0] >= min_likelihood
        return xy[0][good] if good.any() else None
