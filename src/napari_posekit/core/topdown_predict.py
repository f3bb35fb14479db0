"""Prediction with the top-down multi-animal model: :class:`MultiAnimalModel`.

Per batch of frames: the finder runs on the downscaled frames; the peaks of
its heatmaps (all individuals' channels together) are the animals, and
each channel's value at each peak says how much the animal looks like that
individual, so peaks are given to individuals by the best assignment.  The
pose network then runs on a full-resolution crop centred on every animal
found (all animals of all frames in one batch).  Both networks are
:class:`~napari_posekit.core.predictor.Predictor` objects, on the backend
chosen for them by :mod:`~napari_posekit.core.topdown_backends`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import CheckpointError
from .options import ANALYSIS_BATCH_SIZE
from .topdown_data import anchor_points, crop_at
from .topdown_train import MULTIANIMAL_FILE, MULTIANIMAL_KIND, MULTIANIMAL_VERSION

__all__ = ["MIN_ANIMAL_SCORE", "MultiAnimalModel", "find_model_folder", "read_model_description"]

FINDER_BUDGET_PX = 2.0
"""What a faster backend may cost the finder's anchors, in frame pixels: they only centre the crops."""
MIN_ANIMAL_SCORE = 0.1
"""Finder heatmap value below which no animal is taken to be there."""


