"""SLEAP labels turned into a DeepLabCut-compatible posekit project (single animal).

One or more SLEAP ``.slp`` files (for instance the views of a multi-camera
session, one file per camera) become one project; other files that sleap-io's
``load_file`` reads (a SLEAP analysis ``.h5``, NWB, JABS) are read through it,
as long as their labels are on the frames of video files::

    result = import_labels(["back.slp", "top.slp"], "/data/mouse3d", scorer="anna")
    result.config          # /data/mouse3d/config.yaml
    result.views[0].folder # /data/mouse3d/labeled-data/<video stem>

The project's body parts are the skeleton's node names, its ``skeleton`` the
skeleton's edges, and every video of the files gets a ``video_sets`` entry
(its crop is the whole frame). Each labeled frame is written as a PNG with
DeepLabCut's name (``labeled-data/<video stem>/img0042.png``) and the points
go into ``CollectedData_<scorer>.h5``/``.csv`` in that folder, NaN for nodes
not placed.

Which instance of a frame is imported: the user instance (a point a person
placed). SLEAP keeps a model's prediction beside the user instance that
corrects it, so predictions are left out, unless ``include_predicted`` is
set: then a frame without a user instance takes its predicted instance
(files of proofread predictions hold nothing else). A frame with two or more
such instances, or labels spread over several tracks, is multi-animal, which
is not supported yet: the import refuses and names the frames.

Everything is checked before anything is written: the files, their
skeletons (all files must share one), the videos. The project is built in a
hidden folder beside its destination and renamed into place at the end, so a
failure or a stop leaves nothing behind. The destination must not exist or be
an empty folder.

Everything here is napari-free.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._generators import drive
from .sleap import PREDICTED, USER, SleapLabels, SleapLoadError, load_slp

__all__ = ["ImportedVideo", "LabelsImportError", "SleapImport", "import_labels", "iter_import_labels", "read_sources"]

#: Scorer of the CollectedData files when none is given.
DEFAULT_SCORER = "sleap"


class LabelsImportError(ValueError):
    """Labels that cannot become a project; the message names the file (or folder) and the reason."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


@dataclass
class ImportedVideo:
    """The labels of one video, ready to be written (after :func:`read_sources`) or written.

    Attributes:
        labels_path: The SLEAP file.
        video_index: Which of the file's videos.
        video: The video file the frames are read from.
        frames: ``(F,)`` video frame numbers that get an image and a row, sorted.
        xy: ``(F, N, 2)`` points in the project's body-part order, NaN where not placed.
        predicted_frames: How many of ``frames`` took a predicted instance.
        skipped_frames: Labeled frames left out: no user instance (predictions not
            included) or no point placed.
        folder: The ``labeled-data/<video stem>`` folder, once written.
        images: The images written, in the order of ``frames``, once written.
    """

    labels_path: Path
    video_index: int
    video: Path
    frames: np.ndarray
    xy: np.ndarray
    predicted_frames: int = 0
    skipped_frames: int = 0
    folder: Path | None = None
    images: list[Path] = field(default_factory=list)


@dataclass
class SleapImport:
    """A project made from SLEAP labels: its folder, ``config.yaml``, body parts, skeleton and videos."""

    project: Path
    config: Path
    scorer: str
    bodyparts: list[str]
    skeleton: list[tuple[str, str]]
    videos: list[ImportedVideo]

    @property
    def n_frames(self) -> int:
        """Labeled frames written, over all videos."""
        return sum(len(v.frames) for v in self.videos)


# -- reading and checking ----------------------------------------------------------------
def _load(path: Path, video_index: int) -> SleapLabels:
    try:
        return load_slp(path, video_index)
    except SleapLoadError as err:
        raise LabelsImportError(path, err.reason) from err
    except OSError as err:
        raise LabelsImportError(path, f"cannot be read ({err})") from err


def _file_labels(path: Path) -> list[SleapLabels]:
    """The labels of every video of a SLEAP file (or of another format sleap-io reads)."""
    if path.suffix.lower() != ".slp" and path.is_file():
        return _foreign_labels(path)
    first = _load(path, 0)
    return [first] + [_load(path, k) for k in range(1, first.n_videos)]


