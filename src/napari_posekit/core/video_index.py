"""The packet index of a video: what a :class:`~napari_posekit.core.video.VideoReader` knows before decoding.

Opening a video reads packet headers only (no decoding) and builds a
:class:`FrameIndex`, the presentation timestamps of all frames in display order
and which of them are keyframes, together with the :class:`VideoMetadata`.
The error classes of the video module live here too, because opening and
scanning raise them.

Everything here is napari-free.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "FrameDecodeError",
    "FrameIndex",
    "VideoError",
    "VideoMetadata",
    "VideoOpenError",
    "scan",
]


class VideoError(Exception):
    """Base class of video errors; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class VideoOpenError(VideoError):
    """The file is missing, is not a video, or its video stream is unusable."""


class FrameDecodeError(VideoError):
    """A frame inside the video could not be decoded exactly."""

    def __init__(self, path: str | os.PathLike, frame: int, reason: str):
        self.frame = frame
        super().__init__(path, f"frame {frame} cannot be decoded: {reason}")


@dataclass(frozen=True)
class VideoMetadata:
    """What is known about a video without decoding any frame."""

    path: str
    n_frames: int
    fps: float
    width: int
    height: int
    codec: str
    pix_fmt: str
    n_keyframes: int

    @property
    def duration(self) -> float:
        """Duration in seconds (``n_frames / fps``)."""
        return self.n_frames / self.fps if self.fps > 0 else float("nan")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n_frames, self.height, self.width, 3)

    def to_dict(self) -> dict:
        return {**asdict(self), "duration": self.duration}


@dataclass(frozen=True)
class FrameIndex:
    """Presentation timestamps of every frame, in display order.

    ``pts[i]`` is the timestamp of frame ``i``; ``keyframes`` holds the frame
    numbers of keyframes (sorted, always starting with 0).
    """

    pts: np.ndarray
    keyframes: np.ndarray

    def __len__(self) -> int:
        return len(self.pts)

    def frame_of(self, pts: int) -> int | None:
        """Frame number with timestamp ``pts``, or None if no frame has it."""
        i = int(np.searchsorted(self.pts, pts))
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def keyframe_before(self, i: int) -> int:
        """Frame number of the last keyframe at or before frame ``i``."""
        k = int(np.searchsorted(self.keyframes, i, side="right")) - 1
        return int(self.keyframes[max(k, 0)])


def _import_av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a hard dependency
        raise ImportError("Reading videos needs PyAV: pip install av") from err
    av.logging.set_level(None)  # no Python log callback: FFmpeg threads calling into Python deadlock on teardown
    return av


def _open_container(path: str):
    av = _import_av()
    if not os.path.exists(path):
        raise VideoOpenError(path, "file not found")
    if os.path.isdir(path):
        raise VideoOpenError(path, "is a folder, not a video file")
    try:
        container = av.open(path, mode="r")
    except av.FFmpegError as err:
        raise VideoOpenError(
            path, f"cannot be opened as a video: {_ffmpeg_reason(err)} (truncated, damaged or not a video file?)"
        ) from err
    if not container.streams.video:
        container.close()
        raise VideoOpenError(path, "contains no video stream")
    return container


def _ffmpeg_reason(err: Exception) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.strip() or type(err).__name__


def scan(path: str) -> tuple[VideoMetadata, FrameIndex]:
    """Read packet headers (no decoding) to index frames and collect metadata."""
    av = _import_av()
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx.width <= 0 or ctx.height <= 0:
            raise VideoOpenError(path, "video stream has no frame size (corrupt header?)")
        pts_list, key_list = [], []
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.is_discard:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise VideoOpenError(path, "packets carry no timestamps; frame-exact access is impossible")
                pts_list.append(ts)
                key_list.append(packet.is_keyframe)
        except av.FFmpegError as err:
            raise VideoOpenError(path, f"container is damaged ({_ffmpeg_reason(err)})") from err
        if not pts_list:
            raise VideoOpenError(path, "video stream holds no frames")
        pts = np.asarray(pts_list, dtype=np.int64)
        order = np.argsort(pts, kind="stable")
        pts = pts[order]
        if len(np.unique(pts)) != len(pts):
            raise VideoOpenError(path, "several frames share one timestamp; frame-exact access is impossible")
        keyframes = np.flatnonzero(np.asarray(key_list, dtype=bool)[order])
        if len(keyframes) == 0 or keyframes[0] != 0:
            # The first displayed frame must be decodable from the stream start.
            keyframes = np.concatenate([[0], keyframes])
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else float("nan")
        meta = VideoMetadata(
            path=path,
            n_frames=len(pts),
            fps=fps,
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
            pix_fmt=str(ctx.pix_fmt),
            n_keyframes=len(keyframes),
        )
        return meta, FrameIndex(pts=pts, keyframes=keyframes.astype(np.int64))
    finally:
        container.close()
