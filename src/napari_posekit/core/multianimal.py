"""Poses of several animals with identities, and the files that hold them.

:class:`Tracks` holds the poses of ``I`` named individuals over ``T`` video
frames as one ``(T, I, K, 3)`` float32 array (x, y, likelihood; NaN x and y
where an animal or one of its parts is missing), with DeepLabCut's
``uniquebodyparts`` (parts that belong to no individual) beside it.

:func:`read_tracks` and :func:`write_tracks` move them in and out of

* DeepLabCut's multi-animal prediction tables (``.h5`` under the key
  ``df_with_missing`` and the ``.csv`` beside it), whose columns are
  ``scorer/individuals/bodyparts/coords`` with coords ``x, y, likelihood``
  and the unique parts under the individual ``single``, as DeepLabCut's
  tracklet outputs (``..._el.h5``, ``..._tr.h5``) are laid out, so that
  DeepLabCut and movement read them back; the per-frame identity confidence
  goes into the ``<stem>_meta.json`` beside the table;
* SLEAP ``.slp`` files, through sleap-io: one track per individual, one
  predicted instance per individual and frame.

The tables are written by :mod:`~napari_posekit.core.predictions` and SLEAP
files read by :mod:`~napari_posekit.core.sleap`; this module only arranges
the individuals. Labels of multi-animal DeepLabCut projects are in
:mod:`~napari_posekit.core.multianimal_labels` (re-exported here).

Everything here is napari-free.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .filesafety import error_reason, write_atomically
from .predictions import Predictions, read_predictions, write_predictions

__all__ = [
    "SINGLE",
    "Tracks",
    "TracksFileError",
    "check_individuals",
    "read_tracks",
    "write_tracks",
]

#: The individual DeepLabCut stores unique body parts under.
SINGLE = "single"
#: The individual of a single-animal prediction file.
DEFAULT_INDIVIDUAL = "individual1"
#: The key of the identity confidence in a table's ``_meta.json``.
IDENTITY_KEY = "identity_confidence"
_DEFAULT_SCORER = "DLC_posekit_tracks"
#: Provenance key of SLEAP files whose tracking scores are the identity confidence.
_SLP_IDENTITY = "posekit_identity_confidence"
_TABLE_SUFFIXES = (".h5", ".hdf5", ".hdf", ".csv")


class TracksFileError(ValueError):
    """A tracks or predictions file that cannot be read or written; the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def check_individuals(names: Iterable) -> list[str]:
    """``names`` as a list of strings, or a ValueError naming empty and duplicate names."""
    if isinstance(names, str):
        raise ValueError(f"individuals must be a list of names, got the string {names!r}")
    names = ["" if n is None else str(n) for n in names]
    empty = [k for k, n in enumerate(names) if not n.strip()]
    if empty:
        raise ValueError(f"individual names must not be empty (position {', '.join(map(str, empty))} of {names})")
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    twice = [n for n, count in seen.items() if count > 1]
    if twice:
        raise ValueError(f"duplicate individual names: {', '.join(map(repr, twice))}; each animal needs its own name")
    return names


