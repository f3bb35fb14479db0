"""Encoding frames into a video file with FFmpeg (through ``imageio-ffmpeg``).

Everything here is napari-free.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_video"]


def write_video(
    frames,
    path: str | os.PathLike,
    fps: float = 30.0,
    *,
    codec: str = "libx264",
    quality: int = 18,
    pix_fmt: str = "yuv420p",
    extra_args: list[str] | None = None,
) -> Path:
    """Encode ``frames`` (iterable of ``(H, W, 3) uint8``) into a video file with FFmpeg.

    ``quality`` is x264's CRF (lower is better). The file appears atomically:
    it is written under a temporary name and renamed when complete.
    """
    import imageio_ffmpeg

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    iterator = iter(frames)
    try:
        first = np.asarray(next(iterator))
    except StopIteration:
        raise ValueError("write_video needs at least one frame") from None
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 arrays, got {first.shape} {first.dtype}")
    h, w = first.shape[:2]
    args = ["-crf", str(quality)] if codec == "libx264" else []
    writer = imageio_ffmpeg.write_frames(
        str(tmp),
        (w, h),
        fps=fps,
        codec=codec,
        pix_fmt_out=pix_fmt,
        macro_block_size=1,
        output_params=args + list(extra_args or []),
        ffmpeg_log_level="error",
    )
    writer.send(None)
    try:
        writer.send(np.ascontiguousarray(first))
        for frame in iterator:
            frame = np.asarray(frame)
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise ValueError(f"all frames must be {first.shape} uint8, got {frame.shape} {frame.dtype}")
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return path
