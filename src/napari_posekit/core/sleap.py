"""SLEAP labels (``.slp``) as plain arrays, read with sleap-io.

A SLEAP file holds a skeleton (named nodes and edges), tracks (identities),
videos, and labeled frames with user-placed and predicted instances. This
module turns the labels of one video into dense NumPy arrays::

    labels = load_slp("session1.slp")
    labels.xy.shape        # (n_labeled_frames, n_instances_max, n_nodes, 2), (x, y), NaN = missing
    labels.frame_indices   # video frame number of each row, sorted
    labels.to_dataframe()  # one row per placed point

Every instance of a labeled frame is kept, in the order SLEAP stores them,
user instances and predictions alike; ``instance_kind`` tells them apart.
Frames with fewer instances than the busiest one are padded with NaN.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SleapLabels", "SleapLoadError", "load_slp", "resolve_video_path"]

USER = "user"
PREDICTED = "predicted"


class SleapLoadError(ValueError):
    """A file that cannot be read as SLEAP labels; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class SleapLabels:
    """The labels of one video of a SLEAP file, as dense arrays.

    Attributes:
        path: The ``.slp`` file.
        video_path: The video found on disk (see :func:`resolve_video_path`), or None.
        video_stored_path: The video path as written in the file.
        video_shape: ``(n_frames, height, width)`` of the video when known, else None.
        video_index: Which of the file's videos these labels belong to.
        n_videos: How many videos the file lists.
        node_names: Skeleton node names, in skeleton order.
        edges: Skeleton edges as ``(source, destination)`` node-name pairs.
        track_names: Names of all tracks in the file; ``instance_track`` indexes them.
        frame_indices: ``(F,)`` sorted video frame numbers of the labeled frames.
        xy: ``(F, I, N, 2)`` float ``(x, y)`` coordinates; NaN for missing or
            invisible points and for padding instances.
        scores: ``(F, I, N)`` point scores: the model's confidence for predicted
            instances, 1.0 for points placed by a user, NaN where ``xy`` is NaN.
        instance_kind: ``(F, I)`` ``"user"``, ``"predicted"``, or ``""`` for padding.
        instance_track: ``(F, I)`` track index into ``track_names``, -1 when untracked or padding.
        instance_score: ``(F, I)`` instance score of predicted instances, NaN otherwise.
    """

    path: Path
    video_path: Path | None
    video_stored_path: str | None
    video_shape: tuple[int, int, int] | None
    video_index: int
    n_videos: int
    node_names: list[str]
    edges: list[tuple[str, str]]
    track_names: list[str]
    frame_indices: np.ndarray
    xy: np.ndarray
    scores: np.ndarray
    instance_kind: np.ndarray
    instance_track: np.ndarray
    instance_score: np.ndarray

    @property
    def n_labeled_frames(self) -> int:
        """Number of labeled frames (rows of ``xy``)."""
        return self.xy.shape[0]

    @property
    def n_instances_max(self) -> int:
        """Most instances on one labeled frame (second axis of ``xy``)."""
        return self.xy.shape[1]

    @property
    def n_nodes(self) -> int:
        """Number of skeleton nodes."""
        return len(self.node_names)

    @property
    def edge_indices(self) -> list[tuple[int, int]]:
        """Skeleton edges as pairs of node indices."""
        index = {name: k for k, name in enumerate(self.node_names)}
        return [(index[a], index[b]) for a, b in self.edges]

    def individual_names(self) -> np.ndarray:
        """``(F, I)`` object array naming each instance.

        The track name for tracked instances, ``instance_<k>`` (``k`` the
        instance's position on its frame) for untracked ones, ``""`` for padding.
        """
        names = np.full(self.instance_kind.shape, "", dtype=object)
        tracks = np.asarray(self.track_names + [""], dtype=object)  # index -1 -> ""
        present = self.instance_kind != ""
        tracked = present & (self.instance_track >= 0)
        names[tracked] = tracks[self.instance_track[tracked]]
        _, slot = np.nonzero(present & ~tracked)
        names[present & ~tracked] = [f"instance_{k}" for k in slot]
        return names

    def to_dataframe(self) -> pd.DataFrame:
        """One row per placed point (NaN points left out).

        Columns: ``frame``, ``instance`` (position on the frame), ``individual``
        (see :meth:`individual_names`), ``track`` (name, ``""`` if untracked),
        ``kind``, ``node`` (categorical in skeleton order), ``x``, ``y``, ``score``.
        Rows are ordered by frame, instance and node.
        """
        f, i, n = np.nonzero(~np.isnan(self.xy).any(axis=-1))
        tracks = np.asarray(self.track_names + [""], dtype=object)  # index -1 -> ""
        return pd.DataFrame(
            {
                "frame": self.frame_indices[f],
                "instance": i,
                "individual": self.individual_names()[f, i],
                "track": tracks[self.instance_track[f, i]],
                "kind": self.instance_kind[f, i].astype(object),
                "node": pd.Categorical.from_codes(n, categories=self.node_names),
                "x": self.xy[f, i, n, 0],
                "y": self.xy[f, i, n, 1],
                "score": self.scores[f, i, n],
            }
        )


