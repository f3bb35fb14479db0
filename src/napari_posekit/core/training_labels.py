"""A project's human labels, checked for training.

:func:`project_training_data` loads every labeled image with its keypoints and
stops at problems that would spoil training (missing images, body parts never
labeled, infinite coordinates); labels outside their image are left out with a
warning.  :func:`find_swapped_pairs` points at frames whose left/right labels
look swapped.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .collected_data import read_collected
from .config import config_bodyparts, read_config
from .data import load_project_labels
from .labeled_images import missing_images
from .project import ProjectError, project_root

__all__ = ["TrainingData", "find_swapped_pairs", "infer_symmetric_pairs", "project_training_data"]


_SIDE_WORDS = {"left": "right", "right": "left", "l": "r", "r": "l"}
# "left"/"right" anywhere; a lone "l"/"r" between separators or at either end
# ("l_paw", "paw_r", "hind-l-foot"); an upper-case "L"/"R" that starts a word
# ("wingL", "forelegR4", "L_ear", "HaunchR", "FL") but not one inside a word
# ("Lpaw", "tail").
_SIDE_MARK = re.compile(
    r"(?i:left|right)"
    r"|(?<![A-Za-z0-9])(?i:[lr])(?=[_\-. ]|$)"
    r"|(?<=[_\-. ]|[0-9])(?i:[lr])(?![A-Za-z])"
    r"|(?:(?<=^)|(?<=[_\-. a-z0-9]))[LR](?=$|[0-9_\-. ]|[A-Z])"
    r"|(?<=[A-Z])[LR](?=$|[0-9_\-. ])"
)


def _mirror_names(name: str) -> list[tuple[str, str]]:
    """Every ``(side, name with that side marker flipped)`` of a body-part name, side ``"left"`` or ``"right"``."""
    found = []
    for match in _SIDE_MARK.finditer(name):
        word = match.group()
        other = _SIDE_WORDS[word.lower()]
        if word.isupper():
            other = other.upper()
        elif word[0].isupper():
            other = other.capitalize()
        side = "left" if word.lower() in ("left", "l") else "right"
        found.append((side, name[: match.start()] + other + name[match.end() :]))
    return found


def infer_symmetric_pairs(bodyparts: Sequence[str]) -> list[tuple[str, str]]:
    """Left/right pairs by name, left first, each body part in one pair at most.

    Recognised: ``leftear``/``rightear``, ``left_paw``/``Right_Paw``,
    ``Haunch_left``/``Haunch_right``, ``L_ear``/``R_ear``, ``paw_l``/``paw_r``,
    ``wingL``/``wingR``, ``forelegL4``/``forelegR4``, ``eyeL``/``eyeR``, in any
    case.  A side letter inside a word (``Lpaw``, ``tail``) is no side.
    """
    by_lower: dict[str, str] = {}
    for bp in bodyparts:
        by_lower.setdefault(bp.lower(), bp)
    used: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for bp in bodyparts:
        if bp in used:
            continue
        for side, mirrored in _mirror_names(bp):
            other = by_lower.get(mirrored.lower())
            if side != "left" or other is None or other in used or other.lower() == bp.lower():
                continue
            if not any(s == "right" and m.lower() == bp.lower() for s, m in _mirror_names(other)):
                continue
            pairs.append((bp, other))
            used.update((bp, other))
            break
    return pairs


def find_swapped_pairs(
    xy: np.ndarray,
    bodyparts: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    *,
    min_frames: int = 10,
    agreement: float = 0.9,
    min_sine: float = 0.5,
) -> list[tuple[int, str, str, int, int]]:
    """Frames whose left/right pair is on the other side of the body than in almost every other frame.

    The side of ``left`` is taken relative to the line from the pair's
    midpoint to the centroid of the other labeled body parts (for a top-down
    mouse: the ears either side of the head-to-body line).  Frames where
    that angle is too flat to tell (``|sin| < min_sine``) are not judged.
    When at least ``min_frames`` frames are judged and a share of at least
    ``agreement`` of them agree, every frame on the other side is returned
    as ``(frame, left, right, n_agreeing, n_judged)``; labelers swap left and
    right easily and one swapped frame costs the model its whole pair.
    """
    index = {bp: k for k, bp in enumerate(bodyparts)}
    found: list[tuple[int, str, str, int, int]] = []
    for left, right in pairs:
        if left not in index or right not in index:
            continue
        a, b = xy[:, index[left]], xy[:, index[right]]
        others = [k for k in range(len(bodyparts)) if k not in (index[left], index[right])]
        if not others:
            continue
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # frames without other labels
            centre = np.nanmean(xy[:, others], axis=1)
            mid = (a + b) / 2
            ref, side = centre - mid, a - mid
            cross = ref[:, 0] * side[:, 1] - ref[:, 1] * side[:, 0]
            sine = cross / (np.linalg.norm(ref, axis=1) * np.linalg.norm(side, axis=1))
        judged = np.isfinite(sine) & (np.abs(sine) >= min_sine)
        n = int(judged.sum())
        if n < min_frames:
            continue
        positive = int((sine[judged] > 0).sum())
        majority = max(positive, n - positive)
        if majority < agreement * n:
            continue
        sign = 1.0 if positive >= n - positive else -1.0
        for f in np.flatnonzero(judged & (np.sign(sine) == -sign)):
            found.append((int(f), left, right, majority, n))
    return found


# --------------------------------------------------------------------------- training
@dataclass
class TrainingData:
    """Labeled images of a project, checked for training."""

    images: list[Path]
    bodyparts: list[str]
    xy: np.ndarray
    warnings: list[str]


def _image_size_or_error(image: Path) -> tuple[int, int]:
    """``(width, height)`` of a labeled image from its header; :class:`ProjectError` naming it otherwise."""
    from .images import image_size

    try:
        return image_size(image)
    except FileNotFoundError:
        raise ProjectError("labeled image missing on disk", image) from None
    except OSError as err:
        raise ProjectError(f"cannot read the labeled image: {err.strerror or err}", image) from err


def _drop_labels_outside(
    images: Sequence[Path], xy: np.ndarray, bodyparts: Sequence[str], root: Path
) -> tuple[np.ndarray, list[str]]:
    """``xy`` with every label outside its own image set to NaN, and a note for each.

    Each image is measured on its own (header only): frames of one folder may
    differ in size (the same video cropped differently, two cameras).
    """
    from .images import outside_image

    xy = xy.copy()
    labeled = ~np.isnan(xy).any(axis=-1)
    sizes = np.array(
        [_image_size_or_error(im) if labeled[i].any() else (np.inf, np.inf) for i, im in enumerate(images)], dtype=float
    ).reshape(-1, 2)
    notes: list[str] = []
    for i, k in np.argwhere(outside_image(xy, sizes)):
        image = images[i]
        name = image.relative_to(root).as_posix() if image.is_relative_to(root) else str(image)
        (x, y), (w, h) = xy[i, k], sizes[i].astype(int)
        notes.append(f"{name}: {bodyparts[k]} at ({x:.1f}, {y:.1f}) is outside the {w}x{h} image; left out of training")
        xy[i, k] = np.nan
    return xy, notes


def project_training_data(project: str | os.PathLike) -> TrainingData:
    """Load and check a project's human labels for training.

    Images may differ in size within and across ``labeled-data`` folders; each
    is read and measured on its own, and coordinates stay in its own pixels.
    Raises :class:`ProjectError` for a project without labeled frames, a
    body part that is never labeled, labeled image files that are missing or
    unreadable, or infinite coordinates.  Labels outside their own image are
    left out of training (each listed in ``warnings``).  Nothing is written.
    """
    root = project_root(project)
    config = read_config(root)
    bodyparts = config_bodyparts(config)
    for file in sorted((root / "labeled-data").glob("*/CollectedData_*.h5")):
        missing = missing_images(read_collected(file), root)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ProjectError(f"labeled images missing on disk: {', '.join(missing[:3])}{more}", file.parent)
    images, parts, xy = load_project_labels(root)
    if parts != list(bodyparts):
        raise ProjectError(f"body parts {parts} differ from config.yaml's {list(bodyparts)}", root)
    labeled = ~np.isnan(xy).any(axis=-1)
    if not labeled.any():
        raise ProjectError("no labeled frames: label some frames before training", root)
    never = [bp for k, bp in enumerate(bodyparts) if not labeled[:, k].any()]
    if never:
        raise ProjectError(
            f"body part(s) {', '.join(never)} never labeled: label them on some frames or remove them from config.yaml",
            root,
        )
    if np.isinf(xy).any():
        n, k = np.argwhere(np.isinf(xy).any(axis=-1))[0]
        raise ProjectError(f"infinite coordinate for {bodyparts[k]} in {images[n]}", root)
    keep = [i for i in range(len(images)) if labeled[i].any()]
    kept = [images[i] for i in keep]
    xy, notes = _drop_labels_outside(kept, xy[keep], list(bodyparts), root)
    return TrainingData(kept, list(bodyparts), xy, notes)
