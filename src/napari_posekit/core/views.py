"""Several synchronised cameras' 2D predictions of one animal, read and aligned for triangulation.

:func:`read_views` reads one prediction file per camera and returns :class:`Views`:
the points of every camera as one ``(C, F, J, 2)`` array, in the same frames and body
parts. Each camera's file can be

- a posekit or DeepLabCut prediction ``.h5``/``.csv``
  (:func:`~napari_posekit.core.predictions.read_predictions`);
- a SLEAP ``.slp`` (:func:`~napari_posekit.core.sleap.load_slp`): on each frame the
  instance of the first track (or the first instance when untracked), a user
  instance before a predicted one; user points have likelihood 1;
- a SLEAP analysis ``.h5`` (datasets ``tracks`` ``(n_tracks, 2, n_nodes, n_frames)``,
  ``point_scores``, ``node_names``, ``edge_names``): the first track.

One animal only: a file with several individuals or tracks gives the first one and a
:class:`UserWarning` saying so. Body parts must have the same names in every file
(any order; the first camera's order is kept). Frames are aligned by frame number:
files with different frames are refused, naming each camera's frames, unless
``trim=True``, which keeps the frames every camera has.

The skeleton (pairs of body parts, for the limb-length term of 3D smoothing) comes
from the first file that has one: a SLEAP file's edges, or the ``skeleton`` of the
DeepLabCut ``config.yaml`` found in the prediction file's folder or one of its two
parents (``project/videos/x.h5`` → ``project/config.yaml``).

3D files (:class:`Points3D`, :func:`read_points3d`, :func:`write_points3d`) live in
:mod:`~napari_posekit.core.points3d` and are re-exported here.

Everything here is napari-free.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_posekit.core.points3d import Points3D, Points3DError, read_points3d, write_points3d

__all__ = [
    "Points3D",
    "Points3DError",
    "Views",
    "ViewsError",
    "read_points3d",
    "read_view",
    "read_views",
    "write_points3d",
]


class ViewsError(ValueError):
    """Prediction files that cannot be put side by side (body parts, frames, format), naming the files."""


@dataclass
class View:
    """One camera's predictions: ``points`` ``(F, J, 2)``, ``likelihood`` ``(F, J)``."""

    path: Path
    bodyparts: list[str]
    frames: np.ndarray
    points: np.ndarray
    likelihood: np.ndarray
    skeleton: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Views:
    """Several cameras' 2D predictions, aligned.

    Attributes:
        cameras: Camera names, in the order of the first axis of the arrays.
        bodyparts: Body part names (``J``).
        frames: ``(F,)`` frame numbers.
        points: ``(C, F, J, 2)`` pixels, NaN where a camera has no point.
        likelihood: ``(C, F, J)`` confidence (NaN where there is no point).
        skeleton: Pairs of body parts (may be empty).
    """

    cameras: list[str]
    bodyparts: list[str]
    frames: np.ndarray
    points: np.ndarray
    likelihood: np.ndarray
    skeleton: list[tuple[str, str]] = field(default_factory=list)


def read_views(
    files: Mapping[str, str | os.PathLike], *, trim: bool = False, skeleton: list[tuple[str, str]] | None = None
) -> Views:
    """Read one prediction file per camera (``{camera name: path}``) into aligned :class:`Views`.

    Args:
        files: Camera name to its prediction file, in rig order.
        trim: When the files hold different frames, keep the frames all of them have
            instead of refusing.
        skeleton: Body-part pairs to use instead of the files' skeleton.

    Raises:
        ViewsError: No files, unreadable files, different body parts, or different
            frames (without ``trim``); the message names each camera and file.
        FileNotFoundError: A file does not exist.
    """
    if not files:
        raise ViewsError("no prediction files: give one per camera")
    names = [str(name) for name in files]
    views = {name: read_view(path) for name, path in zip(names, files.values(), strict=True)}
    first = views[names[0]]
    order = first.bodyparts
    for name in names[1:]:
        view = views[name]
        if set(view.bodyparts) != set(order) or len(view.bodyparts) != len(order):
            raise ViewsError(
                f"body parts differ between cameras: {names[0]} ({first.path.name}) has {', '.join(order)}; "
                f"{name} ({view.path.name}) has {', '.join(view.bodyparts)}"
            )
    frames = _common_frames(names, views, trim)
    points = np.full((len(names), len(frames), len(order), 2), np.nan)
    likelihood = np.full((len(names), len(frames), len(order)), np.nan)
    for c, name in enumerate(names):
        view = views[name]
        rows = np.searchsorted(view.frames, frames)
        cols = [view.bodyparts.index(bp) for bp in order]
        points[c] = view.points[rows][:, cols]
        likelihood[c] = view.likelihood[rows][:, cols]
    if skeleton is None:
        skeleton = next((views[n].skeleton for n in names if views[n].skeleton), [])
    return Views(names, list(order), frames, points, likelihood, check_skeleton(skeleton, order))


