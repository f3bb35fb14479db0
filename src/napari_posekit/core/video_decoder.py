"""The decoders behind :class:`~napari_posekit.core.video.VideoReader`: one open, positioned decoder each.

A :class:`_Decoder` holds one open container and codec and decodes frame ``i``
exactly: forward from where it stands when ``i`` lies ahead in the same group
of pictures, else after a seek to the keyframe before it, retried from earlier
starts (and the start of the file) as the reader's
:class:`~napari_posekit.core.video_index.SeekPlan` lists them. Damaged packets
mark the frames that depend on them instead of being concealed.
:class:`_FrameCache` is the reader's byte-bounded LRU cache of converted
frames, and :func:`_to_rgb` the one colour conversion every frame goes through.

The reader (:mod:`napari_posekit.core.video`) owns the pool of decoders, the
cache and the read-ahead; see its docstring for the whole picture.

Everything here is napari-free.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from .video_index import (
    FILE_START,
    FrameDecodeError,
    FrameIndex,
    SeekPlan,
    _ffmpeg_reason,
    _import_av,
    _open_container,
)


def _to_rgb(frame, reformatter=None, threads: int = 0) -> np.ndarray:
    """The one colour conversion used for every frame, sequential or random.

    Passing a reused ``av.video.reformatter.VideoReformatter`` keeps FFmpeg's
    scaler context alive between frames (same result, half the time);
    ``threads=0`` lets the scaler split each frame over the cores (the
    quickest single frame), ``threads=1`` keeps it on the calling thread (the
    most frames per second of CPU when another consumer, such as a network,
    has the other cores).
    """
    if reformatter is None:
        return frame.to_ndarray(format="rgb24", threads=threads)
    return reformatter.reformat(frame, format="rgb24", threads=threads).to_ndarray()


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

    def __init__(self, path: str, index: FrameIndex, plan: SeekPlan, threads: int, convert_threads: int = 0):
        av = _import_av()
        self.path = path
        self.index = index
        self.plan = plan
        self.threads = threads
        self.convert_threads = convert_threads
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
        return _to_rgb(frame, self.reformatter, self.convert_threads)

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