def _foreign_labels(path: Path) -> list[SleapLabels]:
    """Labels of a format sleap-io's ``load_file`` reads (SLEAP analysis ``.h5``, NWB, JABS ...).

    They go through a temporary ``.slp`` so that they are read exactly as SLEAP files are;
    each video is then looked for from the original file's place. Videos must be video
    files: labeled image sets (COCO, Label Studio, DeepLabCut folders) are refused.
    """
    import sleap_io

    from .sleap import resolve_video_path

    try:
        labels = sleap_io.load_file(os.fspath(path))
    except Exception as err:  # sleap-io raises many kinds of errors on files it cannot read
        raise LabelsImportError(path, f"cannot be read as labels by sleap-io ({type(err).__name__}: {err})") from err
    if not isinstance(getattr(labels, "labeled_frames", None), list):
        raise LabelsImportError(path, "holds no labels (sleap-io reads it as a video)")
    sequences = [v for v in labels.videos if isinstance(v.filename, list)]
    if sequences:
        raise LabelsImportError(
            path, "its labels are on image files, not video frames; only labels of videos can be imported yet"
        )
    with tempfile.TemporaryDirectory(prefix="posekit-import-") as folder:
        copy = Path(folder) / f"{path.stem}.slp"
        try:
            sleap_io.save_slp(labels, os.fspath(copy))
        except Exception as err:
            raise LabelsImportError(path, f"cannot be converted to SLEAP labels ({type(err).__name__}: {err})") from err
        read = _file_labels(copy)
    for item, video in zip(read, labels.videos):
        item.path = path
        item.video_path = resolve_video_path(video, path)
    return read


def _edge_set(edges) -> set[frozenset[str]]:
    return {frozenset(e) for e in edges}


def _skeleton_difference(labels: SleapLabels, reference: SleapLabels) -> str | None:
    """Why ``labels``' skeleton is not ``reference``'s (node names and undirected edges), or None."""
    here, there = set(labels.node_names), set(reference.node_names)
    if here != there:
        parts = []
        if here - there:
            parts.append(f"nodes only here: {sorted(here - there)}")
        if there - here:
            parts.append(f"nodes only there: {sorted(there - here)}")
        return "; ".join(parts)
    mine, theirs = _edge_set(labels.edges), _edge_set(reference.edges)
    if mine != theirs:
        fmt = lambda edges: sorted("-".join(sorted(e)) for e in edges)
        parts = []
        if mine - theirs:
            parts.append(f"edges only here: {fmt(mine - theirs)}")
        if theirs - mine:
            parts.append(f"edges only there: {fmt(theirs - mine)}")
        return "; ".join(parts)
    return None


def _frame_list(frames: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(f)) for f in frames[:limit])
    return shown + (f" ... ({len(frames)} frames)" if len(frames) > limit else "")


def _chosen_instances(labels: SleapLabels, include_predicted: bool) -> np.ndarray:
    """``(F, I)`` bool: the instances imported on each frame (user ones, else predicted ones when allowed)."""
    user = labels.instance_kind == USER
    if not include_predicted:
        return user
    predicted = labels.instance_kind == PREDICTED
    return user | (predicted & ~user.any(axis=1, keepdims=True))


def _single_animal(labels: SleapLabels, chosen: np.ndarray, include_predicted: bool) -> None:
    """Refuse labels of several animals on one frame or over several tracks."""
    where = f" (video {labels.video_index})" if labels.n_videos > 1 else ""
    crowded = labels.frame_indices[chosen.sum(axis=1) > 1]
    if len(crowded):
        kind = "user or predicted" if include_predicted else "user"
        raise LabelsImportError(
            labels.path,
            f"several {kind} instances on frames {_frame_list(crowded)}{where}: multi-animal labels "
            f"cannot be imported yet (one animal per frame)",
        )
    tracks = sorted({labels.track_names[t] for t in labels.instance_track[chosen] if t >= 0})
    if len(tracks) > 1:
        raise LabelsImportError(
            labels.path,
            f"the labels{where} follow several tracks ({', '.join(tracks)}): multi-animal labels "
            f"cannot be imported yet (one animal, one track at most)",
        )


