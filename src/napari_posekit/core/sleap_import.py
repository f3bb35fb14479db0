"""SLEAP labels turned into a DeepLabCut-compatible posekit project, single- or multi-animal.

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
(files of proofread predictions hold nothing else).

Labels with two or more such instances on a frame, or spread over several
tracks, make a multi-animal project (``multianimalproject: true``): the
tracks become the ``individuals``, in the files' track order, the nodes the
``multianimalbodyparts``, and CollectedData gets DeepLabCut's multi-animal
columns. Instances without tracks become ``individual1``, ``individual2``
... by their order on each frame, with a warning (their identities are not
known). An animal absent from some frames is normal; two instances of one
track on a frame, two tracks with one name, and tracked and untracked
instances mixed are refused with the frames or names.

``every`` keeps one labeled frame in ``every`` and ``frames`` only the given
video frame numbers, e.g. to make a quick project of a densely labeled clip.

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
import warnings
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
        xy: ``(F, N, 2)`` points in the project's body-part order, NaN where not placed;
            ``(F, I, N, 2)`` for a multi-animal project (``I`` individuals).
        predicted_frames: How many of ``frames`` took a predicted instance.
        skipped_frames: Labeled frames left out: no user instance (predictions not
            included) or no point placed.
        unselected_frames: Labeled frames left out by the frame choice (``every``, ``frames``).
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
    unselected_frames: int = 0
    folder: Path | None = None
    images: list[Path] = field(default_factory=list)
    individuals: list[str] | None = None


@dataclass
class SleapImport:
    """A project made from SLEAP labels: its folder, ``config.yaml``, body parts, skeleton and videos."""

    project: Path
    config: Path
    scorer: str
    bodyparts: list[str]
    skeleton: list[tuple[str, str]]
    videos: list[ImportedVideo]
    individuals: list[str] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def multianimal(self) -> bool:
        """Whether the project is a multi-animal one."""
        return self.individuals is not None

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


def _chosen_instances(
    labels: SleapLabels,
    include_predicted: bool,
    every: int = 1,
    frames: Sequence[int] | None = None,
) -> np.ndarray:
    """``(F, I)`` bool: the instances imported on each frame (user ones, else predicted ones when allowed).

    Only frames in ``frames`` (when given) count, and of the frames left with
    an instance, one in ``every``.
    """
    user = labels.instance_kind == USER
    chosen = user
    if include_predicted:
        predicted = labels.instance_kind == PREDICTED
        chosen = user | (predicted & ~user.any(axis=1, keepdims=True))
    if frames is not None:
        chosen = chosen & np.isin(labels.frame_indices, np.asarray(list(frames), dtype=np.int64))[:, None]
    if every > 1:
        rows = np.flatnonzero(chosen.any(axis=1))
        dropped = np.setdiff1d(rows, rows[::every])
        chosen = chosen.copy()
        chosen[dropped] = False
    return chosen


def _used_tracks(labels: SleapLabels, chosen: np.ndarray) -> list[int]:
    """Track indices of the chosen instances, in the file's track order."""
    return sorted({int(t) for t in labels.instance_track[chosen] if t >= 0})


def _needs_multianimal(labels: SleapLabels, chosen: np.ndarray) -> bool:
    """Several chosen instances on one frame, or chosen instances on several tracks."""
    return bool((chosen.sum(axis=1) > 1).any()) or len(_used_tracks(labels, chosen)) > 1


def _where(labels: SleapLabels) -> str:
    return f" (video {labels.video_index})" if labels.n_videos > 1 else ""


def _tracked_individuals(sources: list[tuple[SleapLabels, np.ndarray]]) -> list[str]:
    """The used tracks' names over all files, in track order; refuses shared names and untracked instances."""
    names: list[str] = []
    for labels, chosen in sources:
        used = _used_tracks(labels, chosen)
        used_names = [labels.track_names[t] for t in used]
        twice = sorted({n for n in used_names if used_names.count(n) > 1})
        if twice:
            raise LabelsImportError(
                labels.path,
                f"several tracks are named {', '.join(map(repr, twice))}{_where(labels)}; each animal needs its "
                "own name: rename the tracks in SLEAP and import again",
            )
        empty = [t for t in used if not labels.track_names[t].strip()]
        if empty:
            raise LabelsImportError(labels.path, f"a track without a name{_where(labels)}; name it in SLEAP")
        untracked = labels.frame_indices[(chosen & (labels.instance_track < 0)).any(axis=1)]
        if len(untracked):
            raise LabelsImportError(
                labels.path,
                f"instances without a track on frames {_frame_list(untracked)}{_where(labels)}, while other "
                "instances have tracks: assign every instance to a track in SLEAP and import again",
            )
        names += [n for n in used_names if n not in names]
    return names