def load_slp(path: str | os.PathLike, video_index: int | None = None) -> SleapLabels:
    """Read the labels of one video of a SLEAP ``.slp`` file.

    Args:
        path: The ``.slp`` file.
        video_index: Which video's labels to read. By default the first one; a
            file that lists several videos then gets a warning saying so.

    Raises:
        SleapLoadError: (a ``ValueError``) for a missing file, a folder, a file
            that is not SLEAP labels, a file without a skeleton, or a
            ``video_index`` out of range. The message names the file and the reason.
    """
    from sleap_io import PredictedInstance

    path = Path(path)
    labels = _read_labels(path)

    n_videos = len(labels.videos)
    if n_videos == 0:
        raise SleapLoadError(path, "the SLEAP file lists no video")
    if video_index is None:
        video_index = 0
        if n_videos > 1:
            warnings.warn(
                f"{path} lists {n_videos} videos; loading the labels of the first "
                f"({_stored_path(labels.videos[0], path)}). Pass video_index to choose another.",
                stacklevel=2,
            )
    elif not -n_videos <= video_index < n_videos:
        raise SleapLoadError(path, f"video_index {video_index} out of range: the file lists {n_videos} video(s)")
    video_index = video_index % n_videos
    video = labels.videos[video_index]

    frames = sorted((lf for lf in labels.labeled_frames if lf.video is video), key=lambda lf: lf.frame_idx)
    skeleton = _skeleton_of(labels, frames, path)
    track_index = {id(track): k for k, track in enumerate(labels.tracks)}
    track_by_name = {track.name: k for k, track in enumerate(labels.tracks)}

    n_nodes = len(skeleton.nodes)
    skipped = 0
    rows: list[list] = []
    for lf in frames:
        kept = []
        for inst in lf.instances:
            if inst.skeleton is not skeleton:
                skipped += 1
                continue
            kept.append(inst)
        rows.append(kept)
    if skipped:
        warnings.warn(
            f"{path}: {skipped} instance(s) use a second skeleton and were left out; the labels follow "
            f"the skeleton with nodes {', '.join(skeleton.node_names)}",
            stacklevel=2,
        )

    n_frames = len(frames)
    n_inst = max((len(r) for r in rows), default=0)
    xy = np.full((n_frames, n_inst, n_nodes, 2), np.nan)
    scores = np.full((n_frames, n_inst, n_nodes), np.nan)
    kind = np.full((n_frames, n_inst), "", dtype="<U9")
    track = np.full((n_frames, n_inst), -1, dtype=np.int64)
    inst_score = np.full((n_frames, n_inst), np.nan)
    for f, instances in enumerate(rows):
        for i, inst in enumerate(instances):
            pts = inst.numpy()  # invisible points are NaN
            xy[f, i] = pts
            missing = np.isnan(pts).any(axis=1)
            if isinstance(inst, PredictedInstance):
                kind[f, i] = PREDICTED
                scores[f, i] = np.where(missing, np.nan, inst.points["score"])
                inst_score[f, i] = inst.score
            else:
                kind[f, i] = USER
                scores[f, i] = np.where(missing, np.nan, 1.0)
            if inst.track is not None:
                track[f, i] = track_index.get(id(inst.track), track_by_name.get(inst.track.name, -1))

    video_path = resolve_video_path(video, path)
    return SleapLabels(
        path=path,
        video_path=video_path,
        video_stored_path=_stored_path(video, path),
        video_shape=_video_shape(video, video_path, path),
        video_index=video_index,
        n_videos=n_videos,
        node_names=list(skeleton.node_names),
        edges=[tuple(e) for e in skeleton.edge_names],
        track_names=[t.name for t in labels.tracks],
        frame_indices=np.asarray([lf.frame_idx for lf in frames], dtype=np.int64),
        xy=xy,
        scores=scores,
        instance_kind=kind,
        instance_track=track,
        instance_score=inst_score,
    )


