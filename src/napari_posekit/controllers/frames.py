"""The Frames widget's work, without Qt: pick frames of a video and write them into a project.

- :func:`labeled_data_folder`: the ``labeled-data`` folder of the project a
  text names, or a message why there is none.
- :func:`iter_select_and_extract`: select frames (k-means, uniform, or the
  ones given) and write them as PNGs, reporting progress.
- :func:`extraction_text`: what the status says afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from napari_posekit.controllers.models import project_folder

METHODS = ("kmeans", "uniform")
SELECTION_SHARE = 0.8
"""Share of the progress bar that k-means selection takes (reading the video); writing takes the rest."""


def labeled_data_folder(text: str) -> tuple[Path | None, str | None]:
    """``(project/labeled-data, None)`` for a project folder or its config.yaml, else ``(None, message)``."""
    project = project_folder(text)
    if project is None:
        shown = Path(text).expanduser()
        shown = shown.parent if shown.name == "config.yaml" else shown
        return None, f"'{shown}' is not a project folder (no config.yaml); pick one first."
    return project / "labeled-data", None


def iter_select_and_extract(
    video: str | os.PathLike,
    method: str,
    k: int,
    labeled_data: Path,
    frames: list[int] | None = None,
    start: float = 0.0,
    stop: float = 1.0,
) -> Generator[dict[str, Any], None, Any]:
    """Select ``k`` frames of the part ``start``–``stop`` of the video (unless ``frames`` are given), write them.

    Yields ``{"stage": "select" | "write", "fraction": f, "progress": p}``
    (``f`` of the stage, ``p`` of the whole); returns the
    :class:`~napari_posekit.core.frames.ExtractedFrames`.
    """
    from napari_posekit.core.frames import iter_extract_frames, iter_select_kmeans, select_uniform

    share = 0.0
    if frames is None:
        if method == "kmeans":
            share = SELECTION_SHARE
            selecting = iter_select_kmeans(video, k, start=start, stop=stop)
            while True:
                try:
                    fraction = next(selecting)
                except StopIteration as done:
                    frames = done.value
                    break
                yield {"stage": "select", "fraction": fraction, "progress": share * fraction}
        else:
            from napari_posekit.core.video import read_metadata

            frames = select_uniform(read_metadata(video).n_frames, k, start=start, stop=stop)
    writing = iter_extract_frames(video, frames, labeled_data)
    while True:
        try:
            fraction = next(writing)
        except StopIteration as done:
            return done.value
        yield {"stage": "write", "fraction": fraction, "progress": share + (1 - share) * fraction}


def stage_text(event: dict[str, Any]) -> str:
    """``Reading frames… 40%`` while selecting, ``Writing frames… 60%`` while writing."""
    verb = "Reading" if event["stage"] == "select" else "Writing"
    return f"{verb} frames… {100 * event['fraction']:.0f}%"


def extraction_text(result) -> str:
    """``5 frames written to <folder>`` (and how many existed already)."""
    text = f"{len(result.written)} frames written to {result.folder}"
    if result.skipped:
        text += f" ({len(result.skipped)} existed already and were kept)"
    return text
