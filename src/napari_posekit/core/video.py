"""Lazy, frame-exact, thread-safe video access.

A :class:`VideoReader` opens any file FFmpeg (through PyAV) can demux and
serves frame ``i`` as an ``(H, W, 3) uint8`` RGB array that is bit-identical to
the ``i``-th frame of a full sequential decode. :func:`as_dask` wraps it in a
lazy dask array ``(n_frames, H, W, 3)`` with one frame per chunk.

How random access stays fast and exact:

* Opening reads packet headers only (no decoding) and builds a
  :class:`FrameIndex` (module ``video_index``): the presentation timestamps of
  all frames in display order and which of them are keyframes. Frame ``i`` is identified by its
  timestamp, never by counting decoded frames after a seek, so B-frames, long
  GOPs and inexact container seeking cannot shift frames.
* A small pool of decoders stays open and positioned. A request that lies
  ahead of a decoder's position within the same GOP is served by decoding
  forward without seeking; otherwise the least useful decoder seeks to the
  keyframe before the target.
* While decoding towards a target, packets of earlier frames are decoded with
  ``skip_frame=NONREF``: frames that no other frame references are not
  decoded at all (they cannot change any later frame), and frames that are
  only passed through are never colour-converted.
* Converted frames live in a bounded LRU cache (bounded in bytes), and when
  requests walk forward a background thread reads ahead.

How it stays exact on streams that do not seek cleanly:

* Open GOPs: after a seek to a keyframe, its leading frames (shown before it,
  decoded after it) refer to the previous GOP and fail to decode. Such errors
  only mark frames shown before that keyframe, which are never served from
  that seek (they belong to the GOP before).
* A decode that still fails after a seek (a decoder error, or the frame never
  comes out, e.g. because the frames after an open-GOP keyframe list frames
  of the previous GOP among their references, or because the container seeks
  inexactly) is retried from up to two earlier keyframes and then from the
  start of the file (where the frame never came out, or where the start is
  only a few keyframes away). The start that worked is remembered per keyframe
  (:class:`~napari_posekit.core.video_index.SeekPlan`), so only the first
  request in such a GOP pays for the retry. Frames that fail from every start
  are reported as damaged.
* Frame ``i`` is the ``i``-th frame of FFmpeg's own sequential decode (what
  ``ffmpeg -i FILE -f rawvideo -pix_fmt rgb24 -`` writes): packets hidden by
  an MP4 edit list are not frames, and when a stream starts with packets that
  refer to missing pictures (cut with stream copy at a non-keyframe), the
  frames FFmpeg does not output are not frames either; frame 0 is the first
  frame it outputs.

The decoders and the frame cache are :mod:`napari_posekit.core.video_decoder`,
the packet-header scan :mod:`napari_posekit.core.video_index`. Writing videos
(:func:`write_video`, module ``video_write``) and positions as text
(:func:`format_time`, :func:`parse_position`, module ``video_time``) are
re-exported here.

Everything here is napari-free.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .video_decoder import _Decoder, _FrameCache
from .video_index import (
    FrameDecodeError,
    FrameIndex,
    SeekPlan,
    VideoError,
    VideoMetadata,
    VideoOpenError,
    scan,
)
from .video_time import format_time, parse_position
from .video_write import write_video

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "VIDEO_EXTENSIONS",
    "FrameDecodeError",
    "FrameIndex",
    "VideoError",
    "VideoMetadata",
    "VideoOpenError",
    "VideoReader",
    "as_dask",
    "format_time",
    "iter_frames",
    "parse_position",
    "read_metadata",
    "write_video",
]

#: File extensions the napari reader claims. The core reader itself accepts
#: anything FFmpeg can demux, whatever its name.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".flv", ".mj2", ".ogv")


#: A seek costs about as much as decoding this many frames forward.
_SEEK_PENALTY = 8


def read_metadata(path: str | os.PathLike) -> VideoMetadata:
    """Metadata of a video (frame count, fps, size, codec) without decoding."""
    return scan(os.fspath(path))[0]


class VideoReader:
    """Frame-exact random access to a video file, safe to share between threads.

    Parameters
    ----------
    path
        Any file FFmpeg can demux.
    cache_bytes
        Upper bound of the decoded-frame cache (default 256 MiB).
    max_decoders
        How many decoders may be open and positioned at once. Each parked
        decoder lets a later request in its group of pictures decode forward
        instead of from the keyframe. None: as many as fit in about 128 MiB of
        decoder memory, between 2 and 8.
    readahead
        Frames decoded ahead in the background once requests walk forward
        (0 disables read-ahead).
    threads
        Decoder threads per decoder (0 lets FFmpeg choose). One thread per
        decoder is fastest for random access (frame threading adds a pipeline
        per seek); playing forward overlaps decoding with the caller through
        read-ahead instead.
    convert_threads
        Threads of the conversion of each frame to RGB: 0 (default) splits a
        frame over the cores, the quickest single frame for a viewer; 1 keeps
        it on the decoding thread, the most frames per second when the other
        cores run a network (analysis).
    on_error
        ``"raise"`` raises :class:`FrameDecodeError` for a frame that cannot be
        decoded; ``"warn"`` issues a warning naming the frame and returns a
        black frame (for viewers, which must not crash).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        cache_bytes: int = 256 * 2**20,
        max_decoders: int | None = None,
        readahead: int = 16,
        threads: int = 1,
        convert_threads: int = 0,
        on_error: str = "raise",
    ):
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', not {on_error!r}")
        if max_decoders is not None and max_decoders < 1:
            raise ValueError("max_decoders must be at least 1")
        self.path = os.fspath(path)
        self._options = {
            "cache_bytes": cache_bytes,
            "max_decoders": max_decoders,
            "readahead": readahead,
            "threads": threads,
            "convert_threads": convert_threads,
            "on_error": on_error,
        }
        self.metadata, self.index = scan(self.path)
        self._plan = SeekPlan(self.index)
        if max_decoders is None:
            # a decoder holds about 8 frames in its native format (~1.5 bytes per pixel)
            per_decoder = 8 * 1.5 * self.metadata.width * self.metadata.height
            max_decoders = int(min(8, max(2, 128 * 2**20 // per_decoder)))
        self.max_decoders = max_decoders
        self.readahead = max(int(readahead), 0)
        self.threads = threads
        self.convert_threads = convert_threads
        self.on_error = on_error
        self._cache = _FrameCache(cache_bytes)
        self._decoders: list[_Decoder] = []
        self._pool_lock = threading.Condition()
        self._clock = 0
        self._last_request: int | None = None
        self._in_flight: dict[_Decoder, int] = {}  # decoders at work -> the frame they decode
        self._ahead_target = -1
        self._ahead_next = 0
        self._ahead_thread: threading.Thread | None = None
        self._ahead_wakeup = threading.Event()
        self._closed = False
        self.errors: dict[int, str] = {}  # frames that failed to decode, with the reason

    # -- array-like surface ------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.metadata.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return self.metadata.n_frames

    def __getitem__(self, i: int) -> np.ndarray:
        return self.get(i)

    def __repr__(self) -> str:
        m = self.metadata
        return f"VideoReader({self.path!r}, {m.n_frames} frames, {m.width}x{m.height}, {m.fps:g} fps, {m.codec})"

    # Pickle by path so that dask.distributed workers reopen the file themselves.
    def __reduce__(self):
        return (_reopen, (self.path, self._options))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -----------------------------------------------------------
    def get(self, i: int) -> np.ndarray:
        """Frame ``i`` as a read-only ``(H, W, 3) uint8`` RGB array."""
        i = self._check_index(i)
        self._note_request(i)
        frame = self._cache.get(i)
        if frame is None:
            frame = self._read(i)
        return frame

    def _check_index(self, i) -> int:
        n = self.metadata.n_frames
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"frame index must be an integer, not {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"frame {i} out of range for {self.path} ({n} frames)")
        return i

    def prefetch(self, frames) -> threading.Thread:
        """Decode ``frames`` into the cache on a background thread (errors stay quiet).

        Viewers use it for frames they are about to show, e.g. the middle frame
        napari jumps to when the first layer is added.
        """

        def work():
            for i in frames:
                if self._closed:
                    return
                with contextlib.suppress(Exception):  # the real request reports it
                    i = self._check_index(i)
                    if i not in self._cache:
                        self._read(i, quiet=True)

        thread = threading.Thread(target=work, name="posekit-prefetch", daemon=True)
        thread.start()
        return thread

    def _read(self, i: int, forward_only: bool = False, quiet: bool = False) -> np.ndarray | None:
        """Decode frame ``i`` into the cache.

        ``forward_only`` (read-ahead): None where only a seek reaches ``i``.
        ``quiet`` (read-ahead, prefetch): None instead of reporting a damaged frame.
        """
        while True:
            decoder = self._acquire(i, forward_only)
            if decoder is None:  # cached by another thread meanwhile, or unreachable
                frame = self._cache.get(i)
                if frame is not None or forward_only:
                    return frame
                continue
            try:
                try:
                    frame = decoder.read(i)
                except FrameDecodeError as err:
                    return None if quiet else self._failed(i, err)
                frame.setflags(write=False)
                self._cache.put(i, frame)
                return frame
            finally:
                self._release(decoder)

    def _failed(self, i: int, err: FrameDecodeError) -> np.ndarray:
        self.errors[i] = err.reason
        if self.on_error == "raise":
            raise err
        warnings.warn(str(err), RuntimeWarning, stacklevel=4)
        m = self.metadata
        return np.zeros((m.height, m.width, 3), np.uint8)

    def _acquire(self, i: int, forward_only: bool = False) -> _Decoder | None:
        """Pick the decoder that reaches frame ``i`` cheapest and lock it.

        A decoder that reaches ``i`` by decoding forward is worth waiting for,
        even while another thread (read-ahead) uses it; otherwise an idle
        decoder, or a new one while the pool has room, seeks. Returns None
        when ``i`` turned up in the cache meanwhile, or when ``forward_only``
        and only a seek would reach it.
        """
        seek_cost = i - max(self._plan.start_of(i), 0) + _SEEK_PENALTY
        with self._pool_lock:
            while True:
                if self._closed:
                    raise ValueError(f"{self.path}: reader is closed")
                if i in self._cache:
                    return None
                if i in self._in_flight.values():  # another thread decodes it: wait for it
                    self._pool_lock.wait()
                    continue
                forward = min(self._decoders, key=lambda d: d.forward_cost(i), default=None)
                if forward is not None and forward.forward_cost(i) <= seek_cost:
                    if not forward.lock.locked():
                        best = forward
                        break
                elif forward_only:
                    return None
                elif len(self._decoders) < self.max_decoders:
                    best = _Decoder(self.path, self.index, self._plan, self.threads, self.convert_threads)
                    self._decoders.append(best)
                    break
                else:
                    idle = [d for d in self._decoders if not d.lock.locked()]
                    if idle:  # the idle decoder with the least of its GOP ahead of it seeks
                        best = min(idle, key=lambda d: (d.frames_left_in_gop(), d.last_used))
                        break
                self._pool_lock.wait()
            best.lock.acquire()
            self._in_flight[best] = i
            self._clock += 1
            best.last_used = self._clock
            return best

    def _release(self, decoder: _Decoder) -> None:
        with self._pool_lock:
            self._in_flight.pop(decoder, None)
            decoder.lock.release()
            self._pool_lock.notify_all()

    # -- read-ahead --------------------------------------------------------
    def _note_request(self, i: int) -> None:
        sequential = self._last_request is not None and 0 < i - self._last_request <= 2
        self._last_request = i
        if not sequential or self.readahead == 0 or self._closed:
            return
        with self._pool_lock:
            self._ahead_target = min(i + self.readahead, self.metadata.n_frames - 1)
            self._ahead_next = max(self._ahead_next, i + 1)
            if self._ahead_thread is None:
                self._ahead_thread = threading.Thread(target=self._read_ahead, name="posekit-readahead", daemon=True)
                self._ahead_thread.start()
        self._ahead_wakeup.set()

    def _read_ahead(self) -> None:
        while not self._closed:
            self._ahead_wakeup.wait()
            self._ahead_wakeup.clear()
            while not self._closed:
                with self._pool_lock:
                    j = max(self._ahead_next, (self._last_request or 0) + 1)
                    if j > self._ahead_target:
                        break
                    self._ahead_next = j + 1
                try:
                    if j not in self._cache and self._read(j, forward_only=True, quiet=True) is None:
                        break  # only a seek would reach it: not worth it ahead of time
                except Exception:  # noqa: BLE001 - read-ahead errors resurface on the real request
                    break

    # -- lifecycle ---------------------------------------------------------
    def close(self) -> None:
        """Close all decoders and drop the cache. Safe to call twice."""
        self._closed = True
        self._ahead_wakeup.set()
        if self._ahead_thread is not None:
            self._ahead_thread.join(timeout=5)
        with self._pool_lock:
            decoders = list(self._decoders)
            self._decoders.clear()
            self._pool_lock.notify_all()
        for d in decoders:
            with d.lock:
                d.close()
        self._cache.clear()

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()


def _reopen(path: str, options: dict) -> VideoReader:
    return VideoReader(path, **options)


def iter_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Decode frames ``start..stop-1`` sequentially (one decoder, no cache)."""
    reader = VideoReader(path, readahead=0, cache_bytes=0, max_decoders=1)
    try:
        stop = len(reader) if stop is None else min(stop, len(reader))
        for i in range(start, stop):
            yield reader.get(i)
    finally:
        reader.close()


class _DaskFrames:
    """Array-like adapter that dask slices chunk by chunk."""

    def __init__(self, reader: VideoReader):
        self.reader = reader
        self.shape = reader.shape
        self.dtype = reader.dtype
        self.ndim = 4

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.reader.get(int(first))[rest]
        frames = range(*first.indices(self.shape[0]))
        if len(frames) == 0:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *rest)]
        return np.stack([self.reader.get(i) for i in frames])[(slice(None), *rest)]


def as_dask(video: str | os.PathLike | VideoReader, *, frames_per_chunk: int = 1, **reader_options):
    """A lazy ``(n_frames, H, W, 3) uint8`` dask array over a video.

    Nothing is decoded until a chunk is computed. ``video`` is a path (a new
    :class:`VideoReader` is opened with ``reader_options``) or a reader.
    """
    import dask.array as da

    reader = video if isinstance(video, VideoReader) else VideoReader(video, **reader_options)
    _n, h, w, c = reader.shape
    name = f"posekit-video-{Path(reader.path).name}-{id(reader):x}"
    return da.from_array(
        _DaskFrames(reader),
        chunks=(frames_per_chunk, h, w, c),
        name=name,
        asarray=False,
        lock=False,
        fancy=False,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint8),
        inline_array=True,
    )
