"""Training data: labeled images, train/test splits and augmentation.

Coordinates follow :mod:`napari_posekit.core.codec`: keypoints are ``(x, y)``
in pixels, the centre of pixel ``(row r, column c)`` is at ``x = c, y = r``,
NaN marks a keypoint that is not labeled.

Augmentation runs through :mod:`torchvision.transforms.v2`: the image and its
keypoints (a :class:`torchvision.tv_tensors.KeyPoints`) go through the same
functional calls (crop around the labels, affine scale + rotation, crop to
the training size, left/right flip), so they cannot drift apart.  Keypoints
that end up outside the crop become NaN (not labeled); a flip swaps the labels
of declared symmetric pairs (``leftear`` <-> ``rightear``).  Brightness,
contrast, blur and noise use the same library.

torchvision's affine rotates the image about a point given in pixel-corner
coordinates (pixel ``c`` spans ``[c, c + 1]``) while its flip uses pixel
centres; keypoints are shifted by half a pixel around the affine and crop
calls accordingly, and a test checks the alignment to a tenth of a pixel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._llvm import keep_triton_away_from_loaded_llvm
from .codec import HeatmapCodec
from .images import read_rgb, to_rgb_uint8

__all__ = [
    "Augmentation",
    "LabeledImages",
    "auto_input_scale",
    "load_image",
    "load_project_labels",
    "scale_images",
    "scale_points",
    "split_block",
    "split_random",
    "symmetric_pair_indices",
    "unscale_points",
]


# --------------------------------------------------------------------------- splits
def _check_split_args(n: int, train_fraction: float) -> int:
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 < float(train_fraction) <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    return n


def _n_train(n: int, train_fraction: float) -> int:
    n_train = round(n * float(train_fraction))
    if n >= 2 and train_fraction < 1.0:
        n_train = min(max(n_train, 1), n - 1)  # keep at least one image on each side
    return min(n_train, n)


def split_random(n: int, train_fraction: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """DeepLabCut-style random split: ``(train_indices, test_indices)``, each sorted.

    The same ``n``, ``train_fraction`` and ``seed`` always give the same split.
    """
    n = _check_split_args(n, train_fraction)
    order = np.random.default_rng(seed).permutation(n)
    n_train = _n_train(n, train_fraction)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def split_block(n: int, train_fraction: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous split: the first frames train, the last ones test.

    Labeled frames are often consecutive, so a random split puts near-duplicates
    on both sides; a block split measures generalisation honestly.
    """
    n = _check_split_args(n, train_fraction)
    n_train = _n_train(n, train_fraction)
    return np.arange(n_train), np.arange(n_train, n)


# --------------------------------------------------------------------------- images
def load_image(source: np.ndarray | str | os.PathLike) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB array from an array or an image file.

    Files of any common format go through :func:`napari_posekit.core.images.read_rgb`
    (grayscale, RGBA, 16-bit, JPEG); arrays through
    :func:`~napari_posekit.core.images.to_rgb_uint8`.
    """
    if isinstance(source, (str, os.PathLike)):
        return read_rgb(source)
    return to_rgb_uint8(source)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(3, H, W)`` float32 in [0, 1] from an ``(H, W, 3)`` uint8 array."""
    return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).to(torch.float32) / 255.0


