"""Writing picked outlier frames into a project: PNGs and machine labels, the video in ``video_sets``.

:func:`write_outlier_frames` writes frames of a video as PNGs into
``labeled-data/<video stem>/`` with the network's predictions on them as
machine labels (``machinelabels-iter<iteration>.h5``, see
:mod:`napari_posekit.core.machinelabels`), ready to be refined;
:func:`add_video_set` lists the video in the config as DeepLabCut's
training-set tools require.

Everything here is napari-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .collected_data import COLUMN_NAMES, _image_keys, index_style, read_collected, to_multi_index, to_string_index
from .config import read_config, write_config
from .frames import extract_frames, frame_image_name, frame_of_image
from .machinelabels import find_machinelabels, machinelabels_path, read_machinelabels, write_machinelabels
from .outlier_scores import OutlierError
from .project import IMAGE_EXTENSIONS, project_root

__all__ = ["add_video_set", "write_outlier_frames"]


def _frames_in_folder(folder: Path) -> tuple[set[int], pd.DataFrame | None]:
    """Frames the folder has already (image files, CollectedData rows, machine-label rows) and its CollectedData."""
    frames: set[int] = set()
    collected = None
    if not folder.is_dir():
        return frames, None
    for path in folder.iterdir():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            f = frame_of_image(path.name)
            if f is not None:
                frames.add(f)
    found = sorted(folder.glob("CollectedData_*.h5")) or sorted(folder.glob("CollectedData_*.csv"))
    for path in found:
        df = read_collected(path)
        collected = collected if collected is not None else df
        frames.update(f for f in map(frame_of_image, _image_keys(df.index)) if f is not None)
    for path in find_machinelabels(folder):
        frames.update(f for f in map(frame_of_image, _image_keys(read_machinelabels(path).index)) if f is not None)
    return frames, collected


def _in_video_sets(config, video: Path) -> bool:
    sets = config.get("video_sets") or {}
    return any(Path(str(key).replace("\\", "/")).stem == video.stem for key in sets)


def add_video_set(project: str | os.PathLike, video: str | os.PathLike) -> bool:
    """Add ``video`` with its full-frame crop to the config's ``video_sets``; False when it is listed already.

    DeepLabCut's training-set tools only look at the labeled-data folders of
    listed videos, so a video that frames are taken from must be there.
    """
    from .video import read_metadata

    root = project_root(project)
    video = Path(video)
    config = read_config(root)
    if _in_video_sets(config, video):
        return False
    meta = read_metadata(video)
    sets = dict(config.get("video_sets") or {})
    sets[str(video.resolve())] = {"crop": f"0, {meta.width}, 0, {meta.height}"}
    config["video_sets"] = sets
    write_config(root / "config.yaml", config)
    return True


def _machine_frame(
    xy: np.ndarray,
    likelihood: np.ndarray,
    frames: Sequence[int],
    n_frames: int,
    video: Path,
    bodyparts: Sequence[str],
    scorer: str,
) -> pd.DataFrame:
    """The predictions on ``frames`` as a machine-label table (string index, re-styled by the caller)."""
    keys = [f"labeled-data/{video.stem}/{frame_image_name(f, n_frames)}" for f in frames]
    columns = pd.MultiIndex.from_tuples(
        [(scorer, bp, c) for bp in bodyparts for c in ("x", "y", "likelihood")], names=COLUMN_NAMES
    )
    rows = np.concatenate([xy[list(frames)], likelihood[list(frames)][..., None]], axis=2)
    return pd.DataFrame(rows.reshape(len(frames), -1), index=pd.Index(keys), columns=columns)


def write_outlier_frames(
    project: str | os.PathLike,
    video: str | os.PathLike,
    frames: Sequence[int],
    xy: np.ndarray,
    likelihood: np.ndarray,
    bodyparts: Sequence[str],
    scorer: str,
    *,
    n_frames: int | None = None,
) -> tuple[list[Path], Path]:
    """Write ``frames`` of ``video`` as PNGs into ``labeled-data/<stem>/`` with their predictions as machine labels.

    ``xy`` ``(n_frames, K, 2)`` and ``likelihood`` ``(n_frames, K)`` are the
    whole video's predictions for ``bodyparts``.  Existing images are never
    overwritten, machine-label rows of other frames are kept (an existing
    row for a frame wins), and the file follows the folder's index style
    (that of the machine-label file, else of CollectedData, else
    DeepLabCut's multi-index).  Returns the images, in the order of
    ``frames``, and the machine-label file.
    """
    from .video import read_metadata

    root = project_root(project)
    video = Path(video)
    config = read_config(root)
    if n_frames is None:
        n_frames = read_metadata(video).n_frames
    frames = [int(f) for f in frames]
    bad = [f for f in frames if not 0 <= f < len(xy)]
    if bad:
        raise OutlierError(f"frames {bad} are outside the predictions ({len(xy)} frames)", video)
    folder = root / "labeled-data" / video.stem
    _, collected = _frames_in_folder(folder)
    written = extract_frames(video, frames, root / "labeled-data")
    by_frame = dict(zip(written.frames, written.paths))

    machine = _machine_frame(xy, likelihood, sorted(set(frames)), n_frames, video, bodyparts, scorer)
    path = machinelabels_path(folder, int(config.get("iteration", 0) or 0))
    if path.is_file():
        old = read_machinelabels(path)
        old_scorer = str(old.columns.get_level_values("scorer")[0])
        machine.columns = machine.columns.set_levels([old_scorer], level="scorer")
        machine = to_multi_index(machine) if index_style(old) == "multi" else machine
        machine = machine.reindex(columns=old.columns) if set(old.columns) >= set(machine.columns) else machine
        combined = pd.concat([old, machine])
        combined = combined[~combined.index.duplicated(keep="first")]
    else:
        style = index_style(collected) if collected is not None else "multi"
        combined = to_multi_index(machine) if style == "multi" else to_string_index(machine)
    return [by_frame[f] for f in frames], write_machinelabels(combined.sort_index(), path)
