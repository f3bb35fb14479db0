"""The built-in sample: a synthetic behaviour video written to disk with its ground truth."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from napari_posekit.core.keypoints import to_dlc_dataframe
from napari_posekit.core.synthetic import SyntheticBehaviour, make_behaviour
from napari_posekit.core.video import write_video

__all__ = ["SampleFiles", "write_sample", "write_sample_project"]

SAMPLE_NAME = "synthetic_mouse"
GROUNDTRUTH_SCORER = "groundtruth"


@dataclass(frozen=True)
class SampleFiles:
    video: Path
    groundtruth_csv: Path
    behaviour: SyntheticBehaviour


def write_sample(
    folder: str | os.PathLike,
    n_frames: int = 300,
    height: int = 360,
    width: int = 480,
    seed: int = 0,
    fps: float = 30.0,
) -> SampleFiles:
    """Render the synthetic mouse and write ``<name>.mp4`` and its ground-truth CSV.

    The CSV uses DeepLabCut's prediction layout (scorer ``groundtruth``,
    body parts, coords ``x, y, likelihood``; one row per frame). Files that
    already exist for the same content (their name holds a digest of the
    rendered frames) are reused.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    behaviour = make_behaviour(n_frames, height, width, fps=fps, seed=seed)
    digest = hashlib.sha1(behaviour.frames.tobytes()).hexdigest()[:8]
    stem = f"{SAMPLE_NAME}_{n_frames}x{height}x{width}_seed{seed}_{digest}"
    video = folder / f"{stem}.mp4"
    csv = folder / f"{stem}_groundtruth.csv"
    if not video.exists():
        write_video(behaviour.frames, video, fps=fps)
    if not csv.exists():
        df = to_dlc_dataframe(
            behaviour.keypoints,
            behaviour.bodyparts,
            GROUNDTRUTH_SCORER,
            likelihood=1.0 + 0.0 * behaviour.keypoints[..., 0],
        )
        tmp = csv.with_name(csv.name + ".partial")
        df.to_csv(tmp)
        os.replace(tmp, csv)
    return SampleFiles(video=video, groundtruth_csv=csv, behaviour=behaviour)


def write_sample_project(
    folder: str | os.PathLike,
    n_frames: int = 60,
    height: int = 96,
    width: int = 128,
    *,
    n_labeled: int | None = None,
    seed: int = 0,
    scorer: str = "sample",
) -> Path:
    """A DeepLabCut project with the sample video and ``n_labeled`` frames labeled from the ground truth.

    The labeled frames are spread evenly over the video and written as PNGs
    with ``CollectedData_<scorer>.h5/.csv`` (the ground truth, exact to the
    pixel).  Returns the project's ``config.yaml``.
    """
    import numpy as np
    from PIL import Image

    from napari_posekit.core.collected_data import arrays_to_collected, write_collected
    from napari_posekit.core.frames import frame_image_name
    from napari_posekit.core.project import create_project
    from napari_posekit.core.synthetic import SKELETON

    folder = Path(folder)
    files = write_sample(folder / "videos-source", n_frames=n_frames, height=height, width=width, seed=seed)
    behaviour = files.behaviour
    config = create_project(
        folder, "sample", scorer, [files.video], list(behaviour.bodyparts), SKELETON, copy_videos=True
    )
    labeled = config.parent / "labeled-data" / files.video.stem
    n_labeled = n_frames if n_labeled is None else min(int(n_labeled), n_frames)
    frames = np.unique(np.linspace(0, n_frames - 1, n_labeled).round().astype(int))
    keys = []
    for i in frames:
        name = frame_image_name(int(i), n_frames)
        Image.fromarray(behaviour.frames[i]).save(labeled / name)
        keys.append(f"labeled-data/{files.video.stem}/{name}")
    df = arrays_to_collected(keys, list(behaviour.bodyparts), behaviour.keypoints[frames], scorer)
    write_collected(df, labeled, scorer)
    return config