def scale_images(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` float images by ``scale`` (bilinear); training and inference share it.

    The output has ``floor(H * scale) x floor(W * scale)`` pixels and pixel
    centres map as :func:`scale_points` says.
    """
    if scale == 1.0:
        return images
    return F.interpolate(images, scale_factor=float(scale), mode="bilinear", align_corners=False)


def scale_points(xy: np.ndarray, scale: float) -> np.ndarray:
    """Keypoints in the pixels of an image resized by :func:`scale_images`."""
    return (np.asarray(xy, dtype=np.float64) + 0.5) * float(scale) - 0.5


def unscale_points(xy: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`scale_points`."""
    return (np.asarray(xy, dtype=np.float64) + 0.5) / float(scale) - 0.5


def auto_input_scale(xy: np.ndarray, crop: int = 224, fill: float = 0.6, quantile: float = 90.0) -> float:
    """Input scale at which the labeled animal fits a ``crop``-pixel training crop.

    The extent of an image's labels is the larger side of their bounding box;
    the scale brings the ``quantile``-th percentile of the extents down to
    ``fill`` of the crop, so that close-ups (labels spread over most of a
    large frame) are trained on crops that hold the whole animal.  Animals
    that already fit keep full resolution (1.0): scales above 0.85 are
    rounded up to 1, as the augmentation's scale range covers the
    difference.  Images with fewer than two labeled parts do not count.
    """
    xy = np.asarray(xy, dtype=np.float64)
    present = ~np.isnan(xy).any(axis=-1)
    extents = []
    for pts, ok in zip(xy, present):
        if ok.sum() >= 2:
            span = pts[ok].max(axis=0) - pts[ok].min(axis=0)
            extents.append(float(span.max()))
    if not extents:
        return 1.0
    extent = float(np.percentile(extents, quantile))
    if extent <= 0:
        return 1.0
    scale = min(1.0, fill * crop / extent)
    return 1.0 if scale > 0.85 else max(round(scale, 3), 0.05)


# --------------------------------------------------------------------------- project
def load_project_labels(project_folder: str | os.PathLike) -> tuple[list[Path], list[str], np.ndarray]:
    """All human labels of a single-animal DeepLabCut project.

    Reads every ``labeled-data/*/CollectedData_*.h5`` (folders in sorted order)
    and returns ``(image_paths, bodyparts, xy)``: absolute image paths,
    the body parts of ``config.yaml`` and ``xy`` ``(N, K, 2)`` float64 with NaN
    where a body part is not labeled.
    """
    from .label_suspects import read_project_labels

    folder = Path(project_folder).resolve()
    keys, bodyparts, xy = read_project_labels(folder)
    return [folder / Path(*key.split("/")) for key in keys], bodyparts, xy


def symmetric_pair_indices(
    bodyparts: Sequence[str], pairs: Sequence[tuple[str, str]] | Sequence[tuple[int, int]] | None
) -> list[tuple[int, int]]:
    """Symmetric pairs as index pairs (accepts names or indices)."""
    out: list[tuple[int, int]] = []
    for a, b in pairs or ():
        ia = bodyparts.index(a) if isinstance(a, str) else int(a)
        ib = bodyparts.index(b) if isinstance(b, str) else int(b)
        if ia == ib:
            raise ValueError(f"a symmetric pair needs two different body parts, got {a!r}, {b!r}")
        out.append((ia, ib))
    return out


# --------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class Augmentation:
    """Random augmentation settings (all probabilities and ranges per sample).

    ``scale`` and ``rotation_deg`` are the ranges of the random affine
    (multiplying the dataset's base input scale); the crop centre is the centre
    of the labeled points moved by up to ``crop_jitter`` of the crop size.
    Left/right flips (``flip_probability``) only happen when the dataset has
    symmetric pairs.  ``noise_std`` is in units of the [0, 1] intensity range.
    """

    scale: tuple[float, float] = (0.8, 1.25)
    rotation_deg: float = 25.0
    crop_jitter: float = 0.25
    flip_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    blur_probability: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_std: float = 0.02


def _photometric(image: torch.Tensor, aug: Augmentation, rng: np.random.Generator) -> torch.Tensor:
    keep_triton_away_from_loaded_llvm()
    from torchvision.transforms.v2 import functional as TF

    if aug.brightness > 0:
        image = TF.adjust_brightness(image, float(rng.uniform(1 - aug.brightness, 1 + aug.brightness)))
    if aug.contrast > 0:
        image = TF.adjust_contrast(image, float(rng.uniform(1 - aug.contrast, 1 + aug.contrast)))
    if aug.blur_probability > 0 and rng.random() < aug.blur_probability:
        sigma = float(rng.uniform(*aug.blur_sigma))
        k = 2 * math.ceil(2 * sigma) + 1
        image = TF.gaussian_blur(image, kernel_size=[k, k], sigma=[sigma, sigma])
    if aug.noise_std > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        image = image + torch.randn(image.shape, generator=gen) * aug.noise_std
    return image.clamp(0.0, 1.0)


# --------------------------------------------------------------------------- dataset
class LabeledImages(torch.utils.data.Dataset):
    """Labeled images as network inputs and codec targets.

    Parameters
    ----------
    images:
        ``(H, W, 3)`` arrays (or an ``(N, H, W, 3)`` array) or image file paths
        (read when a sample is requested).
    xy:
        ``(N, K, 2)`` keypoints ``(x, y)`` in image pixels, NaN where missing.
    codec:
        Target encoder; its ``input_size`` is the size of every sample.
    mean, std:
        Per-channel normalisation of the model (images in [0, 1]).
    augmentation:
        :class:`Augmentation` for training, or None for a deterministic view.
    input_scale:
        Base image scale before augmentation (0.5 halves the images).
    symmetric_pairs:
        Index pairs (or names with ``bodyparts``) swapped by a left/right flip.
    seed:
        Augmentation seed; with :meth:`set_epoch` each ``(epoch, index)`` gets
        its own reproducible random draw.

    A sample is a dict of tensors: ``image`` (3, H, W) normalised, ``xy``
    (K, 2) keypoints in sample pixels (NaN when missing or outside), and the
    codec targets ``heatmaps``, ``locref``, ``locref_weights``, ``weights``.
    Without augmentation the crop is centred on the labeled points.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | str | os.PathLike] | np.ndarray,
        xy: np.ndarray,
        codec: HeatmapCodec,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        *,
        augmentation: Augmentation | None = None,
        input_scale: float = 1.0,
        symmetric_pairs: Sequence[tuple[int, int]] | Sequence[tuple[str, str]] | None = None,
        bodyparts: Sequence[str] | None = None,
        seed: int = 0,
        cache_bytes: int = 2 * 1024**3,
    ) -> None:
        self.images = images
        self.xy = np.asarray(xy, dtype=np.float64)
        if self.xy.ndim != 3 or self.xy.shape[-1] != 2:
            raise ValueError(f"xy must have shape (N, K, 2), got {self.xy.shape}")
        if len(images) != len(self.xy):
            raise ValueError(f"{len(images)} images but {len(self.xy)} rows of keypoints")
        if input_scale <= 0:
            raise ValueError(f"input_scale must be positive, got {input_scale}")
        self.codec = codec
        self.mean = torch.tensor([float(v) for v in mean]).view(3, 1, 1)
        self.std = torch.tensor([float(v) for v in std]).view(3, 1, 1)
        self.augmentation = augmentation
        self.input_scale = float(input_scale)
        names = list(bodyparts) if bodyparts is not None else []
        self.symmetric_pairs = symmetric_pair_indices(names, symmetric_pairs)
        self.seed = int(seed)
        self.epoch = 0
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[int, torch.Tensor] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.xy)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call once per epoch)."""
        self.epoch = int(epoch)

    def _crop_centre(self, xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        present = ~np.isnan(xy).any(axis=1)
        if present.any():
            pts = xy[present]
            return (pts.min(axis=0) + pts.max(axis=0)) / 2.0
        return np.array([(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0])

    def load(self, index: int) -> np.ndarray:
        """The raw ``(H, W, 3)`` uint8 image ``index``."""
        return load_image(self.images[index])

    def scaled(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        """Image ``index`` resized by ``input_scale`` as ``(3, h, w)`` float in [0, 1], and its keypoints.

        Resizing is the one inference uses (:func:`scale_images`); resized
        images are kept in memory up to ``cache_bytes``.
        """
        tensor = self._cache.get(index)
        if tensor is None:
            tensor = scale_images(_to_tensor(self.load(index))[None], self.input_scale)[0]
            size = tensor.numel() * tensor.element_size()
            if self._cached_bytes + size <= self.cache_bytes:
                self._cache[index] = tensor
                self._cached_bytes += size
        return tensor, scale_points(self.xy[index], self.input_scale)

    def sample_geometry(self, index: int, xy: np.ndarray, image_shape: tuple[int, int]) -> dict[str, Any]:
        """Random draw of sample ``index``: crop centre, ``scale``, ``angle`` (degrees) and ``flip``."""
        centre = self._crop_centre(xy, image_shape)
        aug = self.augmentation
        if aug is None:
            return {"centre": centre, "scale": 1.0, "angle": 0.0, "flip": False}
        rng = np.random.default_rng([self.seed, self.epoch, int(index), 1])
        scale = float(np.exp(rng.uniform(np.log(aug.scale[0]), np.log(aug.scale[1]))))
        angle = float(rng.uniform(-aug.rotation_deg, aug.rotation_deg))
        flip = bool(self.symmetric_pairs) and bool(rng.random() < aug.flip_probability)
        jitter = rng.uniform(-aug.crop_jitter, aug.crop_jitter, size=2) * np.array(self.codec.input_size[::-1]) / scale
        return {"centre": centre + jitter, "scale": scale, "angle": angle, "flip": flip}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        keep_triton_away_from_loaded_llvm()
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        image, xy = self.scaled(index)
        g = self.sample_geometry(index, xy, tuple(image.shape[-2:]))
        out_h, out_w = self.codec.input_size
        scale, angle = g["scale"], g["angle"]
        # a window around the crop centre big enough for any rotation of the output
        turn = abs(math.sin(math.radians(angle))) + abs(math.cos(math.radians(angle)))
        side = math.ceil(max(out_h, out_w) * turn / scale) + 4
        side = max(side, out_h, out_w)
        # torchvision's affine and crop work in pixel-corner coordinates
        cx, cy = float(g["centre"][0]) + 0.5, float(g["centre"][1]) + 0.5
        top, left = math.floor(cy - side / 2), math.floor(cx - side / 2)
        img = tv_tensors.Image(image)
        pts = tv_tensors.KeyPoints(torch.from_numpy(xy + 0.5), canvas_size=tuple(image.shape[-2:]))
        img, pts = TF.crop(img, top, left, side, side), TF.crop(pts, top, left, side, side)
        if scale != 1.0 or angle != 0.0:
            centre = [cx - left, cy - top]
            kwargs = {
                "angle": angle,
                "translate": [side / 2 - centre[0], side / 2 - centre[1]],
                "scale": scale,
                "shear": [0.0, 0.0],
                "center": centre,
            }
            img = TF.affine(img, interpolation=InterpolationMode.BILINEAR, **kwargs)
            pts = TF.affine(pts, **kwargs)
        img, pts = TF.center_crop(img, [out_h, out_w]), TF.center_crop(pts, [out_h, out_w])
        # back to pixel-centre coordinates; points outside the crop are not labeled
        pts = tv_tensors.KeyPoints(pts.as_subclass(torch.Tensor) - 0.5, canvas_size=(out_h, out_w))
        if g["flip"]:
            img, pts = TF.horizontal_flip(img), TF.horizontal_flip(pts)
        out_xy = pts.as_subclass(torch.Tensor).numpy().astype(np.float64)
        outside = (
            (out_xy[:, 0] < -0.5) | (out_xy[:, 0] > out_w - 0.5) | (out_xy[:, 1] < -0.5) | (out_xy[:, 1] > out_h - 0.5)
        )
        out_xy[outside] = np.nan
        if g["flip"]:
            for a, b in self.symmetric_pairs:
                out_xy[[a, b]] = out_xy[[b, a]]
        tensor = img.as_subclass(torch.Tensor)
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(index), 2])
            tensor = _photometric(tensor, self.augmentation, rng)
        targets = self.codec.encode(out_xy)
        sample = {key: torch.from_numpy(value) for key, value in targets.items()}
        sample["image"] = (tensor - self.mean) / self.std
        sample["xy"] = torch.from_numpy(out_xy.astype(np.float32))
        return sample
