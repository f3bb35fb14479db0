"""Keypoint codec: training targets from keypoints, keypoints from network outputs.

One :class:`HeatmapCodec` object does both directions, so training and
inference share one coordinate convention and cannot drift apart.  A
checkpoint stores it with :meth:`HeatmapCodec.to_dict`.

Coordinate convention
---------------------
Keypoints are ``(x, y)`` in input-image pixels.  The centre of pixel
``(row r, column c)`` is at ``x = c, y = r``; the image covers
``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.

The network output has one cell per ``stride x stride`` block of input
pixels.  Cell ``(i, j)`` covers input pixels ``j*stride ... j*stride +
stride - 1`` (and the same for rows), so its centre is at::

    x = j * stride + (stride - 1) / 2,    y = i * stride + (stride - 1) / 2

The output grid has ``ceil(H / stride) x ceil(W / stride)`` cells.

Targets
-------
* ``heatmaps`` (K, h, w): a Gaussian ``exp(-d^2 / (2 sigma^2))`` around each
  keypoint, ``d`` measured in cells (so ``sigma`` is in heatmap pixels).
* ``locref`` (2K, h, w): location refinement; channel ``2k`` holds
  ``(x_k - cell_x) / locref_std`` and channel ``2k + 1`` holds
  ``(y_k - cell_y) / locref_std`` for cells within ``locref_radius`` cells of
  keypoint ``k``, zero elsewhere.
* ``locref_weights`` (2K, h, w): 1 where the locref target is defined, else 0;
  the locref loss should be weighted by it.
* ``weights`` (K,): 1 for labelled keypoints, 0 for missing ones.

A missing keypoint (any NaN coordinate) gets all-zero heatmap, locref and
locref weights and weight 0.  Keypoints outside the image are encoded as they
are: only the part of their Gaussian that falls on the grid remains.

Decoding
--------
:meth:`HeatmapCodec.decode` takes the cell with the largest heatmap value
per keypoint; every cell within ``refine_radius`` of it votes for
``cell centre + offset * locref_std`` and the votes are averaged with the
heatmap values as weights (``refine_radius=0``: the peak cell's vote).  The confidence is the heatmap value at
that cell (apply a sigmoid first, or pass ``from_logits=True``, when the
network gives logits).  A position is always returned; a keypoint whose
confidence is below ``min_confidence`` gets NaN coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made: decode_numpy runs without it
    import torch

__all__ = ["HeatmapCodec"]


@dataclass(frozen=True)
class HeatmapCodec:
    """Encode keypoints into heatmap + location-refinement targets and decode them back.

    Parameters
    ----------
    input_size:
        ``(H, W)`` of the network input in pixels.
    stride:
        Output stride of the network (input pixels per heatmap cell).
    sigma:
        Standard deviation of the target Gaussian, in heatmap cells.
    locref_std:
        Scale dividing the location-refinement offsets (input pixels).
    locref_radius:
        Radius, in heatmap cells, around each keypoint within which locref
        targets are defined.
    refine_radius:
        Decoding averages the locref votes of the cells within this many
        cells of the peak (Chebyshev distance), weighted by their heatmap
        values; 0 uses the peak cell alone.
    """

    input_size: tuple[int, int]
    stride: int
    sigma: float = 2.0
    locref_std: float = 7.2801
    locref_radius: float = 3.0
    refine_radius: int = 1

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.input_size)
        if h <= 0 or w <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size!r}")
        if int(self.stride) != self.stride or self.stride < 1:
            raise ValueError(f"stride must be a positive integer, got {self.stride!r}")
        if self.sigma <= 0 or self.locref_std <= 0 or self.locref_radius <= 0:
            raise ValueError("sigma, locref_std and locref_radius must be positive")
        object.__setattr__(self, "input_size", (h, w))
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "locref_std", float(self.locref_std))
        object.__setattr__(self, "locref_radius", float(self.locref_radius))
        if int(self.refine_radius) != self.refine_radius or not 0 <= self.refine_radius < self.locref_radius:
            raise ValueError(f"refine_radius must be an integer in [0, locref_radius), got {self.refine_radius!r}")
        object.__setattr__(self, "refine_radius", int(self.refine_radius))

    # ------------------------------------------------------------------ geometry
    @property
    def output_size(self) -> tuple[int, int]:
        """``(h, w)`` of the heatmap grid: ``ceil(H / stride), ceil(W / stride)``."""
        h, w = self.input_size
        return math.ceil(h / self.stride), math.ceil(w / self.stride)

    @property
    def offset(self) -> float:
        """Input coordinate of the centre of cell 0: ``(stride - 1) / 2``."""
        return (self.stride - 1) / 2.0

    def cell_centres(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Input-pixel coordinates of the cell centres: ``(xs (w,), ys (h,))``."""
        import torch

        h, w = self.output_size
        xs = torch.arange(w, dtype=torch.float32, device=device) * self.stride + self.offset
        ys = torch.arange(h, dtype=torch.float32, device=device) * self.stride + self.offset
        return xs, ys

    # ------------------------------------------------------------------ encoding
    def encode(self, xy: np.ndarray) -> dict[str, np.ndarray]:
        """Targets for one image.

        ``xy`` is ``(K, 2)`` float ``(x, y)`` in input pixels; NaN marks a
        missing keypoint.  Returns float32 numpy arrays ``heatmaps`` (K, h, w),
        ``locref`` (2K, h, w), ``locref_weights`` (2K, h, w) and ``weights`` (K,).
        """
        import torch

        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"xy must have shape (K, 2), got {xy.shape}")
        out = self.encode_batch(torch.from_numpy(xy)[None])
        return {key: value[0].numpy() for key, value in out.items()}

    def encode_batch(self, xy: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batched targets as float32 tensors on ``xy``'s device (for training).

        ``xy`` is ``(B, K, 2)``; returns ``heatmaps`` (B, K, h, w), ``locref``
        (B, 2K, h, w), ``locref_weights`` (B, 2K, h, w) and ``weights`` (B, K).
        """
        import torch

        xy = torch.as_tensor(xy)
        if xy.ndim != 3 or xy.shape[-1] != 2:
            raise ValueError(f"xy must have shape (B, K, 2), got {tuple(xy.shape)}")
        b, k, _ = xy.shape
        h, w = self.output_size
        device = xy.device
        xy = xy.to(torch.float32)
        present = ~torch.isnan(xy).any(dim=-1)  # (B, K)
        xy0 = torch.where(present[..., None], xy, torch.zeros_like(xy))

        xs, ys = self.cell_centres(device)
        # offsets (keypoint - cell centre) in input pixels, separable in x and y
        dx = xy0[..., 0, None] - xs  # (B, K, w)
        dy = xy0[..., 1, None] - ys  # (B, K, h)
        dx_cells2 = (dx / self.stride) ** 2
        dy_cells2 = (dy / self.stride) ** 2
        d2 = dy_cells2[..., :, None] + dx_cells2[..., None, :]  # (B, K, h, w)

        mask = present[..., None, None].to(torch.float32)
        heatmaps = torch.exp(-d2 / (2.0 * self.sigma**2)) * mask
        near = (d2 <= self.locref_radius**2).to(torch.float32) * mask

        lx = (dx / self.locref_std)[..., None, :].expand(b, k, h, w) * near
        ly = (dy / self.locref_std)[..., :, None].expand(b, k, h, w) * near
        locref = torch.stack([lx, ly], dim=2).reshape(b, 2 * k, h, w)
        locref_weights = torch.stack([near, near], dim=2).reshape(b, 2 * k, h, w)
        return {
            "heatmaps": heatmaps,
            "locref": locref,
            "locref_weights": locref_weights,
            "weights": present.to(torch.float32),
        }

    # ------------------------------------------------------------------ decoding
    def decode(
        self,
        heatmaps: torch.Tensor | np.ndarray,
        locref: torch.Tensor | np.ndarray | None,
        *,
        from_logits: bool = False,
        min_confidence: float | None = None,
    ) -> tuple[Any, Any]:
        """Keypoints from network outputs.

        Parameters
        ----------
        heatmaps:
            ``(B, K, h, w)`` heatmap values in [0, 1] (or logits with
            ``from_logits=True``).
        locref:
            ``(B, 2K, h, w)`` location refinement in the layout of the targets,
            or None to return cell centres only.
        from_logits:
            Apply a sigmoid to ``heatmaps`` first.
        min_confidence:
            When given, keypoints with confidence below it get NaN coordinates.

        Returns
        -------
        ``(xy, confidence)``: ``(B, K, 2)`` ``(x, y)`` in input pixels and
        ``(B, K)``; numpy float32 arrays for numpy input, tensors otherwise.
        """
        import torch

        as_numpy = isinstance(heatmaps, np.ndarray)
        hm = torch.as_tensor(heatmaps)
        if hm.ndim != 4:
            raise ValueError(f"heatmaps must have shape (B, K, h, w), got {tuple(hm.shape)}")
        hm = hm.detach().to(torch.float32)
        if from_logits:
            hm = torch.sigmoid(hm)
        b, k, h, w = hm.shape

        confidence, flat = hm.reshape(b, k, h * w).max(dim=-1)  # (B, K)
        row = torch.div(flat, w, rounding_mode="floor")
        col = flat - row * w
        x = col.to(torch.float32) * self.stride + self.offset
        y = row.to(torch.float32) * self.stride + self.offset

        if locref is not None:
            lr = torch.as_tensor(locref, device=hm.device).detach().to(torch.float32)
            if lr.shape != (b, 2 * k, h, w):
                raise ValueError(f"locref must have shape {(b, 2 * k, h, w)}, got {tuple(lr.shape)}")
            lr = lr.reshape(b, k, 2, h * w)
            flat_hm = hm.reshape(b, k, h * w)
            r = self.refine_radius
            sum_w = torch.zeros_like(x)
            sum_x = torch.zeros_like(x)
            sum_y = torch.zeros_like(y)
            for dr in range(-r, r + 1):
                for dc in range(-r, r + 1):
                    rr, cc = row + dr, col + dc
                    valid = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                    index = (rr.clamp(0, h - 1) * w + cc.clamp(0, w - 1))[..., None]  # (B, K, 1)
                    weight = flat_hm.gather(-1, index)[..., 0] * valid
                    off = lr.gather(-1, index[:, :, None, :].expand(b, k, 2, 1))[..., 0] * self.locref_std
                    sum_w = sum_w + weight
                    sum_x = sum_x + weight * (x + dc * self.stride + off[..., 0])
                    sum_y = sum_y + weight * (y + dr * self.stride + off[..., 1])
            ok = sum_w > 0
            x = torch.where(ok, sum_x / sum_w.clamp(min=1e-12), x)
            y = torch.where(ok, sum_y / sum_w.clamp(min=1e-12), y)

        xy = torch.stack([x, y], dim=-1)
        if min_confidence is not None:
            xy = torch.where((confidence < min_confidence)[..., None], torch.full_like(xy, float("nan")), xy)
        if as_numpy:
            return xy.cpu().numpy(), confidence.cpu().numpy()
        return xy, confidence

    def decode_numpy(self, heatmaps: np.ndarray, locref: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`decode` in NumPy alone, for heatmap probabilities: ``(xy (B, K, 2) float64, confidence (B, K))``.

        The same peak and the same weighted vote of the cells within
        ``refine_radius`` of it; analysis runs it so that no torch is needed.
        """
        hm = np.asarray(heatmaps, dtype=np.float32)
        if hm.ndim != 4:
            raise ValueError(f"heatmaps must have shape (B, K, h, w), got {hm.shape}")
        b, k, h, w = hm.shape
        flat_hm = hm.reshape(b, k, h * w)
        flat = flat_hm.argmax(axis=-1)  # (B, K)
        confidence = np.take_along_axis(flat_hm, flat[..., None], axis=-1)[..., 0]
        row, col = np.divmod(flat, w)
        x = (col * self.stride + self.offset).astype(np.float32)
        y = (row * self.stride + self.offset).astype(np.float32)
        if locref is not None:
            lr = np.asarray(locref, dtype=np.float32)
            if lr.shape != (b, 2 * k, h, w):
                raise ValueError(f"locref must have shape {(b, 2 * k, h, w)}, got {lr.shape}")
            lr = lr.reshape(b, k, 2, h * w)
            r = self.refine_radius
            sum_w = np.zeros_like(x)
            sum_x = np.zeros_like(x)
            sum_y = np.zeros_like(y)
            for dr in range(-r, r + 1):
                for dc in range(-r, r + 1):
                    rr, cc = row + dr, col + dc
                    valid = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                    index = (np.clip(rr, 0, h - 1) * w + np.clip(cc, 0, w - 1))[..., None]  # (B, K, 1)
                    weight = np.take_along_axis(flat_hm, index, axis=-1)[..., 0] * valid
                    off = np.take_along_axis(lr, index[:, :, None, :], axis=-1)[..., 0] * np.float32(self.locref_std)
                    sum_w = sum_w + weight
                    sum_x = sum_x + weight * (x + np.float32(dc * self.stride) + off[..., 0])
                    sum_y = sum_y + weight * (y + np.float32(dr * self.stride) + off[..., 1])
            ok = sum_w > 0
            x = np.where(ok, sum_x / np.maximum(sum_w, 1e-12), x)
            y = np.where(ok, sum_y / np.maximum(sum_w, 1e-12), y)
        return np.stack([x, y], axis=-1).astype(np.float64), confidence

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/YAML-friendly description (for checkpoints)."""
        return {
            "type": "HeatmapCodec",
            "input_size": list(self.input_size),
            "stride": self.stride,
            "sigma": self.sigma,
            "locref_std": self.locref_std,
            "locref_radius": self.locref_radius,
            "refine_radius": self.refine_radius,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeatmapCodec:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        kind = data.pop("type", "HeatmapCodec")
        if kind != "HeatmapCodec":
            raise ValueError(f"not a HeatmapCodec description: type={kind!r}")
        data["input_size"] = tuple(data["input_size"])
        return cls(**data)
