"""Training data: labeled images, train/test splits and augmentation.

Coordinates follow :mod:`napari_posekit.core.codec`: keypoints are ``(x, y)``
in pixels, the centre of pixel ``(row r, column c)`` is at ``x = c, y = r``,
NaN marks a keypoint that is not labeled.

Geometric augmentation is one affine matrix per sample (scale, rotation,
optional left/right flip, and a crop of fixed size around the labels), applied
to the image with :func:`torch.nn.functional.grid_sample` and to the keypoints
with the same matrix, so image and labels cannot drift apart.  Keypoints that
end up outside the crop become NaN (not labeled), and flipping swaps the labels
of declared symmetric pairs (``leftear`` <-> ``rightear``).  Photometric
augmentation (brightness, contrast, blur, noise) uses
:mod:`torchvision.transforms.v2.functional`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .codec import HeatmapCodec

__all__ = [
    "Augmentation",
    "LabeledImages",
    "affine_matrix",
    "load_image",
    "load_project_labels",
    "split_block",
    "split_random",
    "symmetric_pair_indices",
    "transform_points",
    "warp_image",
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
    n_train = int(round(n * float(train_fraction)))
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
    """An ``(H, W, 3)`` uint8 RGB array from an array or an image file."""
    if isinstance(source, (str, os.PathLike)):
        from PIL import Image

        with Image.open(source) as im:
            array = np.asarray(im.convert("RGB"))
    else:
        array = np.asarray(source)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0.0) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    return array


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """``(3, H, W)`` float32 in [0, 1] from an ``(H, W, 3)`` uint8 array."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(torch.float32) / 255.0


# --------------------------------------------------------------------------- project
def load_project_labels(project_folder: str | os.PathLike) -> tuple[list[Path], list[str], np.ndarray]:
    """All human labels of a single-animal DeepLabCut project.

    Reads every ``labeled-data/*/CollectedData_*.h5`` (folders in sorted order)
    and returns ``(image_paths, bodyparts, xy)``: absolute image paths,
    the body parts of ``config.yaml`` and ``xy`` ``(N, K, 2)`` float64 with NaN
    where a body part is not labeled.
    """
    from .project import ProjectError, collected_to_arrays, config_bodyparts, read_collected, read_config

    folder = Path(project_folder).resolve()
    bodyparts = list(config_bodyparts(read_config(folder)))
    files = sorted((folder / "labeled-data").glob("*/CollectedData_*.h5"))
    if not files:
        raise ProjectError("no labeled-data/*/CollectedData_*.h5 files: label some frames first", folder)
    paths: list[Path] = []
    blocks: list[np.ndarray] = []
    for file in files:
        keys, parts, xy = collected_to_arrays(read_collected(file))
        if len(keys) == 0:
            continue
        missing = [bp for bp in bodyparts if bp not in parts]
        if missing:
            raise ProjectError(f"body parts {missing} of config.yaml are missing from the labels", file)
        order = [parts.index(bp) for bp in bodyparts]
        blocks.append(xy[:, order])
        paths.extend(folder / Path(*key.replace("\\", "/").split("/")) for key in keys)
    xy_all = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, len(bodyparts), 2))
    return paths, bodyparts, xy_all.astype(np.float64)


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


# --------------------------------------------------------------------------- geometry
def affine_matrix(
    centre: tuple[float, float],
    out_size: tuple[int, int],
    *,
    scale: float = 1.0,
    rotation_deg: float = 0.0,
    flip: bool = False,
) -> np.ndarray:
    """3x3 matrix mapping input ``(x, y, 1)`` to output pixel coordinates.

    The input point ``centre`` lands on the centre of the ``out_size`` ``(H, W)``
    output; around it the image is mirrored left/right (``flip``), scaled and
    rotated by ``rotation_deg`` (counter-clockwise as displayed).
    """
    h, w = out_size
    cx, cy = centre
    to_origin = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    mirror = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
    a = math.radians(rotation_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    # y points down, so a counter-clockwise rotation as displayed uses -angle
    rotate = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
    to_out = np.array([[1.0, 0.0, (w - 1) / 2.0], [0.0, 1.0, (h - 1) / 2.0], [0.0, 0.0, 1.0]])
    return to_out @ rotate @ mirror @ to_origin


def transform_points(xy: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """Apply ``matrix`` to ``(K, 2)`` points; with ``out_size``, points outside become NaN."""
    xy = np.asarray(xy, dtype=np.float64)
    out = xy @ matrix[:2, :2].T + matrix[:2, 2]
    if out_size is not None:
        h, w = out_size
        outside = (out[:, 0] < -0.5) | (out[:, 0] > w - 0.5) | (out[:, 1] < -0.5) | (out[:, 1] > h - 0.5)
        out[outside] = np.nan
    return out


def warp_image(image: torch.Tensor, matrix: np.ndarray, out_size: tuple[int, int]) -> torch.Tensor:
    """Resample ``(C, H, W)`` ``image`` so that output pixel ``p`` shows input ``matrix^-1 p``.

    Bilinear interpolation; outside the input is filled with zeros.
    """
    c, h_in, w_in = image.shape
    h, w = out_size
    inverse = torch.as_tensor(np.linalg.inv(matrix), dtype=torch.float32)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    ones = torch.ones_like(xs)
    src = torch.einsum("ij,jhw->ihw", inverse, torch.stack([xs, ys, ones]))
    # align_corners=True: -1 and +1 are the centres of the first and last pixels
    gx = src[0] * (2.0 / max(w_in - 1, 1)) - 1.0
    gy = src[1] * (2.0 / max(h_in - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None]
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


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

    def sample_geometry(self, index: int, image_shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
        """The affine matrix (image -> sample pixels) of sample ``index`` and whether it flips."""
        xy = self.xy[index]
        out_size = self.codec.input_size
        centre = self._crop_centre(xy, image_shape)
        aug = self.augmentation
        if aug is None:
            return affine_matrix(tuple(centre), out_size, scale=self.input_scale), False
        rng = np.random.default_rng([self.seed, self.epoch, int(index), 1])
        scale = self.input_scale * float(np.exp(rng.uniform(np.log(aug.scale[0]), np.log(aug.scale[1]))))
        rotation = float(rng.uniform(-aug.rotation_deg, aug.rotation_deg))
        flip = bool(self.symmetric_pairs) and bool(rng.random() < aug.flip_probability)
        jitter = rng.uniform(-aug.crop_jitter, aug.crop_jitter, size=2) * np.array(out_size[::-1]) / scale
        matrix = affine_matrix(tuple(centre + jitter), out_size, scale=scale, rotation_deg=rotation, flip=flip)
        return matrix, flip

    def load(self, index: int) -> np.ndarray:
        """The raw ``(H, W, 3)`` uint8 image ``index``."""
        return load_image(self.images[index])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.load(index)
        matrix, flip = self.sample_geometry(index, image.shape[:2])
        out_size = self.codec.input_size
        xy = transform_points(self.xy[index], matrix, out_size)
        if flip:
            xy = xy.copy()
            for a, b in self.symmetric_pairs:
                xy[[a, b]] = xy[[b, a]]
        tensor = warp_image(_to_tensor(image), matrix, out_size)
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, self.epoch, int(index), 2])
            tensor = _photometric(tensor, self.augmentation, rng)
        targets = self.codec.encode(xy)
        sample = {key: torch.from_numpy(value) for key, value in targets.items()}
        sample["image"] = (tensor - self.mean) / self.std
        sample["xy"] = torch.from_numpy(xy.astype(np.float32))
        return sample
