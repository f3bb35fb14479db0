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

Everything here is napari-free.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .video_index import (
    FILE_START,
    FrameDecodeError,
    FrameIndex,
    VideoError,
    VideoMetadata,
    VideoOpenError,
    SeekPlan,
    _ffmpeg_reason,
    _import_av,
    _open_container,
    scan,
)

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


def _to_rgb(frame, reformatter=None) -> np.ndarray:
    """The one colour conversion used for every frame, sequential or random.

    Passing a reused ``av.video.reformatter.VideoReformatter`` keeps FFmpeg's
    scaler context alive between frames (same result, half the time);
    ``threads=0`` lets the scaler split each frame over the cores.
    """
    if reformatter is None:
        return frame.to_ndarray(format="rgb24", threads=0)
    return reformatter.reformat(frame, format="rgb24", threads=0).to_ndarray()


class _Decoder:
    """One open container + codec, positioned somewhere in the stream.

    Not thread-safe on its own: the reader guards each decoder with ``lock``.

    Damage tracking: the codec runs with ``err_detect=explode``, so a damaged
    packet raises instead of being concealed. Every frame that comes out after
    such an error (or after a frame flagged corrupt) may reference the damaged
    picture, so it is marked damaged until the next keyframe; frames shown
    before that keyframe but decoded after it (open-GOP leading frames) stay
    marked too. Errors in the leading frames of the keyframe that decoding
    started at are expected (they refer to frames before the seek point, which
    were never decoded) and mark only the frames shown before that keyframe.

    A decode that fails (an error, or the frame never comes out) is retried
    from the earlier starts the reader's :class:`SeekPlan` lists, ending with
    the start of the file; only what fails from all of them is reported.
    """

    def __init__(self, path: str, index: FrameIndex, plan: SeekPlan, threads: int):
        av = _import_av()
        self.path = path
        self.index = index
        self.plan = plan
        self.threads = threads
        self.lock = threading.Lock()
        self.reformatter = av.video.reformatter.VideoReformatter()
        self.pending: dict[int, tuple[object, str | None]] = {}  # decoded, not yet consumed: pts -> (frame, damage)
        self.last_used = 0
        self.container = None
        self._rewind()
        # Decode the first frame before any seek: some files carry their parameter
        # sets (SPS/PPS) only in the first packet, and a decoder that never saw
        # them decodes later keyframes into garbage without any error.
        frame, damage = self._decode_until(0)
        if frame is None or damage:
            self.close()
            raise FrameDecodeError(path, 0, damage or "the first frame does not decode")

    def _rewind(self) -> None:
        """(Re)open the file so that decoding starts at its very first packet."""
        if self.container is not None:
            self.container.close()
        self.container = _open_container(self.path)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.ctx = self.stream.codec_context
        self.ctx.thread_count = self.threads
        self.ctx.options = {"err_detect": "explode"}
        self._reset(self.container.demux(self.stream), last=-1, origin=FILE_START)

    def _reset(self, packets, last: int, origin: int) -> None:
        self.packets: Iterator | None = packets  # demux iterator; None = must seek
        self.last = last  # last frame delivered; frames after it are reachable forward
        self.origin = origin  # where this run of decoding started: a keyframe or FILE_START
        self.pending.clear()
        self.damage: str | None = None  # why frames coming out now are damaged
        self.damaged_below = -(2**63)  # frames with smaller pts are damaged too (leading frames)
        self.start_key_ts: int | None = None  # timestamp of the first keyframe fed in this run

    def forward_cost(self, i: int) -> float:
        """Frames to decode to reach ``i`` without seeking (inf if impossible)."""
        if self.packets is None or i <= self.last:
            return math.inf
        start = self.plan.start_of(i)
        if start > self.last or self.origin > start:
            return math.inf
        return i - self.last

    def frames_left_in_gop(self) -> int:
        """Frames this decoder can still reach without seeking (its value when parked)."""
        if self.packets is None:
            return 0
        keys = self.index.keyframes
        k = int(np.searchsorted(keys, self.last, side="right"))
        end = int(keys[k]) if k < len(keys) else len(self.index)
        return end - self.last - 1

    def _seek_to_frame(self, key: int) -> None:
        if key == FILE_START:
            self._rewind()
            return
        self.container.seek(int(self.index.pts[key]), stream=self.stream, backward=True, any_frame=False)
        self.ctx.flush_buffers()
        self._reset(self.container.demux(self.stream), last=key - 1, origin=key)

    def read(self, i: int) -> np.ndarray:
        """Decode frame ``i`` into an RGB array, or raise :class:`FrameDecodeError`."""
        frame, damage = None, None
        if self.forward_cost(i) < math.inf:
            frame, damage = self._decode_until(i)
        if frame is None or damage:
            frame, damage = self._read_from_starts(i)
        if frame is None:
            self.packets = None
            raise FrameDecodeError(
                self.path, i, damage or "the decoder produced no frame with its timestamp (truncated or damaged stream)"
            )
        if damage:
            raise FrameDecodeError(self.path, i, damage)
        return _to_rgb(frame, self.reformatter)

    def _read_from_starts(self, i: int):
        """Seek and decode frame ``i`` from each start the plan lists until one gives it undamaged.

        The start of the file comes last, and only where it can help at a
        bounded cost: when the frame never came out (an inexact seek, missing
        frames), or when the start of the file is a few keyframes away. A
        decoder error that earlier keyframes do not resolve is damage; decoding
        a long file from its start would not change that.
        """
        frame, damage, ran_out = None, None, False
        for start in self.plan.starts(i):
            if start == FILE_START and frame is not None and not self.plan.near_file_start(i):
                break
            self._seek_to_frame(start)
            frame, damage = self._decode_until(i)
            if frame is not None and not damage:
                self.plan.worked(i, start)
                return frame, None
            ran_out = start == FILE_START and frame is None
        self.plan.failed(i, ran_out=ran_out)
        return frame, damage

    def _decode_until(self, i: int):
        """Feed packets until frame ``i`` comes out: ``(frame or None, damage or None)``."""
        av = _import_av()
        target = int(self.index.pts[i])
        found = self.pending.pop(target, None)
        while found is None and self.packets is not None:
            ts = None
            try:
                packet = next(self.packets, None)
                if packet is not None and packet.size == 0:
                    packet = None  # PyAV's end-of-stream marker
                if packet is None:
                    self.packets = None  # after the flush below, only a seek resumes decoding
                else:
                    ts = packet.pts if packet.pts is not None else packet.dts
                    if packet.is_keyframe and ts is not None:
                        if self.start_key_ts is None:
                            self.start_key_ts = ts
                        if self.damage:
                            self.damage, self.damaged_below = None, ts
                self.ctx.skip_frame = "NONREF" if ts is not None and ts < target else "DEFAULT"
                frames = self.ctx.decode(packet)  # None flushes the delayed frames at the end
            except av.FFmpegError as err:
                self._note_error(err, ts)
                frames = []
            for f in frames:
                if f.pts is None or f.pts < target:
                    continue
                damage = self.damage
                if getattr(f, "is_corrupt", False):
                    damage = self.damage = "the decoder flagged the frame as corrupt"
                elif damage is None and f.pts < self.damaged_below:
                    damage = "it precedes a keyframe but depends on damaged frames before it"
                if f.pts == target:
                    found = (f, damage)
                elif self.index.frame_of(f.pts) is None:
                    # Not a frame of the index: the decoder's output is out of step with the packets.
                    self.damage = self.damage or "the decoder output a frame the file does not list"
                else:
                    self.pending[f.pts] = (f, damage)
        for ts in [t for t in self.pending if t <= target]:
            del self.pending[ts]
        if found is None:
            return None, self.damage
        self.last = i
        return found

    def _note_error(self, err: Exception, ts: int | None) -> None:
        """Record a decoder error on the packet with timestamp ``ts`` (None: at the stream's end)."""
        if ts is not None and self.start_key_ts is not None and ts < self.start_key_ts:
            # A leading frame of the keyframe this run started at: it refers to frames before
            # the seek point. Only frames shown before that keyframe can depend on it.
            self.damaged_below = max(self.damaged_below, self.start_key_ts)
            return
        where = f"the packet of frame {self.index.frame_of(ts)}" if ts is not None else "the stream's end"
        self.damage = f"{where} is damaged ({_ffmpeg_reason(err)}) and the frame depends on it"

    def close(self) -> None:
        self.packets = None
        self.pending.clear()
        self.container.close()


