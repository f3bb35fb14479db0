"""The network as analysis runs it, in torch: :class:`PoseNetwork` and :class:`TorchEngine`.

:class:`PoseNetwork` is the whole network of an exported model file: it takes
frames as they come from a video, ``uint8 (B, H, W, 3)`` RGB, and returns
heatmap probabilities ``(B, K, H / stride, W / stride)`` and location
refinement ``(B, 2K, ...)``, both float32.  Normalisation and the sigmoid are
inside, so a runtime only feeds pixels and decodes
(:meth:`~napari_posekit.core.codec.HeatmapCodec.decode_numpy`).

:class:`TorchEngine` runs it eagerly or through a frozen TorchScript graph
per input size, in float32 or bfloat16 autocast: one of the backends
:mod:`~napari_posekit.core.engines` chooses among.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["PoseNetwork", "TorchEngine"]


class PoseNetwork(nn.Module):
    """``uint8 (B, H, W, 3)`` frames to ``(heatmap probabilities, locref)``, float32; H, W multiples of the stride."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).to(torch.float32).div(255.0)
        heatmaps, locref = self.model(self.model.normalize(x))
        return torch.sigmoid(heatmaps.float()), locref.float()


class TorchEngine:
    """A :class:`PoseNetwork` on a torch device: eager, or one frozen graph per input size (``freeze``).

    ``precision`` is ``"float32"`` or ``"bfloat16"`` (autocast; outputs stay float32).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: torch.device | str | None = None,
        precision: str = "float32",
        freeze: bool = True,
    ) -> None:
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', not {precision!r}")
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (first.device if first is not None else "cpu")
        self.model = model.to(self.device).eval()
        if self.device.type != "mps":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = PoseNetwork(self.model).eval()
        self.precision = precision
        self.freeze = bool(freeze)
        self._graphs: dict[tuple[int, int], Any] = {}

    @property
    def name(self) -> str:
        return f"torch-{'frozen' if self.freeze else 'eager'}-{self.precision}"

    @torch.inference_mode()
    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")
        with autocast:
            if not self.freeze:
                heatmaps, locref = self.network(x)
            else:
                key = tuple(x.shape[1:3])
                graph = self._graphs.get(key)
                if graph is None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # trace warnings about sizes fixed per graph
                        graph = torch.jit.freeze(torch.jit.trace(self.network, x[:1], check_trace=False).eval())
                    self._graphs[key] = graph
                heatmaps, locref = graph(x)
        return heatmaps.float().cpu().numpy(), locref.float().cpu().numpy()