def _resolve_video(labels: SleapLabels, video: Path | None) -> Path:
    if video is not None:
        if not video.is_file():
            raise LabelsImportError(video, "no such video file")
        return video.resolve()
    if labels.video_path is not None:
        return labels.video_path
    stored = labels.video_stored_path or "(not recorded: an image sequence or embedded frames)"
    raise LabelsImportError(
        labels.path,
        f"its video is not found: the stored path {stored} does not exist and no file of that name lies "
        f"beside the labels; pass --video (with one labels file) or put the video beside it",
    )


def _imported_video(labels: SleapLabels, bodyparts: list[str], video: Path, include_predicted: bool) -> ImportedVideo:
    chosen = _chosen_instances(labels, include_predicted)
    _single_animal(labels, chosen, include_predicted)
    order = [labels.node_names.index(name) for name in bodyparts]
    n_frames = labels.n_labeled_frames
    xy = np.full((n_frames, len(bodyparts), 2), np.nan)
    rows, slots = np.nonzero(chosen)
    xy[rows] = labels.xy[rows, slots][:, order]
    keep = ~np.isnan(xy).all(axis=(1, 2))
    predicted = chosen & (labels.instance_kind == PREDICTED)
    return ImportedVideo(
        labels_path=labels.path,
        video_index=labels.video_index,
        video=video,
        frames=labels.frame_indices[keep],
        xy=xy[keep],
        predicted_frames=int((predicted.any(axis=1) & keep).sum()),
        skipped_frames=int((~keep).sum()),
    )


def read_sources(
    label_files: Sequence[str | os.PathLike],
    video: str | os.PathLike | None = None,
    *,
    include_predicted: bool = False,
) -> tuple[list[str], list[tuple[str, str]], list[ImportedVideo]]:
    """Read and check SLEAP files for an import; writes nothing.

    Returns the body parts (the first file's node order), the skeleton edges
    and one :class:`ImportedVideo` per video of the files. ``video`` names the
    video of a single labels file holding one video; otherwise each video is
    the file's stored path, else the file of that name beside the labels.

    Raises :class:`LabelsImportError` for an unreadable file, skeletons that
    differ between files, multi-animal labels, a missing video, a file without
    usable labels, or two label sets for one video.
    """
    paths = [Path(p).expanduser() for p in label_files]
    if not paths:
        raise LabelsImportError(None, "no labels files given")
    video_path = None if video is None else Path(video).expanduser()
    all_labels = [labels for path in paths for labels in _file_labels(path)]
    if video_path is not None and len(all_labels) > 1:
        raise LabelsImportError(
            video_path, f"--video names the video of one labels file with one video; {len(all_labels)} videos given"
        )
    reference = all_labels[0]
    for labels in all_labels[1:]:
        difference = _skeleton_difference(labels, reference)
        if difference:
            raise LabelsImportError(labels.path, f"its skeleton differs from that of {reference.path}: {difference}")
    bodyparts = list(reference.node_names)
    edges = [tuple(e) for e in reference.edges]
    imported, seen = [], {}
    for labels in all_labels:
        found = _resolve_video(labels, video_path)
        if found in seen:
            raise LabelsImportError(labels.path, f"its video {found} has labels from {seen[found]} already")
        seen[found] = labels.path
        item = _imported_video(labels, bodyparts, found, include_predicted)
        if len(item.frames) == 0:
            raise LabelsImportError(labels.path, _nothing_to_import(labels))
        imported.append(item)
    return bodyparts, edges, imported


def _nothing_to_import(labels: SleapLabels) -> str:
    n_predicted = int((labels.instance_kind == PREDICTED).sum())
    if n_predicted and not (labels.instance_kind == USER).any():
        return (
            f"no user-labeled instances, only {n_predicted} predicted ones; import them with "
            f"--include-predicted (e.g. proofread predictions)"
        )
    return f"no labeled points (of {labels.n_labeled_frames} labeled frames)"


# -- writing -------------------------------------------------------------------------------
def _check_destination(project: Path) -> None:
    if project.exists() and (not project.is_dir() or any(project.iterdir())):
        raise LabelsImportError(project, "exists already and is not an empty folder; nothing was written")
    if not project.parent.is_dir():
        raise LabelsImportError(project, f"the folder {project.parent} does not exist")


