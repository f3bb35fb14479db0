"""Label QA's appearance check: does each label sit on something that looks like its body part?

No model is trained.  Every labeled image is cropped around its labels and
resized so that the animal has about the same size in every crop (one scale
for the project, from the labels' spread, like :func:`.data.auto_input_scale`);
an ImageNet-pretrained EfficientNet-Lite0 (the weights the project ships)
turns the crops into features: its stride-4 level (fine detail) next to its
stride-16 level brought up to stride 4 (what is around), each L2-normalised.
On openfield the stride-4 level alone told moved labels from good ones better
than stride 8; adding the stride-16 context flagged fewer good labels..  The feature under each label is
sampled (bilinear) and L2-normalised.

A body part's label is typical when its feature is close to the same part's
features in the other images: the mean cosine similarity to its
:data:`NEIGHBOURS` nearest neighbours.  That similarity becomes a robust
z-score against the part's own spread (median and MAD over the images), less
the image's other labels' median z-score when positive (a view unlike the
others makes every label look odd, a misplaced label stands out alone), and
:data:`FLAG_Z` of it is the flag threshold (score
:data:`~.label_suspects.SUSPECT_SCORE`).  A flagged label's image is searched
nearby (up to :data:`SEARCH_REACH` times the parts' typical distance) for the
point that looks most like the part; when that point is typical, it is the
suggested fix.

torch and timm are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .label_suspects import SUSPECT_SCORE, LabelSet, Suspect

__all__ = ["check_appearance", "judge_appearance"]

BACKBONE = "efficientnet_lite0"
ANIMAL_PX = 96.0
"""The animal's typical extent (larger side of the labels' bounding box) in the crops, in pixels."""
MARGIN = 0.35
"""Crop margin on each side of the labels, as a share of the typical extent."""
MAX_CROP = 384
"""Largest crop side in pixels (animals much larger than usual are shrunk to fit)."""
NEIGHBOURS = 5
"""How many of the part's other labels a label is compared with."""
MIN_IMAGES = 8
"""A body part labeled in fewer images is not judged."""
FLAG_Z = 4.0
"""Robust z-score of a label's dissimilarity at which it is flagged."""
MAX_SCORE = 4.0
"""Scores stop here: past it a label is plainly off, and a larger z says little more."""
SEARCH_REACH = 1.5
"""A fix is searched within this many typical distances to the nearest other part (1/4 to 3/4 of the animal)."""
FIX_Z = 1.5
"""A nearby point is suggested when its own z-score is at most this..."""
FIX_SHARE = 0.75
"""...or when it makes up this share of the label's shortfall from the part's typical similarity."""
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


@dataclass
class _Crops:
    """Feature maps of every usable image and where the labels fall in them."""

    rows: np.ndarray  # (M,) image rows
    transform: np.ndarray  # (M, 4) sx, sy, tx, ty: crop x = sx * image x + tx, crop y = sy * image y + ty
    features: object  # torch (M, C, h, w), not normalised
    size: int  # crop side in pixels
    stride: int


@lru_cache(maxsize=2)
def _backbone(pretrained: bool = True):
    """The backbone's stem and blocks to stride 4, and the blocks on to stride 16 (folded, channels-last)."""
    import torch
    from torch import nn

    from .model import create_backbone

    net = create_backbone(BACKBONE, pretrained=pretrained, out_indices=None).eval()
    blocks = list(net.blocks)
    fine = nn.Sequential(net.conv_stem, net.bn1, *blocks[:2]).eval()
    context = nn.Sequential(*blocks[2:5]).eval()
    with torch.no_grad():
        _fold_batch_norms(fine)
        _fold_batch_norms(context)
    return fine.to(memory_format=torch.channels_last), context.to(memory_format=torch.channels_last)


def _two_levels(fine, context, x):
    """Stride-4 features and the stride-16 ones brought up to them, each L2-normalised, side by side."""
    import torch
    import torch.nn.functional as F

    local = fine(x)
    wide = F.interpolate(context(local), size=local.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([F.normalize(local, dim=1), F.normalize(wide, dim=1)], dim=1)


def _fold_batch_norms(module) -> None:
    """Fold each batch norm that directly follows a convolution into it (inference only; same output)."""
    from torch import nn

    children = list(module.named_children())
    for (_, conv), (name, norm) in itertools.pairwise(children):
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
            scale = norm.weight / (norm.running_var + norm.eps).sqrt()
            bias = conv.bias if conv.bias is not None else __import__("torch").zeros_like(norm.running_mean)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            after = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None]
            setattr(module, name, nn.Sequential(*after))
    for _, child in module.named_children():
        _fold_batch_norms(child)


