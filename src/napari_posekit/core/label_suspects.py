"""Label QA's shared vocabulary: the labels being checked and one suspect label.

A :class:`LabelSet` is what every check reads: the images as CollectedData
names them, the body parts, ``xy`` and what the project says about the body
(skeleton, left/right pairs). A check returns :class:`Suspect` objects; their
``score`` is on one scale for every kind (:data:`SUSPECT_SCORE` at the check's
flag threshold, higher for stronger evidence), so suspects of all kinds rank
together.

Everything here is napari-free and torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["KINDS", "SUSPECT_SCORE", "CheckReport", "LabelSet", "Suspect", "project_label_set", "read_project_labels"]

KINDS: dict[str, str] = {
    "swap": "left/right swapped",
    "geometry": "out of shape",
    "collapse": "two body parts at one point",
    "appearance": "does not look like that body part",
    "duplicate": "image labeled twice",
    "disagreement": "far from the cross-validated model",
    "missing": "visible but not labeled",
    "extra": "labeled where the model sees nothing",
}
"""Every kind of suspect, with a few words for lists and filters."""

SUSPECT_SCORE = 1.0
"""Score of a suspect at its check's flag threshold; weaker candidates are not reported."""


@dataclass(frozen=True, eq=False)
class LabelSet:
    """One project's human labels as the checks see them.

    ``images`` are CollectedData keys (``labeled-data/<video>/<image>.png``),
    ``xy`` is ``(len(images), len(bodyparts), 2)`` with NaN where a body part
    is not labeled. ``root`` is the project folder (None for labels without
    image files: the checks that need pixels say they cannot run).
    ``skeleton`` and ``pairs`` (left/right) hold body-part names.
    """

    images: tuple[str, ...]
    bodyparts: tuple[str, ...]
    xy: np.ndarray
    root: Path | None = None
    skeleton: tuple[tuple[str, str], ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float64)
        if xy.shape != (len(self.images), len(self.bodyparts), 2):
            raise ValueError(
                f"xy has shape {xy.shape}; {len(self.images)} images x {len(self.bodyparts)} body parts x 2 expected"
            )
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "images", tuple(str(i) for i in self.images))
        object.__setattr__(self, "bodyparts", tuple(str(b) for b in self.bodyparts))
        if self.root is not None:
            object.__setattr__(self, "root", Path(self.root))

    def image_path(self, image: int | str) -> Path:
        """The file of an image (by row or key); :class:`ValueError` when the set has no project folder."""
        key = self.images[image] if isinstance(image, (int, np.integer)) else image
        if self.root is None:
            raise ValueError("these labels have no project folder, so no image files")
        return self.root.joinpath(*key.replace("\\", "/").split("/"))

    def row(self, image: str) -> int:
        """The row of an image key."""
        return self.images.index(image)

    def with_xy(self, xy: np.ndarray) -> LabelSet:
        """The same set with other coordinates."""
        return LabelSet(self.images, self.bodyparts, xy, self.root, self.skeleton, self.pairs)


@dataclass(frozen=True, eq=False)
class Suspect:
    """One label (or a few labels of one image) that a check finds suspicious.

    ``suggested`` is ``(len(bodyparts), 2)`` x, y of the fix when one is known
    (a NaN row means: delete that label), else None. ``evidence`` lists the
    kinds of the other checks that agreed when suspects were merged.
    """

    image: str
    bodyparts: tuple[str, ...]
    kind: str
    score: float
    reason: str
    suggested: np.ndarray | None = None
    evidence: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown suspect kind {self.kind!r}; the kinds are {', '.join(KINDS)}")
        object.__setattr__(self, "bodyparts", tuple(self.bodyparts))
        if self.suggested is not None:
            suggested = np.asarray(self.suggested, dtype=np.float64).reshape(len(self.bodyparts), 2)
            object.__setattr__(self, "suggested", suggested)


@dataclass
class CheckReport:
    """What a run of the checks found.

    ``suspects`` are ranked, most suspect first. ``image_scores`` holds each
    image's highest score (0 for none), in ``labels.images`` order. ``notes``
    say which checks could not apply and why; ``checks`` names those that ran;
    ``dismissed`` counts suspects left out because a person marked them correct.
    """

    labels: LabelSet
    suspects: list[Suspect]
    image_scores: np.ndarray
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dismissed: int = 0
    seconds: float = 0.0

    def by_kind(self, kinds: Sequence[str] | None = None) -> list[Suspect]:
        """The suspects of some kinds (all when None), in rank order."""
        return [s for s in self.suspects if kinds is None or s.kind in kinds]


def read_project_labels(root: Path, config=None) -> tuple[list[str], list[str], np.ndarray]:
    """``(image keys, body parts, xy (N, K, 2))`` of every ``labeled-data/*/CollectedData_*.h5`` of a project.

    Folders in sorted order; the body parts and their order are the config's.
    Raises :class:`~napari_posekit.core.project.ProjectError` for a project
    without labels or with labels missing a body part of the config.
    """
    from .collected_data import collected_to_arrays, read_collected
    from .config import config_bodyparts, read_config
    from .project import ProjectError

    bodyparts = list(config_bodyparts(config if config is not None else read_config(root)))
    files = sorted((root / "labeled-data").glob("*/CollectedData_*.h5"))
    if not files:
        raise ProjectError("no labeled-data/*/CollectedData_*.h5 files: label some frames first", root)
    keys: list[str] = []
    blocks: list[np.ndarray] = []
    for file in files:
        file_keys, parts, xy = collected_to_arrays(read_collected(file))
        if len(file_keys) == 0:
            continue
        missing = [bp for bp in bodyparts if bp not in parts]
        if missing:
            raise ProjectError(f"body parts {missing} of config.yaml are missing from the labels", file)
        blocks.append(xy[:, [parts.index(bp) for bp in bodyparts]])
        keys.extend(k.replace("\\", "/") for k in file_keys)
    xy_all = np.concatenate(blocks) if blocks else np.zeros((0, len(bodyparts), 2))
    return keys, bodyparts, xy_all.astype(np.float64)


def project_label_set(project: str | os.PathLike) -> LabelSet:
    """A single-animal DeepLabCut project's labels, skeleton and left/right pairs.

    Every ``labeled-data/*/CollectedData_*.h5`` is read (folders in sorted
    order). Left/right pairs come from ``config.yaml``'s ``symmetric_pairs``
    when it has them, else from the body-part names. Raises
    :class:`~napari_posekit.core.project.ProjectError` for a project without
    labels or with labels missing a body part of the config.
    """
    from .config import read_config
    from .project import project_root
    from .training_labels import infer_symmetric_pairs

    root = project_root(project)
    config = read_config(root)
    keys, bodyparts, xy_all = read_project_labels(root, config)
    known = set(bodyparts)
    skeleton = tuple(
        (str(a), str(b)) for a, b, *_ in (config.get("skeleton") or []) if a in known and b in known and a != b
    )
    configured = config.get("symmetric_pairs")
    if configured:
        pairs = tuple((str(a), str(b)) for a, b in configured if a in known and b in known and a != b)
    else:
        pairs = tuple(infer_symmetric_pairs(bodyparts))
    return LabelSet(tuple(keys), tuple(bodyparts), xy_all, root, skeleton, pairs)