@dataclass
class Tracks:
    """Poses of several animals over a video.

    Attributes:
        poses: ``(T, I, K, 3)`` float32 x, y, likelihood; NaN x and y where missing.
        individuals: ``I`` unique names.
        bodyparts: ``K`` body part names (DeepLabCut's ``multianimalbodyparts``).
        frames: ``(T,)`` int64 video frame numbers, increasing.
        scorer: The scorer of the table (DeepLabCut's network name), or "".
        identity: ``(T, I)`` float32 identity confidence in [0, 1], or None when unknown.
        uniquebodyparts: Parts tied to no individual.
        unique: ``(T, U, 3)`` poses of the unique parts, or None when there are none.
        skeleton: Edges as pairs of body part names.
        video: The video file, when known.
    """

    poses: np.ndarray
    individuals: list[str]
    bodyparts: list[str]
    frames: np.ndarray
    scorer: str = ""
    identity: np.ndarray | None = None
    uniquebodyparts: list[str] = field(default_factory=list)
    unique: np.ndarray | None = None
    skeleton: list[tuple[str, str]] = field(default_factory=list)
    video: str | None = None

    def __post_init__(self) -> None:
        self.poses = np.asarray(self.poses, dtype=np.float32)
        if self.poses.ndim != 4 or self.poses.shape[3] != 3:
            raise ValueError(f"poses must have shape (frames, individuals, bodyparts, 3), got {self.poses.shape}")
        t, i, k, _ = self.poses.shape
        self.individuals = check_individuals(self.individuals)
        if len(self.individuals) != i:
            raise ValueError(f"poses hold {i} individuals but {len(self.individuals)} names were given")
        self.bodyparts = [str(b) for b in self.bodyparts]
        if len(self.bodyparts) != k:
            raise ValueError(f"poses hold {k} body parts but {len(self.bodyparts)} names were given")
        self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        if len(self.frames) != t:
            raise ValueError(f"poses hold {t} frames but {len(self.frames)} frame numbers were given")
        if t > 1 and np.any(np.diff(self.frames) <= 0):
            raise ValueError("frame numbers must be increasing")
        if self.identity is not None:
            self.identity = np.asarray(self.identity, dtype=np.float32)
            if self.identity.shape != (t, i):
                raise ValueError(
                    f"identity must have shape (frames, individuals) = {(t, i)}, got {self.identity.shape}"
                )
        self.uniquebodyparts = [str(b) for b in self.uniquebodyparts]
        if self.unique is None and self.uniquebodyparts:
            self.unique = np.full((t, len(self.uniquebodyparts), 3), np.nan, np.float32)
        if self.unique is not None:
            self.unique = np.asarray(self.unique, dtype=np.float32)
            if self.unique.shape != (t, len(self.uniquebodyparts), 3):
                raise ValueError(
                    f"unique must have shape (frames, uniquebodyparts, 3) = {(t, len(self.uniquebodyparts), 3)}, "
                    f"got {self.unique.shape}"
                )
        self.skeleton = [(str(a), str(b)) for a, b in self.skeleton]

    @property
    def n_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def n_individuals(self) -> int:
        return int(self.poses.shape[1])

    def copy(self) -> Tracks:
        """A deep copy (arrays and lists)."""
        return Tracks(
            poses=self.poses.copy(),
            individuals=list(self.individuals),
            bodyparts=list(self.bodyparts),
            frames=self.frames.copy(),
            scorer=self.scorer,
            identity=None if self.identity is None else self.identity.copy(),
            uniquebodyparts=list(self.uniquebodyparts),
            unique=None if self.unique is None else self.unique.copy(),
            skeleton=list(self.skeleton),
            video=self.video,
        )


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def read_tracks(path: str | os.PathLike) -> Tracks:
    """Read the poses of several animals from a DeepLabCut table or a SLEAP file.

    ``.h5``/``.csv``: DeepLabCut predictions. A multi-animal table gives its
    individuals in file order (the unique parts of ``single`` go to
    ``uniquebodyparts``); a single-animal table gives one individual named
    ``individual1``. ``.slp``: SLEAP tracks become individuals in track
    order; a file without tracks gets individuals ``individual1..N`` by the
    instances' order on each frame, with a warning.

    Raises:
        FileNotFoundError: The file does not exist.
        TracksFileError: (a ValueError) the file cannot be read as poses; the message names it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "tracks file not found", str(path))
    suffix = path.suffix.lower()
    if suffix == ".slp":
        return _read_slp(path)
    if suffix not in _TABLE_SUFFIXES:
        raise TracksFileError(path, "expected a DeepLabCut .h5/.csv prediction file or a SLEAP .slp file")
    try:
        predictions = read_predictions(path)
    except TracksFileError:
        raise
    except ValueError as err:
        raise TracksFileError(path, _without_path(err, path)) from err
    return _tracks_from_predictions(predictions, path)


def _without_path(err: Exception, path: Path) -> str:
    text = str(err)
    prefix = f"{path}: "
    return text.removeprefix(prefix)


def _tracks_from_predictions(pred: Predictions, path: Path) -> Tracks:
    values = np.concatenate([pred.xy, pred.likelihood[..., None]], axis=2).astype(np.float32)  # (T, P, 3)
    owners = pred.individual_of or [DEFAULT_INDIVIDUAL] * len(pred.bodyparts)
    columns: dict[str, list[int]] = {}
    for j, owner in enumerate(owners):
        columns.setdefault(owner, []).append(j)
    unique_cols = columns.pop(SINGLE, [])
    individuals = list(columns)
    if not individuals and not unique_cols:
        raise TracksFileError(path, "the table has no body parts")
    bodyparts = [pred.bodyparts[j] for j in columns[individuals[0]]] if individuals else []
    for name in individuals[1:]:
        parts = [pred.bodyparts[j] for j in columns[name]]
        if parts != bodyparts:
            raise TracksFileError(
                path,
                f"individual {name!r} has the body parts {parts} but {individuals[0]!r} has {bodyparts}; "
                "every individual needs the same body parts in the same order",
            )
    t = len(pred.frames)
    poses = np.stack([values[:, columns[n]] for n in individuals], axis=1) if individuals else np.zeros((t, 0, 0, 3))
    order = np.argsort(pred.frames, kind="stable")
    meta = pred.metadata or {}
    identity = _identity_from_meta(meta, individuals, pred.frames, path)
    return Tracks(
        poses=poses[order],
        individuals=individuals,
        bodyparts=bodyparts,
        frames=pred.frames[order],
        scorer=pred.scorer,
        identity=None if identity is None else identity[order],
        uniquebodyparts=[pred.bodyparts[j] for j in unique_cols],
        unique=values[:, unique_cols][order] if unique_cols else None,
        skeleton=[tuple(e) for e in meta.get("skeleton") or [] if isinstance(e, (list, tuple)) and len(e) == 2],
        video=meta.get("video") if isinstance(meta.get("video"), str) else None,
    )


def _identity_from_meta(meta: dict, individuals: list[str], frames: np.ndarray, path: Path) -> np.ndarray | None:
    record = meta.get(IDENTITY_KEY)
    if not isinstance(record, dict):
        return None
    try:
        names = [str(n) for n in record["individuals"]]
        stored_frames = np.asarray(record["frames"], dtype=np.int64)
        values = np.array(record["values"], dtype=np.float64)  # None -> nan
    except (KeyError, TypeError, ValueError):
        warnings.warn(f"{path}: the identity confidence in the metadata cannot be read; left out", stacklevel=3)
        return None
    if values.shape != (len(stored_frames), len(names)) or sorted(names) != sorted(individuals):
        warnings.warn(f"{path}: the identity confidence in the metadata does not fit the table; left out", stacklevel=3)
        return None
    row = {int(f): r for r, f in enumerate(stored_frames)}
    identity = np.full((len(frames), len(individuals)), np.nan, np.float32)
    columns = [names.index(n) for n in individuals]
    for r, f in enumerate(frames):
        if int(f) in row:
            identity[r] = values[row[int(f)], columns]
    return identity


def _read_slp(path: Path) -> Tracks:
    from .sleap import PREDICTED, USER, SleapLoadError, load_slp

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            labels = load_slp(path)
    except SleapLoadError as err:
        raise TracksFileError(path, err.reason) from err
    for w in caught:
        warnings.warn(str(w.message), w.category, stacklevel=3)
    t, n_inst, k = labels.xy.shape[:3]
    values = np.concatenate([labels.xy, labels.scores[..., None]], axis=3).astype(np.float32)
    present = labels.instance_kind != ""
    if labels.track_names:
        individuals = list(labels.track_names)
        try:
            check_individuals(individuals)
        except ValueError as err:
            raise TracksFileError(path, f"the SLEAP tracks cannot be individuals: {err}") from err
        poses = np.full((t, len(individuals), k, 3), np.nan, np.float32)
        for kind in (PREDICTED, USER):  # user instances win over predictions of the same track
            f, i = np.nonzero((labels.instance_kind == kind) & (labels.instance_track >= 0))
            poses[f, labels.instance_track[f, i]] = values[f, i]
        untracked = int(np.count_nonzero(present & (labels.instance_track < 0)))
        if untracked:
            warnings.warn(
                f"{path}: {untracked} instance(s) without a track were left out; assign them to tracks in SLEAP "
                "to keep them",
                stacklevel=3,
            )
    else:
        user_on_frame = (labels.instance_kind == USER).any(axis=1, keepdims=True)
        keep = present & (~user_on_frame | (labels.instance_kind == USER))  # a user's frame drops the predictions
        n = int(keep.sum(axis=1).max(initial=0))
        individuals = [f"individual{j + 1}" for j in range(n)]
        poses = np.full((t, n, k, 3), np.nan, np.float32)
        for f in range(t):
            slots = np.flatnonzero(keep[f])
            poses[f, : len(slots)] = values[f, slots]
        if n > 1 or n_inst > 1:
            warnings.warn(
                f"{path}: the instances have no tracks, so their identities are unknown; they became "
                f"{', '.join(individuals)} by their order on each frame. Track them (or assign tracks in SLEAP) "
                "before relying on identities.",
                stacklevel=3,
            )
    video = labels.video_path if labels.video_path is not None else labels.video_stored_path
    identity = _slp_identity(path, labels, len(individuals)) if labels.track_names else None
    return Tracks(
        poses=poses,
        individuals=individuals,
        bodyparts=labels.node_names,
        frames=labels.frame_indices,
        scorer="",
        identity=identity,
        skeleton=labels.edges,
        video=None if video is None else os.fspath(video),
    )


def _slp_identity(path: Path, labels, n_individuals: int) -> np.ndarray | None:
    """The identity confidence :func:`write_tracks` keeps as tracking scores, or None.

    Only files that say so (in their provenance) have one: other SLEAP files use
    the tracking score for the tracker's own matching cost, often all zero.
    """
    import json

    import h5py

    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f["metadata"].attrs["json"])
            if (meta.get("provenance") or {}).get(_SLP_IDENTITY) != "tracking_score":
                return None
            frames = f["frames"][:]
            instances = f["instances"][:]
    except (OSError, KeyError, ValueError, TypeError):
        return None
    frames = frames[frames["video"] == labels.video_index]
    row_of = {int(fi): r for r, fi in enumerate(labels.frame_indices)}
    identity = np.full((len(labels.frame_indices), n_individuals), np.nan, np.float32)
    for frame in frames:
        r = row_of.get(int(frame["frame_idx"]))
        if r is None:
            continue
        for inst in instances[frame["instance_id_start"] : frame["instance_id_end"]]:
            if 0 <= inst["track"] < n_individuals:
                identity[r, inst["track"]] = inst["tracking_score"]
    return identity


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write_tracks(path: str | os.PathLike, tracks: Tracks, *, video: str | os.PathLike | None = None) -> list[Path]:
    """Write ``tracks`` as a DeepLabCut table (``.h5``, with its ``.csv``) or a SLEAP ``.slp``.

    ``.h5``: DeepLabCut's multi-animal layout (see the module's notes), the
    ``.csv`` and ``<stem>_meta.json`` beside it; the scorer must start with
    ``DLC`` (an empty one becomes ``DLC_posekit_tracks``). ``.slp``: one
    track per individual, a predicted instance with point scores per
    individual and frame; needs the video (``video=`` or ``tracks.video``).
    Unique body parts have no place in a SLEAP file and are left out with a
    warning. Every file is written under a temporary name and moved into
    place; returns the paths written.

    Raises:
        TracksFileError: (a ValueError) the file cannot be written; the message names it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    video = tracks.video if video is None else os.fspath(video)
    if suffix == ".slp":
        return [_write_slp(path, tracks, video)]
    if suffix != ".h5":
        raise TracksFileError(path, "tracks are written as DeepLabCut .h5 (with its .csv) or SLEAP .slp")
    return _write_table(path, tracks, video)