def check_skeleton(skeleton, bodyparts: list[str]) -> list[tuple[str, str]]:
    """``skeleton`` as pairs of known body parts; a :class:`ViewsError` names unknown ones."""
    pairs = [tuple(map(str, pair)) for pair in skeleton or []]
    bad = [pair for pair in pairs if len(pair) != 2]
    if bad:
        raise ViewsError(f"a skeleton edge joins two body parts; got {bad[0]!r}")
    unknown = sorted({bp for pair in pairs for bp in pair} - set(bodyparts))
    if unknown:
        raise ViewsError(
            f"skeleton names unknown body parts {', '.join(unknown)}; the body parts are {', '.join(bodyparts)}"
        )
    return [(a, b) for a, b in pairs if a != b]


def _common_frames(names: list[str], views: dict[str, View], trim: bool) -> np.ndarray:
    frames = views[names[0]].frames
    if all(np.array_equal(views[n].frames, frames) for n in names[1:]):
        return frames
    common = views[names[0]].frames
    for name in names[1:]:
        common = np.intersect1d(common, views[name].frames)
    if trim:
        if common.size == 0:
            raise ViewsError("the prediction files have no frame in common: " + _describe_frames(names, views))
        return common
    raise ViewsError(
        "the cameras' predictions have different frames: "
        + _describe_frames(names, views)
        + f"; trim to the {common.size} frames all cameras have (--trim), or give files of the same video length"
    )


def _describe_frames(names: list[str], views: dict[str, View]) -> str:
    parts = []
    for name in names:
        f = views[name].frames
        span = f" ({f[0]}-{f[-1]})" if f.size else ""
        parts.append(f"{name} has {f.size} frames{span}")
    return ", ".join(parts)