def resolve_video_path(video, slp_path: str | os.PathLike) -> Path | None:
    """The video file of a sleap-io ``Video`` as found on disk, or None.

    Tried in order: the stored path (a relative one against the ``.slp``'s
    folder, then the working directory), then a file with the same name beside
    the ``.slp``. Videos embedded in the ``.slp`` (``.pkg.slp``) resolve to their
    source video when the file records one. Image sequences resolve to None.
    """
    slp_path = Path(slp_path)
    stored = _stored_path(video, slp_path)
    if stored is None:
        return None
    stored_path = Path(stored)
    candidates = [stored_path] if stored_path.is_absolute() else [slp_path.parent / stored_path, stored_path]
    candidates.append(slp_path.parent / re.split(r"[\\/]", stored)[-1])
    for candidate in candidates:
        if candidate.is_file() and not _same_file(candidate, slp_path):
            return candidate.resolve()
    return None


def _read_labels(path: Path):
    """sleap-io ``Labels`` of ``path`` (lazily, videos not opened), or a SleapLoadError."""
    import h5py
    import sleap_io

    if not path.exists():
        raise SleapLoadError(path, "file not found")
    if path.is_dir():
        raise SleapLoadError(path, "is a folder, not a SLEAP labels file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as err:
        raise SleapLoadError(path, f"cannot be read ({err})") from err
    if not is_hdf5:
        raise SleapLoadError(path, "not a SLEAP labels file (not an HDF5 file)")
    try:
        return sleap_io.load_slp(os.fspath(path), open_videos=False, lazy=True)
    except Exception as err:  # sleap-io raises many kinds of errors on foreign HDF5 files
        reason = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise SleapLoadError(path, f"not a SLEAP labels file or damaged ({reason})") from err


def _skeleton_of(labels, frames, path: Path):
    """The skeleton of the video's instances (the first one used), else the file's first."""
    for lf in frames:
        for inst in lf.instances:
            return inst.skeleton
    if not labels.skeletons:
        raise SleapLoadError(path, "the SLEAP file has no skeleton")
    return labels.skeletons[0]


def _stored_path(video, slp_path: Path) -> str | None:
    """The path a video's media lives at, as stored (the source video of embedded frames)."""
    if isinstance(video.filename, list):  # image sequence
        return None
    if _is_embedded(video, slp_path):
        # frames embedded in the .slp (a .pkg.slp): show the source video when it is recorded
        source = getattr(video, "source_video", None)
        if source is None or isinstance(source.filename, list):
            return None
        return str(source.filename)
    return str(video.filename)


def _is_embedded(video, slp_path: Path) -> bool:
    """Whether the video's frames are stored inside the ``.slp`` itself."""
    filename = video.filename
    if isinstance(filename, list):
        return False
    return os.fspath(filename) == os.fspath(slp_path) or _same_file(Path(filename), slp_path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _video_shape(video, video_path: Path | None, slp_path: Path) -> tuple[int, int, int] | None:
    """``(n_frames, height, width)`` from the video's headers, else as recorded in the file.

    The record of embedded frames describes those frames, not the source video, so it is not used.
    """
    meta = _read_video_metadata(video_path) if video_path is not None else None
    if meta is not None:
        return meta.n_frames, meta.height, meta.width
    shape = video.backend_metadata.get("shape")
    if shape is not None and len(shape) >= 3 and not _is_embedded(video, slp_path):
        return int(shape[0]), int(shape[1]), int(shape[2])
    return None


def _read_video_metadata(video_path: Path):
    """The video's metadata from its headers, or None when it cannot be read.

    The shape is optional here; the napari reader reports an unreadable video when it opens it.
    """
    from napari_posekit.core.video import VideoError, read_metadata

    try:
        return read_metadata(video_path)
    except (VideoError, OSError, ValueError):
        return None