def _individuals(sources: list[tuple[SleapLabels, np.ndarray]]) -> tuple[list[str], bool]:
    """``(individuals, tracked)`` of multi-animal labels; untracked instances by order, with a warning."""
    if any((chosen & (labels.instance_track >= 0)).any() for labels, chosen in sources):
        return _tracked_individuals(sources), True
    n = max(int(chosen.sum(axis=1).max(initial=0)) for _, chosen in sources)
    individuals = [f"individual{k + 1}" for k in range(n)]
    files = ", ".join(dict.fromkeys(str(labels.path) for labels, _ in sources))
    warnings.warn(
        f"{files}: the instances have no tracks, so the animals' identities are unknown; they became "
        f"{', '.join(individuals)} by their order on each frame. Check the identities before training on them.",
        UserWarning,
        stacklevel=3,
    )
    return individuals, False


def _multianimal_xy(
    labels: SleapLabels, chosen: np.ndarray, order: list[int], individuals: list[str], tracked: bool
) -> np.ndarray:
    """``(F, I, N, 2)``: each chosen instance in its individual's column."""
    rows, slots = np.nonzero(chosen)
    if tracked:
        column = {name: i for i, name in enumerate(individuals)}
        cols = np.array([column[labels.track_names[t]] for t in labels.instance_track[rows, slots]], dtype=np.int64)
        pairs = rows * len(individuals) + cols
        _, first, counts = np.unique(pairs, return_index=True, return_counts=True)
        if (counts > 1).any():
            twice = first[counts > 1]
            raise LabelsImportError(
                labels.path,
                f"two instances of track {individuals[cols[twice[0]]]!r} on frames "
                f"{_frame_list(labels.frame_indices[rows[twice]])}{_where(labels)}: one animal per track and frame",
            )
    else:
        cols = (np.cumsum(chosen, axis=1) - 1)[rows, slots]
    xy = np.full((labels.n_labeled_frames, len(individuals), len(order), 2), np.nan)
    xy[rows, cols] = labels.xy[rows, slots][:, order]
    return xy


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


def _imported_video(
    labels: SleapLabels, chosen: np.ndarray, bodyparts: list[str], video: Path, multi: tuple[list[str], bool] | None
) -> ImportedVideo:
    order = [labels.node_names.index(name) for name in bodyparts]
    if multi is None:
        xy = np.full((labels.n_labeled_frames, len(bodyparts), 2), np.nan)
        rows, slots = np.nonzero(chosen)
        xy[rows] = labels.xy[rows, slots][:, order]
        keep = ~np.isnan(xy).all(axis=(1, 2))
    else:
        xy = _multianimal_xy(labels, chosen, order, *multi)
        keep = ~np.isnan(xy).all(axis=(1, 2, 3))
    predicted = chosen & (labels.instance_kind == PREDICTED)
    return ImportedVideo(
        labels_path=labels.path,
        video_index=labels.video_index,
        video=video,
        frames=labels.frame_indices[keep],
        xy=xy[keep],
        predicted_frames=int((predicted.any(axis=1) & keep).sum()),
        skipped_frames=int((~keep).sum()),
        individuals=None if multi is None else list(multi[0]),
    )


