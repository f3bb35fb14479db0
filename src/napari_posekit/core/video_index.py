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
    "FILE_START",
    "FrameDecodeError",
    "FrameIndex",
    "SeekPlan",
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
        first = None  # (is keyframe, timestamp) of the first packet in decoding order, discarded or not
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if first is None:
                    first = (packet.is_keyframe, ts)
                if packet.is_discard:
                    continue
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
        is_key = np.asarray(key_list, dtype=bool)[order]
        if not (first[0] and first[1] is not None and pts[0] >= first[1]):
            pts, is_key = _drop_undecodable_start(path, pts, is_key)
        keyframes = np.flatnonzero(is_key)
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


def _drop_undecodable_start(path: str, pts: np.ndarray, is_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the frames a sequential decode never outputs at the start of the stream.

    Called only when the stream does not start cleanly: its first packet is no
    keyframe (a stream cut with stream copy at a non-keyframe), or frames are
    shown before its first keyframe (leading pictures of an open GOP). Such
    frames refer to pictures that are not in the file, and FFmpeg's decoder
    does not output them. Frame 0 is the first frame a plain sequential decode
    (FFmpeg's default error handling, as the ``ffmpeg`` command line) outputs;
    frames shown before it are not part of the video.
    """
    av = _import_av()
    container = _open_container(path)
    first_out = None
    try:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                frames = stream.codec_context.decode(None if packet.size == 0 else packet)
            except av.FFmpegError:
                continue
            pts_out = [f.pts for f in frames if f.pts is not None]
            if pts_out:
                first_out = min(pts_out)
                break
    finally:
        container.close()
    if first_out is None or first_out not in pts:
        return pts, is_key  # nothing decodes: the decoders report it frame by frame
    keep = pts >= first_out
    return pts[keep], is_key[keep]


#: Where decoding starts when a frame is needed from the very beginning of the file.
FILE_START = -1


class SeekPlan:
    """Where decoding must start to reach each frame exactly, learnt while reading.

    A frame is normally decoded from the last keyframe at or before it. Some
    keyframes are not enough: in an open GOP the frames after a keyframe may
    list frames of the previous GOP among their references, and some
    containers seek inexactly. When a decode from the keyframe fails, the
    decoder retries from up to ``n_earlier`` earlier keyframes and then from
    the start of the file (:data:`FILE_START`; the decoder skips it where it
    would only repeat a decoder error at the cost of decoding a long file).
    The start that worked is kept per keyframe, so later requests in that GOP
    go there directly; frames for which every start failed are kept too, so
    that a damaged GOP is not decoded again and again from every start.

    Shared by all decoders of a reader. Plain dict updates: safe between threads.
    """

    def __init__(self, index: FrameIndex, n_earlier: int = 2):
        self.index = index
        self.n_earlier = n_earlier
        self._start: dict[int, int] = {}  # keyframe -> frame to seek to (or FILE_START)
        self._failed_from: dict[int, int] = {}  # keyframe -> first frame of its GOP that no start decodes
        self._file_start_ends_before = len(index.pts)  # a decode from the start ran out of packets here

    def start_of(self, i: int) -> int:
        """The frame to seek to for frame ``i`` (a keyframe, or FILE_START)."""
        k = self.index.keyframe_before(i)
        return self._start.get(k, k)

    def starts(self, i: int) -> list[int]:
        """Starts to try for frame ``i``, the usual one first and the start of the file last."""
        k = self.index.keyframe_before(i)
        first = self._start.get(k, k)
        if i >= self._failed_from.get(k, len(self.index.pts)) or first == FILE_START:
            return [first]
        keys = self.index.keyframes
        j = int(np.searchsorted(keys, first))
        out = [first, *(int(x) for x in keys[max(j - self.n_earlier, 0) : j][::-1])]
        if i < self._file_start_ends_before:
            out.append(FILE_START)
        return out

    def near_file_start(self, i: int) -> bool:
        """Whether the start of the file is at most ``n_earlier + 1`` keyframes before frame ``i``'s."""
        j = int(np.searchsorted(self.index.keyframes, self.index.keyframe_before(i)))
        return j <= self.n_earlier + 1

    def worked(self, i: int, start: int) -> None:
        """Decoding from ``start`` gave frame ``i`` exactly."""
        k = self.index.keyframe_before(i)
        if start != self._start.get(k, k):
            self._start[k] = start

    def failed(self, i: int, ran_out: bool) -> None:
        """No start gave frame ``i``; ``ran_out``: the decode from the start of the file ended before it."""
        k = self.index.keyframe_before(i)
        self._failed_from[k] = min(i, self._failed_from.get(k, i))
        if ran_out:
            self._file_start_ends_before = min(self._file_start_ends_before, i)