def read_model_description(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``multianimal.json`` of a model folder, checked; :class:`CheckpointError` naming the file otherwise."""
    path = Path(folder) / MULTIANIMAL_FILE
    try:
        description = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable multi-animal model description ({exc})") from exc
    if not isinstance(description, dict) or description.get("kind") != MULTIANIMAL_KIND:
        raise CheckpointError(f"{path}: not a posekit multi-animal model description")
    version = description.get("version")
    if not isinstance(version, int) or version > MULTIANIMAL_VERSION:
        raise CheckpointError(
            f"{path}: multi-animal model format version {version!r} is newer than this napari-posekit "
            f"understands ({MULTIANIMAL_VERSION}); update napari-posekit"
        )
    for key in ("individuals", "bodyparts", "anchor", "crop_size", "finder_scale", "finder", "pose"):
        if key not in description:
            raise CheckpointError(f"{path}: incomplete multi-animal model description, '{key}' is missing")
    return description


def find_model_folder(source: str | os.PathLike) -> Path:
    """The multi-animal model folder meant by ``source``.

    ``source`` is a model folder, its ``multianimal.json``, one of its
    checkpoints, or a project (folder or ``config.yaml``: its most recently
    trained multi-animal model).  A single-animal checkpoint or project gives
    a :class:`CheckpointError` that says so.
    """
    from .model_paths import MODELS_FOLDER

    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if path.name == MULTIANIMAL_FILE:
        return path.parent
    if path.is_file() and path.suffix == ".pt":
        for parent in path.parents[:2]:
            if (parent / MULTIANIMAL_FILE).is_file():
                return parent
        raise CheckpointError(
            f"{path} is a single-animal checkpoint (no {MULTIANIMAL_FILE} beside it): it cannot analyse "
            "several animals; train the multi-animal project with 'posekit train' for a multi-animal model"
        )
    if path.is_dir() and (path / MULTIANIMAL_FILE).is_file():
        return path
    root = path.parent if path.suffix in (".yaml", ".yml") else path
    found = [p.parent for p in (root / MODELS_FOLDER).glob(f"iteration-*/*/{MULTIANIMAL_FILE}")]
    if found:
        return max(found, key=lambda p: (p / MULTIANIMAL_FILE).stat().st_mtime_ns)
    if list((root / MODELS_FOLDER).glob("iteration-*/*/train/checkpoint.pt")):
        raise CheckpointError(
            f"{root}: the project's models are single-animal ones, which cannot analyse several animals; "
            "train a multi-animal model with 'posekit train'"
        )
    raise FileNotFoundError(f"{root}: no multi-animal model (no {MODELS_FOLDER}/*/*/{MULTIANIMAL_FILE}); train one")


def _downscale(frames: np.ndarray, scale: float) -> np.ndarray:
    """Frames resized by ``scale`` as training resized them (bilinear, pixel centres mapped alike)."""
    if scale == 1.0:
        return frames
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is None:
        from .predictor import resize_bilinear

        return resize_bilinear(frames, scale)
    h, w = frames.shape[1:3]
    size = (max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])


def _local_peaks(combined: np.ndarray, count: int, radius: int, min_score: float) -> list[tuple[int, int]]:
    """Up to ``count`` strongest peaks ``(row, col)`` of a 2-D map, at least ``radius`` cells apart."""
    from scipy.ndimage import maximum_filter

    is_peak = (combined == maximum_filter(combined, size=3, mode="constant")) & (combined >= min_score)
    rows, cols = np.nonzero(is_peak)
    order = np.argsort(-combined[rows, cols], kind="stable")
    kept: list[tuple[int, int]] = []
    for j in order:
        r, c = int(rows[j]), int(cols[j])
        if all(max(abs(r - kr), abs(c - kc)) > radius for kr, kc in kept):
            kept.append((r, c))
            if len(kept) == count:
                break
    return kept


def assign_peaks(
    heatmaps: np.ndarray, *, radius: int, min_score: float = MIN_ANIMAL_SCORE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Animals found in finder heatmaps ``(B, I, h, w)`` and the individual each one is.

    The peaks of all channels together are the animals (up to ``I``, at
    least ``radius`` cells apart, at least ``min_score``); they go to
    individuals by the assignment that best fits each channel's value there.
    Returns ``(cells (B, I, 2) int row/col of individual i's peak, -1 where it
    is not found; score (B, I) its channel's value there; evidence (B, I, I):
    at individual i's peak, each channel's share of all channels' values, NaN
    where not found)``.  ``evidence[:, i, i]`` is the identity confidence.
    """
    from scipy.optimize import linear_sum_assignment

    b, n = heatmaps.shape[:2]
    cells = np.full((b, n, 2), -1, dtype=np.int64)
    score = np.zeros((b, n), dtype=np.float32)
    evidence = np.full((b, n, n), np.nan, dtype=np.float32)
    for f in range(b):
        peaks = _local_peaks(heatmaps[f].max(axis=0), n, radius, min_score)
        if not peaks:
            continue
        values = np.stack([heatmaps[f, :, r, c] for r, c in peaks]).astype(np.float64)  # (J, I)
        rows, individuals = linear_sum_assignment(-np.log(np.clip(values, 1e-6, 1.0)))
        for j, i in zip(rows, individuals):
            cells[f, i] = peaks[j]
            score[f, i] = values[j, i]
            evidence[f, i] = values[j] / max(values[j].sum(), 1e-9)
    return cells, score, evidence


def _project_probe(folder: Path, description: dict[str, Any], limit: int = 24):
    """``(frames, xy)``: up to ``limit`` labeled frames of the project holding the model, or ``(None, None)``."""
    from .data import load_image
    from .model_paths import project_of_checkpoint

    project = project_of_checkpoint(folder / description["pose"])
    if project is None:
        return None, None
    try:
        from .multianimal import read_multianimal_labels

        labels = read_multianimal_labels(project)
        if labels.individuals != description["individuals"] or labels.bodyparts != description["bodyparts"]:
            return None, None
        keep = np.flatnonzero(np.isfinite(labels.xy).all(-1).any(axis=(1, 2)))
        keep = keep[np.unique(np.linspace(0, len(keep) - 1, min(limit, len(keep))).round().astype(int))]
        frames = np.stack([load_image(project / labels.images[i]) for i in keep])
    except (OSError, ValueError, KeyError):
        return None, None
    return frames, labels.xy[keep]


def identity_of(evidence: np.ndarray) -> np.ndarray:
    """``(B, I)`` identity confidence from ``(B, I, I)`` evidence: each individual's own share, 0 where not found."""
    own = np.diagonal(evidence, axis1=1, axis2=2)
    return np.nan_to_num(own, nan=0.0).astype(np.float32)


def peak_radius(description: dict[str, Any], stride: int) -> int:
    """Finder heatmap cells two animals' anchors are at least apart: about a third of an animal's length."""
    length = float(description.get("animal_length_px", int(description["crop_size"]) / 2))
    cell = stride / float(description["finder_scale"])  # frame pixels per finder heatmap cell
    return max(1, round(0.35 * length / cell))


def find_animals(
    finder: Any, frames: np.ndarray, *, scale: float, radius: int, min_score: float = MIN_ANIMAL_SCORE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchors of the individuals in whole frames, from the finder :class:`~napari_posekit.core.predictor.Predictor`.

    Returns ``(anchors (B, I, 2) in frame pixels, NaN where an individual is
    not found; score (B, I); evidence (B, I, I))``, see :func:`assign_peaks`.
    """
    frames = finder._as_frames(frames)
    small = _downscale(frames, scale)
    h, w = small.shape[1:3]
    ph, pw = (-h) % finder.pad_to, (-w) % finder.pad_to
    if ph or pw:
        small = np.pad(small, ((0, 0), (0, ph), (0, pw), (0, 0)))
    heatmaps, locref = finder.engine.run(np.ascontiguousarray(small))
    codec = finder.codec
    hc, wc = math.ceil(h / codec.stride), math.ceil(w / codec.stride)
    heatmaps, locref = heatmaps[..., :hc, :wc], locref[..., :hc, :wc]
    cells, score, evidence = assign_peaks(heatmaps, radius=radius, min_score=min_score)
    # each individual's channel is kept near its own peak only, then decoded as single-animal models are
    rows, cols = np.arange(hc)[:, None], np.arange(wc)[None, :]
    r = codec.refine_radius
    mask = (np.abs(rows - cells[..., 0, None, None]) <= r) & (np.abs(cols - cells[..., 1, None, None]) <= r)
    xy, _ = codec.decode_numpy(np.where(mask, heatmaps, 0.0), locref)
    xy = (xy + 0.5) / scale - 0.5
    xy[cells[..., 0] < 0] = np.nan
    return xy, score, evidence


class MultiAnimalModel:
    """A trained top-down multi-animal model: the finder and the pose network, ready for inference.

    Load it with :meth:`load`; :meth:`predict` gives poses ``(B, I, K, 3)``
    (x, y, likelihood in frame pixels; NaN where an individual is not found)
    and the finder's identity confidence ``(B, I)`` in [0, 1].
    """

    def __init__(self, finder: Any, pose: Any, description: dict[str, Any], folder: Path | None = None) -> None:
        self.finder, self.pose = finder, pose
        self.description = dict(description)
        self.folder = folder
        self.individuals: list[str] = list(description["individuals"])
        self.bodyparts: list[str] = list(description["bodyparts"])
        self.anchor: str = str(description["anchor"])
        self.crop_size = int(description["crop_size"])
        self.finder_scale = float(description["finder_scale"])
        self.skeleton = [tuple(e) for e in description.get("skeleton", []) if len(e) == 2]
        self.peak_radius = peak_radius(description, finder.codec.stride)
        if list(finder.bodyparts) != self.individuals:
            raise CheckpointError(f"{folder}: the finder predicts {finder.bodyparts}, not the individuals")
        if list(pose.bodyparts) != self.bodyparts:
            raise CheckpointError(f"{folder}: the pose network predicts {pose.bodyparts}, not {self.bodyparts}")

    @property
    def scorer(self) -> str:
        """DeepLabCut-style scorer name (the pose network's)."""
        return self.pose.scorer

    @property
    def backend(self) -> str:
        return f"finder {self.finder.backend}, pose {self.pose.backend}"

    @classmethod
    def load(
        cls,
        source: str | os.PathLike,
        *,
        device: Any = "cpu",
        backend: str = "auto",
        probe_frames: np.ndarray | None = None,
        probe_xy: np.ndarray | None = None,
        report: Any = None,
    ) -> MultiAnimalModel:
        """The model of ``source`` (see :func:`find_model_folder`), each network on its chosen backend.

        ``backend`` is ``"auto"`` (measured, see
        :func:`~napari_posekit.core.topdown_backends.load_network`) or a
        backend name for both networks.  The measurement uses ``probe_frames``
        (whole frames) with their labels ``probe_xy`` ``(N, I, K, 2)`` when
        given, else up to 24 labeled frames of the project the model is in,
        else ``probe_frames`` alone.
        """
        from .topdown_backends import load_network

        folder = find_model_folder(source)
        description = read_model_description(folder)
        if probe_xy is None:
            labeled, labeled_xy = _project_probe(folder, description)
            if labeled is not None:
                probe_frames, probe_xy = labeled, labeled_xy
        frames = np.asarray(probe_frames) if probe_frames is not None and len(probe_frames) else None
        probe_xy = np.asarray(probe_xy, dtype=np.float64) if probe_xy is not None and frames is not None else None
        anchor = list(description["bodyparts"]).index(description["anchor"])
        scale = float(description["finder_scale"])
        finder = load_network(
            folder / description["finder"], device=device, backend=backend, report=report,
            probe=lambda: (frames, anchor_points(probe_xy, anchor) if probe_xy is not None else None),
            budget_px=FINDER_BUDGET_PX,
            calibration=lambda: _downscale(frames, scale) if frames is not None else None,
        )  # fmt: skip
        radius = peak_radius(description, finder.codec.stride)

        def pose_probe() -> tuple[np.ndarray | None, np.ndarray | None]:
            if frames is None:
                return None, None
            if probe_xy is not None:
                anchors = anchor_points(probe_xy, anchor)
            else:
                anchors, _, _ = find_animals(finder, frames, scale=scale, radius=radius)
            side = int(description["crop_size"])
            crops, truth = [], []
            for n, row in enumerate(anchors):
                for i, a in enumerate(row):
                    if np.isfinite(a).all():
                        crop, x0, y0 = crop_at(frames[n], a, side)
                        crops.append(crop)
                        if probe_xy is not None:
                            truth.append(np.asarray(probe_xy[n][i], dtype=np.float64) - (x0, y0))
            if not crops:
                return None, None
            return np.stack(crops), (np.stack(truth) if truth else None)

        pose = load_network(
            folder / description["pose"], device=device, backend=backend, report=report, probe=pose_probe
        )
        return cls(finder, pose, description, folder)

    # ------------------------------------------------------------------ prediction
    def find(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(anchors (B, I, 2) frame pixels, NaN where not found; score (B, I); evidence (B, I, I))``."""
        return find_animals(self.finder, frames, scale=self.finder_scale, radius=self.peak_radius)

    def predict_crops(self, frames: np.ndarray, anchors: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
        """Poses ``(B, I, K, 3)`` from crops centred on ``anchors`` ``(B, I, 2)`` (NaN anchors: NaN poses)."""
        frames = np.asarray(frames)
        b, n = anchors.shape[:2]
        k = len(self.bodyparts)
        poses = np.full((b, n, k, 3), np.nan, dtype=np.float32)
        where = [(f, i) for f in range(b) for i in range(n) if np.isfinite(anchors[f, i]).all()]
        if not where:
            return poses
        crops, origins = [], []
        for f, i in where:
            crop, x0, y0 = crop_at(frames[f], anchors[f, i], self.crop_size)
            crops.append(crop)
            origins.append((x0, y0))
        xy, p = self.pose.predict(np.stack(crops), batch_size=batch_size)
        xy = xy + np.asarray(origins, dtype=np.float64)[:, None, :]
        for j, (f, i) in enumerate(where):
            poses[f, i, :, :2] = xy[j]
            poses[f, i, :, 2] = p[j]
        return poses

    def predict_with_evidence(
        self, frames: np.ndarray, *, batch_size: int = ANALYSIS_BATCH_SIZE
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(poses (B, I, K, 3) float32, evidence (B, I, I) float32)``, see :func:`assign_peaks`."""
        frames = np.asarray(frames)
        n, k = len(self.individuals), len(self.bodyparts)
        out_poses, out_evidence = [np.zeros((0, n, k, 3), np.float32)], [np.zeros((0, n, n), np.float32)]
        for s in range(0, len(frames), max(1, batch_size)):
            chunk = frames[s : s + batch_size]
            anchors, _, evidence = self.find(chunk)
            out_poses.append(self.predict_crops(chunk, anchors, batch_size=2 * batch_size))
            out_evidence.append(evidence)
        return np.concatenate(out_poses), np.concatenate(out_evidence).astype(np.float32)

    def predict(self, frames: np.ndarray, *, batch_size: int = ANALYSIS_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """``(poses (B, I, K, 3) float32, identity (B, I) float32)`` for uint8 frames ``(B, H, W, 3)``.

        Poses are in frame pixels, NaN where an individual is not found;
        identity is the finder's confidence that each pose is that individual.
        """
        poses, evidence = self.predict_with_evidence(frames, batch_size=batch_size)
        return poses, identity_of(evidence)
