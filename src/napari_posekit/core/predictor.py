"""A trained model ready for inference: :class:`Predictor`.

It wraps a checkpoint (model, codec, input scale, body parts, the project's
skeleton) and predicts keypoints for batches of frames, on the whole frame or
on a window of it, through :func:`~napari_posekit.core.forward.forward_decode`.
:mod:`~napari_posekit.core.inference` runs it over videos.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .codec import HeatmapCodec
from .forward import forward_decode, pad_multiple
from .hardware import native_bfloat16
from .model import PoseModel
from .options import ANALYSIS_BATCH_SIZE

__all__ = ["AnalysisError", "Predictor"]


class AnalysisError(RuntimeError):
    """A video cannot be analysed with this model (the message says why)."""


# --------------------------------------------------------------------------- predictor
class Predictor:
    """A trained model ready for inference.

    Use :meth:`load` with a project folder (its latest checkpoint), a
    ``config.yaml`` or a checkpoint file.  :meth:`predict` returns keypoints in
    frame pixels ``(x, y)`` and likelihoods in [0, 1].
    """

    def __init__(
        self,
        model: PoseModel,
        codec: HeatmapCodec,
        meta: dict[str, Any],
        *,
        checkpoint: str | os.PathLike | None = None,
        skeleton: Sequence[tuple[str, str]] = (),
        device: torch.device | str | None = None,
        precision: str = "auto",
        freeze: bool = True,
    ) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', not {precision!r}")
        if precision == "auto":
            precision = "bfloat16" if native_bfloat16(self.device) else "float32"
        self.precision = precision
        self.freeze = bool(freeze)
        self._graphs: dict[tuple[int, int], Any] = {}
        self.codec = codec
        self.meta = meta
        self.bodyparts: list[str] = list(meta["bodyparts"])
        self.input_scale = float(meta.get("input_scale", 1.0))
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.skeleton = [tuple(edge) for edge in skeleton]
        self.pad_to = pad_multiple(model, codec)
        if model.n_keypoints != len(self.bodyparts):
            raise AnalysisError(
                f"checkpoint predicts {model.n_keypoints} keypoints but names {len(self.bodyparts)} body parts"
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: str | os.PathLike, *, device: torch.device | str | None = "cpu", **options: Any) -> Predictor:
        """Predictor from a project folder / ``config.yaml`` (latest model) or a checkpoint file.

        Raises :class:`FileNotFoundError` for a missing path,
        :class:`~napari_posekit.core.checkpoint.CheckpointError` for a file that is
        not a compatible checkpoint and :class:`AnalysisError` for a model
        whose body parts differ from its project's.  ``options`` go to the
        constructor (``precision``, ``freeze``).
        """
        from .checkpoint import load_checkpoint
        from .config import read_config
        from .workflow import MODELS_FOLDER, latest_checkpoint

        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such project or checkpoint")
        if path.is_dir() or path.suffix in (".yaml", ".yml"):
            checkpoint = latest_checkpoint(path)
        else:
            checkpoint = path
        model, codec, meta = load_checkpoint(checkpoint, device=device)
        skeleton: list[tuple[str, str]] = []
        project = next((p for p in checkpoint.resolve().parents if p.name == MODELS_FOLDER), None)
        if project is not None and (project.parent / "config.yaml").is_file():
            config = read_config(project.parent)
            if config.bodyparts and list(config.bodyparts) != list(meta["bodyparts"]):
                raise AnalysisError(
                    f"{checkpoint}: the model was trained for body parts {list(meta['bodyparts'])} but the project "
                    f"now has {list(config.bodyparts)}; train a new model"
                )
            skeleton = [tuple(e) for e in (config.get("skeleton") or []) if len(e) == 2]
        return cls(model, codec, meta, checkpoint=checkpoint, skeleton=skeleton, device=device, **options)

    @property
    def scorer(self) -> str:
        """DeepLabCut-style scorer name, e.g. ``DLC_efficientnetlite0_openfieldOct30shuffle1_4200``."""
        backbone = str(self.meta.get("model_config", {}).get("backbone", "model")).replace("_", "")
        name = "posekitshuffle1"
        if self.checkpoint is not None:
            folder = self.checkpoint.resolve().parent.parent.name
            match = re.fullmatch(r"(.*)-trainset\d+(shuffle\d+)(-block)?", folder)
            # DeepLabCut's names always hold "shuffle<n>"; tools (and our reader) look for it
            name = (
                f"{match.group(1)}{match.group(2)}{match.group(3) or ''}"
                if match
                else f"{self.checkpoint.stem}shuffle1"
            )
        return f"DLC_{backbone}_{name}_{int(self.meta.get('step', 0))}"

    # ------------------------------------------------------------------ prediction
    def _to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        frames = np.asarray(frames)
        if frames.ndim == 3:  # (B, H, W) grayscale
            frames = np.repeat(frames[..., None], 3, axis=-1)
        if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
            raise ValueError(f"frames must be (B, H, W, 3) or (B, H, W), got shape {frames.shape}")
        frames = frames[..., :3]
        if frames.dtype != np.uint8:
            frames = np.clip(frames, 0, 255).astype(np.uint8)
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        return x.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)

    @torch.inference_mode()
    def _run(self, x: torch.Tensor, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints for float images ``(B, 3, h, w)``, in their own pixels (through :func:`forward_decode`)."""
        xy, conf = forward_decode(
            self.model, self.codec, x, scale=scale, pad_to=self.pad_to, network=self._network, channels_last=True
        )
        return xy, conf.astype(np.float64)

    def _network(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's outputs in float32, through a frozen graph per input size when ``freeze``."""
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")
        with autocast:
            if not self.freeze:
                out = self.model(x)
            else:
                key = tuple(x.shape[-2:])
                graph = self._graphs.get(key)
                if graph is None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # trace warnings about sizes fixed per graph
                        graph = torch.jit.freeze(torch.jit.trace(self.model, x[:1], check_trace=False).eval())
                    self._graphs[key] = graph
                out = graph(x)
        return out[0].float(), out[1].float()

    def predict(self, frames: np.ndarray, *, batch_size: int = ANALYSIS_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """``(xy (B, K, 2), likelihood (B, K))`` for whole frames ``(B, H, W, 3)`` uint8."""
        out_xy, out_p = [], []
        for i in range(0, len(frames), max(1, batch_size)):
            xy, p = self._run(self._to_tensor(frames[i : i + batch_size]), self.input_scale)
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
            xy, p = self._run(self._to_tensor(crop), self.input_scale)
            out_xy.append(xy + np.array([x0, y0], dtype=np.float64))
            out_p.append(p)
        return np.concatenate(out_xy), np.concatenate(out_p)

    def locate(self, frame: np.ndarray, *, scale: float = 0.5, min_likelihood: float = 0.1) -> np.ndarray | None:
        """Rough ``(x, y)`` of the animal's confident keypoints from one low-resolution pass, or None."""
        xy, p = self._run(self._to_tensor(np.asarray(frame)[None]), self.input_scale * scale)
        good = p[0] >= min_likelihood
        return xy[0][good] if good.any() else None