def read_sources(
    label_files: Sequence[str | os.PathLike],
    video: str | os.PathLike | None = None,
    *,
    include_predicted: bool = False,
    every: int = 1,
    frames: Sequence[int] | None = None,
) -> tuple[list[str], list[tuple[str, str]], list[ImportedVideo]]:
    """Read and check SLEAP files for an import; writes nothing.

    Returns the body parts (the first file's node order), the skeleton edges
    and one :class:`ImportedVideo` per video of the files. ``video`` names the
    video of a single labels file holding one video; otherwise each video is
    the file's stored path, else the file of that name beside the labels.
    Multi-animal labels give videos with ``individuals`` and ``(F, I, N, 2)``
    points. ``every`` and ``frames`` choose the frames (see the module's notes).

    Raises :class:`LabelsImportError` for an unreadable file, skeletons that
    differ between files, tracks that cannot be individuals, a missing video,
    a file without usable labels, or two label sets for one video.
    """
    paths = [Path(p).expanduser() for p in label_files]
    if not paths:
        raise LabelsImportError(None, "no labels files given")
    if int(every) != every or every < 1:
        raise LabelsImportError(None, f"every must be a whole number of at least 1, got {every}")
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
    sources = [(labels, _chosen_instances(labels, include_predicted, int(every), frames)) for labels in all_labels]
    multi = _individuals(sources) if any(_needs_multianimal(*source) for source in sources) else None
    imported, seen = [], {}
    for labels, chosen in sources:
        found = _resolve_video(labels, video_path)
        if found in seen:
            raise LabelsImportError(labels.path, f"its video {found} has labels from {seen[found]} already")
        seen[found] = labels.path
        item = _imported_video(labels, chosen, bodyparts, found, multi)
        if every > 1 or frames is not None:
            eligible = _chosen_instances(labels, include_predicted).any(axis=1)
            item.unselected_frames = int((eligible & ~chosen.any(axis=1)).sum())
            item.skipped_frames -= item.unselected_frames
        if len(item.frames) == 0:
            if frames is not None and chosen.sum() == 0 and (labels.instance_kind != "").any():
                raise LabelsImportError(
                    labels.path, f"no labels on the frames chosen ({_frame_list(np.asarray(frames))})"
                )
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


def _move_paths(config_path: Path, built: Path, project: Path, individuals: list[str] | None = None) -> None:
    """Point the config's ``project_path`` and ``video_sets`` at the project's final place.

    With ``individuals`` the config becomes a multi-animal project's, its body parts the ``multianimalbodyparts``.
    """
    from .config import config_bodyparts, multianimal_config, read_config, write_config

    config = read_config(config_path)
    if individuals is not None:
        config = multianimal_config(config, individuals, config_bodyparts(config))
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
    if item.individuals is not None:
        from .multianimal_labels import MultiAnimalLabels, write_multianimal_labels

        n = len(keys)
        labels = MultiAnimalLabels(keys, item.individuals, bodyparts, [], item.xy, np.zeros((n, 0, 2)), scorer)
        write_multianimal_labels(project, labels)
        return
    df = arrays_to_collected(keys, bodyparts, item.xy, scorer, index_style="multi")
    write_collected(df, extracted.folder, scorer)


def iter_import_labels(
    label_files: Sequence[str | os.PathLike],
    project: str | os.PathLike,
    *,
    video: str | os.PathLike | None = None,
    scorer: str = DEFAULT_SCORER,
    include_predicted: bool = False,
    every: int = 1,
    frames: Sequence[int] | None = None,
    date: _dt.date | None = None,
) -> Generator[float, None, SleapImport]:
    """Generator form of :func:`import_labels`: yields the fraction done, returns the :class:`SleapImport`.

    Closing the generator stops the import and removes what it had built.
    """
    from .project import ProjectError, create_project

    project = Path(project).expanduser().absolute()
    _check_destination(project)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bodyparts, edges, items = read_sources(
            label_files, video, include_predicted=include_predicted, every=every, frames=frames
        )
    notes = [str(w.message) for w in caught]
    for w in caught:
        warnings.warn(w.message, w.category, stacklevel=2)
    individuals = items[0].individuals
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
        _move_paths(config, built, project, individuals)
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
        individuals=individuals,
        warnings=notes,
    )


def import_labels(
    label_files: Sequence[str | os.PathLike],
    project: str | os.PathLike,
    *,
    video: str | os.PathLike | None = None,
    scorer: str = DEFAULT_SCORER,
    include_predicted: bool = False,
    every: int = 1,
    frames: Sequence[int] | None = None,
    progress: Callable[[float], None] | None = None,
) -> SleapImport:
    """Make the project ``project`` from SLEAP label files, multi-animal when the labels need it.

    ``project`` is the project folder itself (its name becomes the ``Task``);
    it must not exist, or be an empty folder, and its parent must exist.
    ``video`` names the video of a single labels file (else it is found as
    :func:`read_sources` says), ``scorer`` names the CollectedData files, and
    ``include_predicted`` imports a frame's predicted instance when it has no
    user instance. ``every`` keeps one labeled frame in ``every``, ``frames``
    only those video frame numbers. ``progress`` gets the fraction done.
    Labels of several animals make a multi-animal project (see the module's
    notes); :attr:`SleapImport.warnings` repeats the warnings given.

    Raises :class:`LabelsImportError` (a ``ValueError``) naming the file and
    the reason; nothing is left on disk then.
    """
    work = iter_import_labels(
        label_files,
        project,
        video=video,
        scorer=scorer,
        include_predicted=include_predicted,
        every=every,
        frames=frames,
    )
    return drive(work, progress)