class _FrameCache:
    """Thread-safe LRU cache of decoded frames, bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._data: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, i: int) -> np.ndarray | None:
        with self._lock:
            arr = self._data.get(i)
            if arr is not None:
                self._data.move_to_end(i)
            return arr

    def __contains__(self, i: int) -> bool:
        with self._lock:
            return i in self._data

    def put(self, i: int, arr: np.ndarray) -> None:
        if arr.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._data.pop(i, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._data[i] = arr
            self._bytes += arr.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


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
        on_error: str = "raise",
    ):
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', not {on_error!r}")
        if max_decoders is not None and max_decoders < 1:
            raise ValueError("max_decoders must be at least 1")
        self.path = os.fspath(path)
        self._options = dict(
            cache_bytes=cache_bytes, max_decoders=max_decoders, readahead=readahead, threads=threads, on_error=on_error
        )
        self.metadata, self.index = scan(self.path)
        self._plan = SeekPlan(self.index)
        if max_decoders is None:
            # a decoder holds about 8 frames in its native format (~1.5 bytes per pixel)
            per_decoder = 8 * 1.5 * self.metadata.width * self.metadata.height
            max_decoders = int(min(8, max(2, 128 * 2**20 // per_decoder)))
        self.max_decoders = max_decoders
        self.readahead = max(int(readahead), 0)
        self.threads = threads
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

    def __enter__(self) -> VideoReader:
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
                try:
                    i = self._check_index(i)
                    if i not in self._cache:
                        self._read(i, quiet=True)
                except Exception:  # noqa: BLE001 - the real request reports it
                    pass

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
                    best = _Decoder(self.path, self.index, self._plan, self.threads)
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
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


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
    n, h, w, c = reader.shape
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


def write_video(frames, path: str | os.PathLike, fps: float = 30.0, *, codec: str = "libx264", quality: int = 18,
                pix_fmt: str = "yuv420p", extra_args: list[str] | None = None) -> Path:
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
        str(tmp), (w, h), fps=fps, codec=codec, pix_fmt_out=pix_fmt, macro_block_size=1,
        output_params=args + list(extra_args or []), ffmpeg_log_level="error",
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


def format_time(seconds: float) -> str:
    """``[h:]mm:ss.fff`` for a time in seconds."""
    if not math.isfinite(seconds):
        return "--:--"
    ms = int(round(seconds * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h}:{m:02d}:{s:02d}.{ms:03d}" if h else f"{m:02d}:{s:02d}.{ms:03d}"


def parse_position(text: str, fps: float, n_frames: int) -> int:
    """Frame number from a frame number (``"120"``) or a time (``"1:02.5"``, ``"0:01:02"``, ``"62.5s"``).

    Raises ValueError with a readable message for anything else or a
    position outside the video.
    """
    text = text.strip()
    try:
        if text.isdigit():
            frame = int(text)
        else:
            body = text.removesuffix("s")
            parts = body.split(":")
            if not 1 <= len(parts) <= 3 or (len(parts) == 1 and not text.endswith("s")):
                raise ValueError
            seconds = 0.0
            for part in parts:
                value = float(part)
                if value < 0:
                    raise ValueError
                seconds = seconds * 60 + value
            if not (fps > 0):
                raise ValueError
            frame = int(math.floor(seconds * fps + 1e-6))
    except ValueError:
        raise ValueError(f"{text!r} is neither a frame number nor a time like 1:02.5 or 62.5s") from None
    if not 0 <= frame < n_frames:
        raise ValueError(f"{text!r} is outside the video (frames 0..{n_frames - 1})")
    return frame