def _extents(xy: np.ndarray) -> np.ndarray:
    """Each image's label extent (NaN with fewer than two labels)."""
    ok = np.isfinite(xy).all(axis=-1)
    out = np.full(len(xy), np.nan)
    for i, (pts, good) in enumerate(zip(xy, ok, strict=True)):
        if good.sum() >= 2:
            out[i] = float((pts[good].max(axis=0) - pts[good].min(axis=0)).max())
    return out


def _read_images(labels: LabelSet, rows: np.ndarray) -> tuple[list[int], list[np.ndarray], list[str]]:
    from concurrent.futures import ThreadPoolExecutor

    from .images import read_rgb

    def read(i: int):
        try:
            return read_rgb(labels.image_path(int(i)))
        except (OSError, ValueError):
            return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        images = list(pool.map(read, rows))
    kept = [int(i) for i, im in zip(rows, images, strict=True) if im is not None]
    missing = [labels.images[int(i)] for i, im in zip(rows, images, strict=True) if im is None]
    return kept, [im for im in images if im is not None], missing


def _crops(labels: LabelSet, animal_px: float, pretrained: bool = True) -> tuple[_Crops | None, list[str]]:
    """Crop, resize and run the backbone on every image with labels."""
    import cv2
    import torch

    xy = labels.xy
    labeled = np.isfinite(xy).all(axis=-1)
    rows = np.flatnonzero(labeled.any(axis=1))
    extents = _extents(xy)
    if not np.isfinite(extents).any():
        return None, ["appearance: no image has two labeled body parts to size the animal by"]
    typical = float(np.nanmedian(extents))
    typical = max(typical, 4.0)
    scale = animal_px / typical
    wide = float(np.nanpercentile(extents, 95))
    size = int(math.ceil(min(MAX_CROP, (wide + 2 * MARGIN * typical) * scale) / 8) * 8)
    rows, images, missing = _read_images(labels, rows)
    notes = []
    if missing:
        notes.append(f"appearance: {len(missing)} image files missing or unreadable, e.g. {missing[0]}")
    if not rows:
        return None, notes
    rows_arr = np.asarray(rows)
    batch = np.empty((len(rows), size, size, 3), np.uint8)
    transforms = np.empty((len(rows), 4))
    for j, (i, image) in enumerate(zip(rows, images, strict=True)):
        pts = xy[i][labeled[i]]
        centre = (pts.max(axis=0) + pts.min(axis=0)) / 2
        ext = extents[i] if np.isfinite(extents[i]) else typical
        s = min(scale, (size - 2 * MARGIN * typical * scale) / max(ext, 1e-6)) if ext * scale > size else scale
        if s < 0.75:  # shrink with area averaging first, so that thin structures do not alias
            small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            fx, fy = small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]
            image, s = small, 1.0
            centre = (centre + 0.5) * np.array([fx, fy]) - 0.5
        else:
            fx = fy = 1.0
        offset = size / 2 - 0.5 - s * centre  # image pixel centres to crop pixel centres
        matrix = np.array([[s, 0, offset[0]], [0, s, offset[1]]])
        fill = tuple(float(v) for v in image[::16, ::16].reshape(-1, 3).mean(axis=0))
        batch[j] = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=fill)
        # crop position of an original pixel centre p: s * ((p + 0.5) * f - 0.5) + offset
        transforms[j] = (s * fx, s * fy, offset[0] + s * (0.5 * fx - 0.5), offset[1] + s * (0.5 * fy - 0.5))
    net = _backbone(pretrained)
    mean = torch.tensor(_MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(_STD).view(1, 3, 1, 1) * 255
    with torch.inference_mode():
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        feats = torch.cat([_two_levels(*net, part) for part in x.split(32)])
    stride = size // feats.shape[-1]
    return _Crops(rows_arr, transforms, feats.contiguous(), size, stride), notes


def _sample(crops: _Crops, points: np.ndarray):
    """L2-normalised features at ``points`` ``(M, P, 2)`` crop pixels: ``(M, P, C)``."""
    import torch
    import torch.nn.functional as F

    grid = torch.from_numpy((2 * (points + 0.5) / crops.size - 1).astype(np.float32))[:, None]  # (M, 1, P, 2)
    with torch.inference_mode():
        got = F.grid_sample(crops.features, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return F.normalize(got[:, :, 0].permute(0, 2, 1), dim=-1)


def _knn_similarity(query, bank, exclude_self: bool, k: int):
    """Mean cosine similarity of each query to its ``k`` most similar bank rows."""
    import torch

    sims = query @ bank.T
    if exclude_self:
        sims.fill_diagonal_(-2.0)
    k = min(k, bank.shape[0] - int(exclude_self))
    return torch.topk(sims, k, dim=-1).values.mean(dim=-1)


@dataclass
class _Judged:
    """Every judged label's similarity and z-score, and what the search needs."""

    crops: _Crops
    points: np.ndarray  # (M, K, 2) crop pixels, NaN: not labeled or outside the crop
    similarity: np.ndarray  # (N, K) kNN similarity, NaN: not judged
    z: np.ndarray  # (N, K) robust z-score of dissimilarity, NaN: not judged
    typical: np.ndarray  # (K,) median similarity
    spread: np.ndarray  # (K,) robust spread of the similarity
    bank: dict  # part -> (torch (n, C) features, (n,) image rows)


def _judge(labels: LabelSet, animal_px: float = ANIMAL_PX, pretrained: bool = True) -> tuple[_Judged | None, list[str]]:
    crops, notes = _crops(labels, animal_px, pretrained)
    if crops is None:
        return None, notes
    n, k = labels.xy.shape[:2]
    sx, sy, tx, ty = crops.transform.T
    xy = labels.xy[crops.rows]
    points = np.stack([xy[..., 0] * sx[:, None] + tx[:, None], xy[..., 1] * sy[:, None] + ty[:, None]], axis=-1)
    inside = np.isfinite(points).all(axis=-1) & (points >= 0).all(axis=-1) & (points <= crops.size - 1).all(axis=-1)
    points[~inside] = np.nan
    feats = _sample(crops, np.nan_to_num(points, nan=0.0))
    similarity = np.full((n, k), np.nan)
    z = np.full((n, k), np.nan)
    typical = np.full(k, np.nan)
    spread = np.full(k, np.nan)
    bank = {}
    for part, name in enumerate(labels.bodyparts):
        idx = np.flatnonzero(inside[:, part])
        if len(idx) < MIN_IMAGES:
            notes.append(f"appearance: {name} is labeled in {len(idx)} images with pixels, too few to judge")
            continue
        f = feats[idx, part]
        sim = _knn_similarity(f, f, True, NEIGHBOURS).numpy().astype(np.float64)
        med = float(np.median(sim))
        mad = max(1.4826 * float(np.median(np.abs(sim - med))), 0.01)
        rows = crops.rows[idx]
        similarity[rows, part] = sim
        z[rows, part] = (med - sim) / mad
        typical[part], spread[part] = med, mad
        bank[part] = (f, idx)
    return _Judged(crops, points, similarity, _against_own_image(z), typical, spread, bank), notes


def _against_own_image(z: np.ndarray) -> np.ndarray:
    """Each z-score less how unusual the image's other labels look (its median z, when positive).

    A view unlike the others (a rearing animal, a blurred frame) makes every
    label of the image look odd; a label off its body part stands out alone.
    """
    out = z.copy()
    if z.shape[1] < 2:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for part in range(z.shape[1]):
            others = np.nanmedian(np.delete(z, part, axis=1), axis=1)
            out[:, part] -= np.clip(np.nan_to_num(others, nan=0.0), 0.0, None)
    return out


def _reach(labels: LabelSet) -> np.ndarray:
    """Per body part, how far (image px) a fix is searched: ``SEARCH_REACH`` times its usual nearest-part distance."""
    xy = labels.xy
    d = np.linalg.norm(xy[:, :, None] - xy[:, None], axis=-1)
    k = xy.shape[1]
    d[:, np.arange(k), np.arange(k)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        nearest = np.nanmedian(np.nanmin(d, axis=2), axis=0) if k > 1 else np.full(k, np.nan)
        extent = float(np.nanmedian(_extents(xy)))
    reach = SEARCH_REACH * nearest
    return np.clip(np.nan_to_num(reach, nan=0.5 * extent), 0.25 * extent, 0.75 * extent)


def _best_nearby(judged: _Judged, labels: LabelSet, m: int, part: int, reach: float) -> tuple[np.ndarray, float] | None:
    """The image point near label ``(m, part)`` that looks most like the part, and its similarity."""
    import torch
    import torch.nn.functional as F

    crops = judged.crops
    sx, sy, tx, ty = crops.transform[m]
    centre = judged.points[m, part]
    fmap = crops.features[m]
    h, w = fmap.shape[-2:]
    cy, cx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) * crops.stride + (crops.stride - 1) / 2,
        torch.arange(w, dtype=torch.float64) * crops.stride + (crops.stride - 1) / 2,
        indexing="ij",
    )
    near = ((cx - centre[0]) / sx) ** 2 + ((cy - centre[1]) / sy) ** 2 <= reach**2
    if not bool(near.any()):
        return None
    feats, images = judged.bank[part]
    others = feats[torch.from_numpy(images != m)]
    with torch.inference_mode():
        cand = F.normalize(fmap[:, near].T, dim=-1)
        sim = _knn_similarity(cand, others, False, NEIGHBOURS)
    best = int(torch.argmax(sim))
    x = (float(cx[near][best]) - tx) / sx
    y = (float(cy[near][best]) - ty) / sy
    return np.array([x, y]), float(sim[best])


def check_appearance(labels: LabelSet) -> tuple[list[Suspect], list[str]]:
    """Labels whose pixels do not look like the same body part in the other images.

    See the module notes for how; one suspect per flagged label, with the
    nearby point that looks most like the part as the suggested fix when it
    is typical of the part.
    """
    suspects, notes, _judged = judge_appearance(labels)
    return suspects, notes


def judge_appearance(labels: LabelSet) -> tuple[list[Suspect], list[str], bool]:
    """:func:`check_appearance` and whether it judged any body part."""
    if labels.root is None:
        return [], ["appearance: these labels have no project folder, so no image files to look at"], False
    n_images = int(np.isfinite(labels.xy).all(axis=-1).any(axis=1).sum()) if labels.xy.size else 0
    if n_images < MIN_IMAGES:
        note = f"appearance: {n_images} labeled images, at least {MIN_IMAGES} needed to learn what parts look like"
        return [], [note], False
    try:
        judged, notes = _judge(labels)
    except (ImportError, RuntimeError) as err:  # no torch/timm or no packaged weights
        return [], [f"appearance: the image features are not available ({err})"], False
    if judged is None or not judged.bank:
        return [], notes, False
    reach = _reach(labels)
    suspects = []
    rows = {int(r): m for m, r in enumerate(judged.crops.rows)}
    for i, part in zip(*np.nonzero(np.nan_to_num(judged.z, nan=-np.inf) >= FLAG_Z), strict=True):
        suspects.append(_suspect(judged, labels, int(i), int(part), rows[int(i)], float(reach[part])))
    return suspects, notes, True


def _suspect(judged: _Judged, labels: LabelSet, i: int, part: int, m: int, reach: float) -> Suspect:
    name = labels.bodyparts[part]
    sim, typical, z = judged.similarity[i, part], judged.typical[part], judged.z[i, part]
    reason = f"{name} does not look like {name} in the other images (similarity {sim:.2f}, typical {typical:.2f})"
    suggested = None
    found = _best_nearby(judged, labels, m, part, reach)
    if found is not None:
        where, best = found
        best_z = (typical - best) / judged.spread[part]
        away = float(np.linalg.norm(where - labels.xy[i, part]))
        closes = (best - sim) / max(typical - sim, 1e-6)  # share of the gap to a typical label it makes up
        typical_enough = best_z <= FIX_Z or closes >= FIX_SHARE
        if typical_enough and best - sim >= 2 * judged.spread[part] and away >= 2:
            suggested = where[None]
            reason += f"; the best match nearby is {away:.0f} px away (similarity {best:.2f})"
    score = float(np.clip(z / FLAG_Z, SUSPECT_SCORE, MAX_SCORE))
    twin = _looks_like_its_twin(judged, labels, i, part, m)
    if twin is not None:  # a left/right swap: the swap check judges those; this is only supporting evidence
        other, as_other = twin
        reason += f"; it looks like {other} (similarity {as_other:.2f}): left and right swapped?"
        score, suggested = SUSPECT_SCORE, None
    return Suspect(labels.images[i], (name,), "appearance", score, reason, suggested)


def _looks_like_its_twin(judged: _Judged, labels: LabelSet, i: int, part: int, m: int) -> tuple[str, float] | None:
    """The left/right partner of the part that label ``(i, part)`` looks like, and how much, if it does."""
    import torch

    name = labels.bodyparts[part]
    for a, b in labels.pairs:
        if name not in (a, b) or (b if name == a else a) not in labels.bodyparts:
            continue
        other = labels.bodyparts.index(b if name == a else a)
        if other not in judged.bank or part not in judged.bank:
            continue
        feats, images = judged.bank[part]
        mine = feats[torch.from_numpy(images == m)]
        partner, partner_images = judged.bank[other]
        with torch.inference_mode():
            sim = float(_knn_similarity(mine, partner[torch.from_numpy(partner_images != m)], False, NEIGHBOURS)[0])
        as_other = (judged.typical[other] - sim) / judged.spread[other]
        if as_other < FLAG_Z and sim > judged.similarity[i, part]:
            return labels.bodyparts[other], sim
    return None
