"""The built-in sample: a synthetic behaviour video written to disk with its ground truth."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from napari_posekit.core.keypoints import to_dlc_dataframe
from napari_posekit.core.synthetic import SyntheticBehaviour, make_behaviour
from napari_posekit.core.video import write_video

__all__ = ["SampleFiles", "write_sample"]

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
        df = to_dlc_dataframe(behaviour.keypoints, behaviour.bodyparts, GROUNDTRUTH_SCORER,
                              likelihood=1.0 + 0.0 * behaviour.keypoints[..., 0])
        tmp = csv.with_name(csv.name + ".partial")
        df.to_csv(tmp)
        os.replace(tmp, csv)
    return SampleFiles(video=video, groundtruth_csv=csv, behaviour=behaviour)