def _move_paths(config_path: Path, built: Path, project: Path) -> None:
    """Point the config's ``project_path`` and ``video_sets`` at the project's final place."""
    from .config import read_config, write_config

    config = read_config(config_path)
    config["project_path"] = str(project)
    prefix = str(built)
    config["video_sets"] = {
        (str(project) + key[len(prefix) :] if key.startswith(prefix) else key): value
        for key, value in config["video_sets"].items()
    }
    write_config(config_path, config)


def _write_video_labels(item: ImportedVideo, project: Path, scorer: str, bodyparts: list[str]):
    """Extract the frames and write the CollectedData of one video; yields its fraction done."""
    from .collected_data import arrays_to_collected, write_collected
    from .frames import iter_extract_frames

    try:
        extracted = yield from iter_extract_frames(item.video, item.frames.tolist(), project / "labeled-data")
    except ValueError as err:  # frames past the video's end: labels of another video
        raise LabelsImportError(item.labels_path, f"does not match its video: {err}") from err
    item.folder = extracted.folder
    item.images = list(extracted.paths)
    keys = [f"labeled-data/{extracted.folder.name}/{p.name}" for p in extracted.paths]
    df = arrays_to_collected(keys, bodyparts, item.xy, scorer, index_style="multi")
    write_collected(df, extracted.folder, scorer)


def iter_import_labels(
    label_files: Sequence[str | os.PathLike],
    project: str | os.PathLike,
    *,
    video: str | os.PathLike | None = None,
    scorer: str = DEFAULT_SCORER,
    include_predicted: bool = False,
    date: _dt.date | None = None,
) -> Generator[float, None, SleapImport]:
    """Generator form of :func:`import_labels`: yields the fraction done, returns the :class:`SleapImport`.

    Closing the generator stops the import and removes what it had built.
    """
    from .project import ProjectError, create_project

    project = Path(project).expanduser().absolute()
    _check_destination(project)
    bodyparts, edges, items = read_sources(label_files, video, include_predicted=include_predicted)
    yield 0.05
    staging = Path(tempfile.mkdtemp(prefix=f".{project.name}.importing-", dir=project.parent))
    try:
        try:
            config = create_project(
                staging, project.name, scorer, [i.video for i in items], bodyparts, edges, date=date
            )
        except ProjectError as err:
            raise LabelsImportError(err.path or project, err.reason) from err
        built = config.parent
        _move_paths(config, built, project)
        total = sum(len(i.frames) for i in items)
        done = 0
        for item in items:
            for fraction in _write_video_labels(item, built, scorer, bodyparts):
                yield 0.05 + 0.9 * (done + fraction * len(item.frames)) / total
            done += len(item.frames)
        _check_destination(project)
        if project.exists():
            project.rmdir()
        os.replace(built, project)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for item in items:
        item.folder = project / "labeled-data" / item.folder.name
        item.images = [item.folder / p.name for p in item.images]
    yield 1.0
    return SleapImport(
        project=project,
        config=project / "config.yaml",
        scorer=scorer,
        bodyparts=bodyparts,
        skeleton=edges,
        videos=items,
    )


def import_labels(
    label_files: Sequence[str | os.PathLike],
    project: str | os.PathLike,
    *,
    video: str | os.PathLike | None = None,
    scorer: str = DEFAULT_SCORER,
    include_predicted: bool = False,
    progress: Callable[[float], None] | None = None,
) -> SleapImport:
    """Make the single-animal project ``project`` from SLEAP label files.

    ``project`` is the project folder itself (its name becomes the ``Task``);
    it must not exist, or be an empty folder, and its parent must exist.
    ``video`` names the video of a single labels file (else it is found as
    :func:`read_sources` says), ``scorer`` names the CollectedData files, and
    ``include_predicted`` imports a frame's predicted instance when it has no
    user instance. ``progress`` gets the fraction done.

    Raises :class:`LabelsImportError` (a ``ValueError``) naming the file and
    the reason; nothing is left on disk then.
    """
    work = iter_import_labels(label_files, project, video=video, scorer=scorer, include_predicted=include_predicted)
    return drive(work, progress)