def read_view(path: str | os.PathLike) -> View:
    """One camera's predictions from a posekit/DeepLabCut ``.h5``/``.csv``, SLEAP ``.slp`` or analysis ``.h5``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such prediction file")
    suffix = path.suffix.lower()
    if suffix == ".slp":
        return _read_slp(path)
    if suffix in (".h5", ".hdf5") and _is_sleap_analysis(path):
        return _read_analysis(path)
    if suffix not in (".h5", ".hdf5", ".csv"):
        raise ViewsError(f"{path}: expected a .h5/.csv prediction file, a SLEAP .slp or a SLEAP analysis .h5")
    return _read_predictions(path)


def _read_predictions(path: Path) -> View:
    from napari_posekit.core.predictions import read_predictions

    try:
        pred = read_predictions(path)
    except FileNotFoundError:
        raise
    except ValueError as err:
        raise ViewsError(str(err)) from None
    xy, like, bodyparts = pred.xy, pred.likelihood, list(pred.bodyparts)
    if pred.individual_of is not None:
        individuals = pred.individuals or []
        keep = [j for j, ind in enumerate(pred.individual_of) if ind == individuals[0]]
        if len(individuals) > 1:
            warnings.warn(
                f"{path}: {len(individuals)} individuals ({', '.join(individuals)}); triangulating the first, "
                f"{individuals[0]!r}",
                UserWarning,
                stacklevel=3,
            )
        xy, like, bodyparts = xy[:, keep], like[:, keep], [bodyparts[j] for j in keep]
    _check_unique(bodyparts, path)
    order = np.argsort(pred.frames, kind="stable")
    return View(path, bodyparts, pred.frames[order], xy[order], like[order], _config_skeleton(path))


def _config_skeleton(path: Path) -> list[tuple[str, str]]:
    """The ``skeleton`` of a DeepLabCut ``config.yaml`` beside the file or up to two folders above it."""
    from napari_posekit.core.config import read_config

    for folder in list(path.resolve().parents)[:3]:
        config_file = folder / "config.yaml"
        if config_file.is_file():
            try:
                skeleton = read_config(config_file).get("skeleton") or []
            except Exception:  # noqa: BLE001 - an unreadable config only means no skeleton
                return []
            return [tuple(map(str, pair)) for pair in skeleton if len(pair) == 2]
    return []


def _check_unique(bodyparts: list[str], path: Path) -> None:
    dupes = sorted({bp for bp in bodyparts if bodyparts.count(bp) > 1})
    if dupes:
        raise ViewsError(f"{path}: body parts listed twice: {', '.join(dupes)}")


def _is_sleap_analysis(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "tracks" in f and "node_names" in f
    except OSError:
        return False


def _names(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _read_analysis(path: Path) -> View:
    import h5py

    with h5py.File(path, "r") as f:
        tracks = np.asarray(f["tracks"], dtype=np.float64)
        nodes = _names(f["node_names"][:])
        scores = np.asarray(f["point_scores"], dtype=np.float64) if "point_scores" in f else None
        edges = [tuple(_names(e)) for e in f["edge_names"][:]] if "edge_names" in f else []
        track_names = _names(f["track_names"][:]) if "track_names" in f else []
    if tracks.ndim != 4 or tracks.shape[1] != 2 or tracks.shape[2] != len(nodes):
        raise ViewsError(f"{path}: 'tracks' must be (tracks, 2, {len(nodes)} nodes, frames); got {tracks.shape}")
    if tracks.shape[0] == 0:
        raise ViewsError(f"{path}: the analysis file has no track")
    if tracks.shape[0] > 1:
        name = track_names[0] if track_names else "0"
        warnings.warn(f"{path}: {tracks.shape[0]} tracks; triangulating the first, {name!r}", UserWarning, stacklevel=3)
    xy = tracks[0].transpose(2, 1, 0)  # (frames, nodes, 2)
    present = np.isfinite(xy).all(axis=-1)
    like = np.where(present, 1.0, np.nan) if scores is None else np.where(present, scores[0].T, np.nan)
    _check_unique(nodes, path)
    return View(path, nodes, np.arange(xy.shape[0], dtype=np.int64), xy, like, edges)


def _read_slp(path: Path) -> View:
    from napari_posekit.core.sleap import USER, load_slp

    labels = load_slp(path)
    kind, track = labels.instance_kind, labels.instance_track
    tracked = np.any(track >= 0)
    if len(labels.track_names) > 1 or (not tracked and labels.n_instances_max > 1):
        warnings.warn(
            f"{path}: several animals ({len(labels.track_names)} tracks, up to {labels.n_instances_max} instances "
            "a frame); triangulating the first track",
            UserWarning,
            stacklevel=3,
        )
    wanted = (track == 0) if tracked else (kind != "")
    # on each frame: a user instance of the wanted animal first, else a predicted one
    rank = np.where(wanted, np.where(kind == USER, 0, 1), 2) * (labels.n_instances_max + 1)
    rank = rank + np.arange(labels.n_instances_max)[None, :]
    pick = np.argmin(rank, axis=1) if labels.n_instances_max else np.zeros(0, int)
    rows = np.arange(labels.n_labeled_frames)
    ok = wanted[rows, pick] if labels.n_instances_max else np.zeros(0, bool)
    xy = np.where(ok[:, None, None], labels.xy[rows, pick], np.nan)
    like = np.where(ok[:, None], labels.scores[rows, pick], np.nan)
    like = np.where(np.isfinite(xy).all(axis=-1), like, np.nan)
    return View(path, list(labels.node_names), labels.frame_indices.astype(np.int64), xy, like, list(labels.edges))