def _write_table(path: Path, tracks: Tracks, video: str | None) -> list[Path]:
    from .predictions import csv_path, meta_path

    scorer = tracks.scorer or _DEFAULT_SCORER
    if SINGLE in tracks.individuals:
        raise TracksFileError(
            path, f"{SINGLE!r} cannot name an individual: DeepLabCut keeps unique body parts under it"
        )
    blocks = [tracks.poses[:, i] for i in range(tracks.n_individuals)]
    owners = [name for name in tracks.individuals for _ in tracks.bodyparts]
    parts = list(tracks.bodyparts) * tracks.n_individuals
    if tracks.uniquebodyparts:
        blocks.append(tracks.unique)
        owners += [SINGLE] * len(tracks.uniquebodyparts)
        parts += tracks.uniquebodyparts
    t = tracks.n_frames
    values = np.concatenate(blocks, axis=1).astype(np.float64) if blocks else np.zeros((t, 0, 3))
    metadata: dict = {"multianimal": True, "uniquebodyparts": list(tracks.uniquebodyparts)}
    if tracks.skeleton:
        metadata["skeleton"] = [list(e) for e in tracks.skeleton]
    if video is not None:
        metadata["video"] = os.fspath(video)
    if tracks.identity is not None:
        rounded = np.round(tracks.identity.astype(np.float64), 4)
        metadata[IDENTITY_KEY] = {
            "individuals": list(tracks.individuals),
            "frames": tracks.frames.tolist(),
            "values": [[None if np.isnan(v) else float(v) for v in row] for row in rounded],
        }
    try:
        write_predictions(
            path,
            values[..., :2],
            values[..., 2],
            parts,
            scorer,
            frames=tracks.frames,
            individual_of=owners,
            metadata=metadata,
        )
    except OSError as err:
        raise TracksFileError(path, f"cannot write the file: {error_reason(err)}") from err
    except ValueError as err:
        raise TracksFileError(path, _without_path(err, path)) from err
    return [path, csv_path(path), meta_path(path)]


