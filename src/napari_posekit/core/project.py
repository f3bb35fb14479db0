"""A DeepLabCut project as a whole: its folder, its layout, a new project.

A DeepLabCut project folder holds::

    <Task>-<scorer>-<YYYY-MM-DD>/
        config.yaml
        videos/
        labeled-data/<video stem>/imgNNNN.png
        labeled-data/<video stem>/CollectedData_<scorer>.h5   (key "df_with_missing")
        labeled-data/<video stem>/CollectedData_<scorer>.csv
        training-datasets/
        dlc-models/

Its files are read and written by :mod:`~napari_posekit.core.config`
(``config.yaml``) and :mod:`~napari_posekit.core.collected_data` (the labels),
both atomically (:mod:`~napari_posekit.core.filesafety`), and the images of
its ``labeled-data`` folders are measured by
:mod:`~napari_posekit.core.labeled_images`. Here: :func:`project_root` finds
the project a path names, :func:`create_project` makes a new one, and
:class:`ProjectError` is what every project file raises when it is missing,
malformed, inconsistent or cannot be written.

Everything here is napari-free.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from .filesafety import error_reason
from .options import PCUTOFF, TRAIN_BATCH_SIZE, TRAIN_FRACTION

__all__ = [
    "IMAGE_EXTENSIONS",
    "ProjectError",
    "create_project",
    "default_config",
    "ensure_writable_folder",
    "project_root",
]

#: Image file extensions looked at in ``labeled-data`` folders.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ProjectError(Exception):
    """A project file is missing, malformed, inconsistent or cannot be written.

    The message names the file or folder (when there is one) and the reason.
    """

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


def project_root(path: str | os.PathLike) -> Path:
    """The project folder that ``path`` names: the folder itself or its ``config.yaml``.

    Any existing ``.yaml``/``.yml`` file stands for the folder it is in. The
    result is absolute (``~`` expanded, links resolved). Raises
    :class:`ProjectError` when that folder holds no ``config.yaml``.
    """
    root = Path(path).expanduser().resolve()
    if root.suffix.lower() in (".yaml", ".yml") and root.is_file():
        root = root.parent
    if not (root / "config.yaml").is_file():
        raise ProjectError("not a DeepLabCut project folder (no config.yaml)", root)
    return root


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it (OSError otherwise).

    Long jobs call this before they start, so that an output folder they
    cannot use is reported before any work is done.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".posekit-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    return folder


# --------------------------------------------------------------------------------------
# New project
# --------------------------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def default_config(
    task: str,
    scorer: str,
    date: _dt.date,
    project: Path,
    video_sets: dict,
    bodyparts: list[str],
    skeleton: list[list[str]],
) -> dict:
    """The ``config.yaml`` of a new single-animal project: the given values and DeepLabCut's defaults.

    ``pcutoff``, ``batch_size`` and ``TrainingFraction`` are this package's
    defaults (:mod:`~napari_posekit.core.options`), which are DeepLabCut's.
    """
    return {
        "Task": task,
        "scorer": scorer,
        "date": f"{_MONTHS[date.month - 1]}{date.day}",
        "multianimalproject": False,
        "identity": None,
        "project_path": str(project),
        "engine": "pytorch",
        "video_sets": video_sets,
        "bodyparts": bodyparts,
        "start": 0,
        "stop": 1,
        "numframes2pick": 20,
        "skeleton": skeleton,
        "skeleton_color": "black",
        "pcutoff": PCUTOFF,
        "dotsize": 12,
        "alphavalue": 0.7,
        "colormap": "rainbow",
        "TrainingFraction": [TRAIN_FRACTION],
        "iteration": 0,
        "default_net_type": "resnet_50",
        "default_augmenter": "default",
        "snapshotindex": -1,
        "detector_snapshotindex": -1,
        "batch_size": TRAIN_BATCH_SIZE,
        "detector_batch_size": 1,
        "cropping": False,
        "x1": 0,
        "x2": 640,
        "y1": 277,
        "y2": 624,
        "corner2move2": [50, 50],
        "move2corner": True,
        "SuperAnimalConversionTables": None,
    }


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProjectError(f"{kind} must be a non-empty string, got {value!r}")
    if any(c in value for c in "/\\") or value in (".", ".."):
        raise ProjectError(f"{kind} {value!r} cannot contain path separators")
    return value


def _check_parts(bodyparts: Sequence[str], skeleton: Iterable[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    bodyparts = list(bodyparts)
    if not bodyparts or not all(isinstance(b, str) and b for b in bodyparts):
        raise ProjectError(f"bodyparts must be a non-empty list of names, got {bodyparts!r}")
    duplicates = sorted({b for b in bodyparts if bodyparts.count(b) > 1})
    if duplicates:
        raise ProjectError(f"body parts listed twice: {duplicates}")
    skeleton = [list(edge) for edge in skeleton]
    for edge in skeleton:
        if len(edge) != 2 or any(b not in bodyparts for b in edge):
            raise ProjectError(f"skeleton edge {edge} must join two of the body parts {bodyparts}")
    return bodyparts, skeleton


def _video_sizes(videos: list[Path]) -> list[tuple[int, int]]:
    """``(width, height)`` of each video; their names must give distinct ``labeled-data`` folders."""
    from .video import VideoError, read_metadata

    if not videos:
        raise ProjectError("a project needs at least one video")
    sizes = []
    for video in videos:
        try:
            meta = read_metadata(video)
        except VideoError as err:
            raise ProjectError(f"cannot add the video: {err.reason}", video) from err
        sizes.append((meta.width, meta.height))
    names = [v.name for v in videos]
    stems = [v.stem for v in videos]
    clashes = sorted({n for n in names if names.count(n) > 1} | {s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ProjectError(f"two videos share a name (their labeled-data folders would clash): {clashes}")
    return sizes


def create_project(
    folder: str | os.PathLike,
    task: str,
    scorer: str,
    videos: Iterable[str | os.PathLike],
    bodyparts: Sequence[str],
    skeleton: Iterable[Sequence[str]] = (),
    copy_videos: bool = False,
    *,
    date: _dt.date | None = None,
) -> Path:
    """Create a single-animal DeepLabCut project in ``folder``; returns the path of its ``config.yaml``.

    Makes ``<task>-<scorer>-<YYYY-MM-DD>/`` with ``config.yaml``, ``videos/``,
    ``labeled-data/<video stem>/`` per video, ``training-datasets/`` and
    ``dlc-models/``, as ``deeplabcut.create_new_project`` does. Videos are
    symlinked into ``videos/`` (copied when ``copy_videos`` is true or a link
    cannot be made); ``video_sets`` is keyed by the resolved video path with
    ``crop: '0, W, 0, H'``. The other values are :func:`default_config`'s.
    Nothing is created when an argument is invalid, a video cannot be read or
    the project folder exists already (:class:`ProjectError`).
    """
    from .config import write_config  # config.py builds on this module

    _check_name("task", task)
    _check_name("scorer", scorer)
    bodyparts, skeleton = _check_parts(bodyparts, skeleton)
    videos = [Path(v) for v in videos]
    sizes = _video_sizes(videos)
    date = date or _dt.date.today()
    base = Path(folder).resolve()
    if not base.is_dir():
        raise ProjectError("the folder for the new project does not exist", base)
    project = base / f"{task}-{scorer}-{date.strftime('%Y-%m-%d')}"
    if project.exists():
        raise ProjectError("a project with this name exists already", project)

    try:
        for sub in ("videos", "labeled-data", "training-datasets", "dlc-models"):
            (project / sub).mkdir(parents=True)
        video_sets = {}
        for video, (width, height) in zip(videos, sizes):
            (project / "labeled-data" / video.stem).mkdir()
            dest = project / "videos" / video.name
            if copy_videos:
                shutil.copy2(video, dest)
            else:
                try:
                    os.symlink(video.resolve(), dest)
                except OSError:
                    shutil.copy2(video, dest)
            video_sets[str(dest.resolve())] = {"crop": f"0, {width}, 0, {height}"}
        config = default_config(task, scorer, date, project, video_sets, bodyparts, skeleton)
        return write_config(project / "config.yaml", config)
    except BaseException as err:
        shutil.rmtree(project, ignore_errors=True)
        if isinstance(err, OSError):
            raise ProjectError(f"cannot create the project: {error_reason(err)}", project) from err
        raise