def _write_slp(path: Path, tracks: Tracks, video: str | None) -> Path:
    import sleap_io as sio

    if video is None:
        raise TracksFileError(path, "a SLEAP file needs the video: pass video= or set tracks.video")
    if tracks.uniquebodyparts:
        warnings.warn(
            f"{path}: SLEAP files have no unique body parts; {', '.join(tracks.uniquebodyparts)} left out",
            stacklevel=3,
        )
    nodes = list(tracks.bodyparts)
    edges = [(a, b) for a, b in tracks.skeleton if a in nodes and b in nodes]
    skeleton = sio.Skeleton(nodes=nodes, edges=[list(e) for e in edges])
    sleap_video = sio.Video(filename=os.fspath(video), open_backend=False)
    sleap_tracks = [sio.Track(name=name) for name in tracks.individuals]
    frames = []
    xy = tracks.poses[..., :2].astype(np.float64)
    scores = np.nan_to_num(tracks.poses[..., 2].astype(np.float64), nan=0.0)
    placed = np.isfinite(xy).all(axis=3)  # (T, I, K)
    for f in range(tracks.n_frames):
        instances = []
        for i in np.flatnonzero(placed[f].any(axis=1)):
            points = np.where(placed[f, i, :, None], xy[f, i], np.nan)
            score = float(np.mean(scores[f, i][placed[f, i]]))
            tracking = None if tracks.identity is None or np.isnan(tracks.identity[f, i]) else tracks.identity[f, i]
            instances.append(
                sio.PredictedInstance.from_numpy(
                    points_data=points,
                    skeleton=skeleton,
                    point_scores=scores[f, i],
                    score=score,
                    track=sleap_tracks[i],
                    tracking_score=None if tracking is None else float(tracking),
                )
            )
        if instances:
            frames.append(sio.LabeledFrame(video=sleap_video, frame_idx=int(tracks.frames[f]), instances=instances))
    labels = sio.Labels(labeled_frames=frames, videos=[sleap_video], skeletons=[skeleton], tracks=sleap_tracks)
    if tracks.identity is not None:
        labels.provenance[_SLP_IDENTITY] = "tracking_score"

    def write(tmp: Path) -> None:
        sio.save_slp(labels, os.fspath(tmp), verbose=False)

    try:
        write_atomically({path: write})
    except OSError as err:
        raise TracksFileError(path, f"cannot write the file: {error_reason(err)}") from err
    return path


def __getattr__(name: str):
    # the labels of multi-animal projects live in their own module
    if name in ("MultiAnimalLabels", "read_multianimal_labels", "write_multianimal_labels"):
        from . import multianimal_labels

        return getattr(multianimal_labels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
