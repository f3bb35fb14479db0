"""Inference: a trained model over videos and images.

:class:`~napari_posekit.core.predictor.Predictor` wraps a checkpoint (model,
codec, input scale, body parts, the project's skeleton) and predicts keypoints
for batches of frames, either on the whole frame or on crops at full
resolution.  :func:`iter_analyze` is a
generator over a video (a file, a :class:`~napari_posekit.core.video.VideoReader`
or any ``(N, H, W[, 3])`` array such as a napari layer's dask array) that
yields :class:`AnalysisChunk` results as they are ready; decoding runs in a
background thread while the network works.  :func:`analyze_video` writes
DeepLabCut-compatible prediction files, in chunks, resuming an interrupted run.

Fast mode (``fast=True``) works the way DeepLabCut-Live's dynamic cropping
does: frames are processed in blocks of ``block`` frames; each block is cropped
around where the animal was at the end of the previous block (or, without a
confident previous pose, where a low-resolution pass over the block's first
frame finds it) and the network runs at full resolution on the crop only.
A frame whose crop result is not confident, or whose keypoints reach the crop's
border, is redone on the whole frame.  Crop decisions depend on the block, not
on the batch size, so results do not depend on ``batch_size``.
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .options import ANALYSIS_BATCH_SIZE
from .predictor import AnalysisError, Predictor

__all__ = [
    "AnalysisChunk",
    "AnalysisError",
    "Predictor",
    "analyze_video",
    "iter_analyze",
    "output_paths",
]


# --------------------------------------------------------------------------- frames
def frame_source(video: Any) -> tuple[Callable[[int], np.ndarray], int, Callable[[], None]]:
    """``(get(i), n_frames, close())`` for a path, a VideoReader or an array."""
    from .video import VideoReader

    if isinstance(video, (str, os.PathLike)):
        # one thread decodes and converts: the network has the other cores
        reader = VideoReader(video, readahead=0, cache_bytes=0, max_decoders=1, convert_threads=1)
        return reader.get, len(reader), reader.close
    if isinstance(video, VideoReader):
        return video.get, len(video), (lambda: None)
    shape = getattr(video, "shape", None)
    if shape is None or len(shape) not in (3, 4):
        raise ValueError(f"expected a video path, a VideoReader or an (N, H, W[, 3]) array, got {type(video).__name__}")
    return (lambda i: np.asarray(video[i])), int(shape[0]), (lambda: None)


def probe_frames(video: Any, count: int = 16) -> np.ndarray | None:
    """``count`` frames spread over ``video`` (for measuring backends on what will be analysed); None if unreadable."""
    try:
        get, n, close = frame_source(video)
    except (OSError, ValueError):
        return None
    try:
        frames = [np.asarray(get(int(i))) for i in np.unique(np.linspace(0, max(0, n - 1), count).astype(int))]
        return np.stack(frames) if frames else None
    except Exception:  # noqa: BLE001 - a video that cannot be read fails later, with its own message
        return None
    finally:
        close()


def _decode_ahead(
    get: Callable[[int], np.ndarray], blocks: list[range], out: queue.Queue, stop: threading.Event
) -> None:
    """Decode ``blocks`` of frames into ``out`` as ``(block, frames, failed)``; ``None`` ends.

    A frame that cannot be read is None in ``frames`` and its reason is in ``failed``.
    """
    try:
        for block in blocks:
            frames, failed = [], {}
            for i in block:
                try:
                    frames.append(np.asarray(get(i)))
                except Exception as exc:  # noqa: BLE001 - a corrupt or missing frame is reported, not fatal
                    failed[i] = f"{type(exc).__name__}: {exc}"
                    frames.append(None)
            while not stop.is_set():
                try:
                    out.put((block, frames, failed), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        out.put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer
        out.put(exc)


@dataclass
class AnalysisChunk:
    """Predictions for frames ``start .. start + len(xy) - 1``.

    ``failed`` maps frames that could not be decoded to the reason (their
    coordinates are NaN and likelihood 0).  ``full_frames`` counts the frames
    processed on the whole frame (in fast mode: the fallbacks and
    localisations).
    """

    start: int
    xy: np.ndarray
    likelihood: np.ndarray
    failed: dict[int, str] = field(default_factory=dict)
    full_frames: int = 0

    @property
    def stop(self) -> int:
        return self.start + len(self.xy)


def _crop_window(
    points: np.ndarray, frame_shape: tuple[int, int], size: int, margin: int, align: int, step: int | None = None
):
    """Origin and size of a crop holding ``points`` with ``margin``, at least ``size`` square, inside the frame.

    Sizes are multiples of ``step`` (default ``align``) and the origin is a
    multiple of ``align`` where the frame allows, so the crop sees the same
    pixel grid as the whole frame does.
    """
    h, w = frame_shape
    step = step or align
    lo = points.min(axis=0) - margin
    hi = points.max(axis=0) + margin
    extent = np.ceil(np.maximum(hi - lo, size) / step) * step
    cw, ch = int(min(extent[0], w)), int(min(extent[1], h))
    centre = (lo + hi) / 2
    x0 = int(np.clip(round((centre[0] - cw / 2) / align) * align, 0, w - cw))
    y0 = int(np.clip(round((centre[1] - ch / 2) / align) * align, 0, h - ch))
    return (x0, y0), (cw, ch)


def iter_analyze(
    predictor: Predictor,
    video: Any,
    *,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    fast: bool = False,
    block: int = 16,
    crop_size: int = 256,
    margin: int = 48,
    fallback_likelihood: float = 0.5,
    locate_scale: float = 0.5,
    track: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[AnalysisChunk]:
    """Predict frames ``start .. stop - 1`` of ``video``, one :class:`AnalysisChunk` per block.

    ``video`` is a path, a :class:`~napari_posekit.core.video.VideoReader` or
    an ``(N, H, W[, 3])`` array (numpy or dask).  Frames are decoded in a
    background thread up to a few blocks ahead.  ``fast`` crops around the
    animal (see the module docstring): ``crop_size`` is the smallest crop side in
    frame pixels, ``margin`` the room around the previous block's keypoints,
    ``fallback_likelihood`` the mean likelihood below which a frame is redone
    on the whole frame.  ``track=False`` locates the animal afresh in every
    block instead of following it (for unrelated images).  The generator stops between blocks when
    ``should_stop()`` is true or when it is closed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if block < 1:
        raise ValueError(f"block must be at least 1, got {block}")
    get, n, close = frame_source(video)
    stop = n if stop is None else min(int(stop), n)
    start = max(0, int(start))
    k = len(predictor.bodyparts)
    blocks = [range(s, min(s + block, stop)) for s in range(start, stop, block)]
    frames_q: queue.Queue = queue.Queue(maxsize=3)
    halt = threading.Event()
    thread = threading.Thread(
        target=_decode_ahead, args=(get, blocks, frames_q, halt), daemon=True, name="posekit-decode"
    )
    thread.start()
    previous: np.ndarray | None = None  # where the animal will be in the next block (see _anchor)
    try:
        while True:
            if should_stop is not None and should_stop():
                return
            item = frames_q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            rng, frames, failed = item
            xy = np.full((len(rng), k, 2), np.nan)
            p = np.zeros((len(rng), k))
            good = np.array([i not in failed for i in rng])
            full = 0
            if good.any():
                stack = np.stack([frames[j] for j in np.flatnonzero(good)])
                if fast:
                    sub_xy, sub_p, full = _fast_block(
                        predictor,
                        stack,
                        previous,
                        batch_size=batch_size,
                        crop_size=crop_size,
                        margin=margin,
                        fallback_likelihood=fallback_likelihood,
                        locate_scale=locate_scale,
                    )
                else:
                    sub_xy, sub_p = predictor.predict(stack, batch_size=batch_size)
                    full = len(stack)
                xy[good], p[good] = sub_xy, sub_p
                previous = _anchor(sub_xy, sub_p, fallback_likelihood) if track else None
            yield AnalysisChunk(rng.start, xy, p, failed, full)
    finally:
        halt.set()
        close_thread = thread.is_alive()
        while close_thread:
            try:
                frames_q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)
            close_thread = thread.is_alive()
        close()


def _anchor(xy: np.ndarray, p: np.ndarray, min_likelihood: float) -> np.ndarray | None:
    """Confident keypoints of a block's last frame plus where they will be a block later.

    The motion over the block (mean displacement per frame of the confident
    keypoints) is extrapolated, so the next crop covers the path the animal
    is on.  None when fewer than half of the keypoints are confident.
    """
    n, k = p.shape
    ok = p[-1] >= min_likelihood
    if ok.sum() < max(1, k // 2):
        return None
    last = xy[-1][ok]
    both = (p[0] >= min_likelihood) & ok
    if n > 1 and both.any():
        velocity = (xy[-1][both] - xy[0][both]).mean(axis=0) / (n - 1)
        return np.concatenate([last, last + velocity * n])
    return last


def _fast_block(
    predictor: Predictor,
    frames: np.ndarray,
    previous: np.ndarray | None,
    *,
    batch_size: int,
    crop_size: int,
    margin: int,
    fallback_likelihood: float,
    locate_scale: float,
):
    """Crop-mode predictions for one block (see :func:`iter_analyze`)."""
    h, w = frames.shape[1:3]
    full = 0
    anchor = previous
    if anchor is None or len(anchor) == 0:
        anchor = predictor.locate(frames[0], scale=locate_scale)
        full += 1
    if anchor is None:
        xy, p = predictor.predict(frames, batch_size=batch_size)
        return xy, p, full + len(frames)
    align = max(1, math.ceil(predictor.pad_to / predictor.input_scale))
    # crop sides in steps of two alignment units: fewer distinct input sizes, fewer frozen graphs
    origin, size = _crop_window(anchor, (h, w), crop_size, margin, align, step=2 * align)
    xy, p = predictor.predict_crops(frames, origin, size, batch_size=batch_size)
    # redo frames whose crop result is unsure or touches the crop's border (the animal may be leaving it)
    x0, y0 = origin
    edge = max(4.0, 2.0 * predictor.codec.stride)
    confident = p >= fallback_likelihood
    near_border = (
        (xy[..., 0] < x0 + edge) & (x0 > 0)
        | (xy[..., 0] > x0 + size[0] - edge) & (x0 + size[0] < w)
        | (xy[..., 1] < y0 + edge) & (y0 > 0)
        | (xy[..., 1] > y0 + size[1] - edge) & (y0 + size[1] < h)
    ) & confident
    redo = (p.mean(axis=1) < fallback_likelihood) | near_border.any(axis=1)
    if redo.any():
        if (size[0], size[1]) == (w, h):
            return xy, p, full  # the crop is the whole frame already
        xy_full, p_full = predictor.predict(frames[redo], batch_size=batch_size)
        xy[redo], p[redo] = xy_full, p_full
        full += int(redo.sum())
    return xy, p, full


# --------------------------------------------------------------------------- files
def output_paths(video: str | os.PathLike, scorer: str, output_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Where :func:`analyze_video` writes: ``h5``, ``csv``, ``meta`` and the resumable ``partial`` state."""
    video = Path(video)
    folder = Path(output_dir) if output_dir is not None else video.parent
    stem = f"{video.stem}{scorer}"
    return {
        "h5": folder / f"{stem}.h5",
        "csv": folder / f"{stem}.csv",
        "meta": folder / f"{stem}_meta.json",
        "partial": folder / f".{stem}.posekit-partial.npy",
        "partial_state": folder / f".{stem}.posekit-partial.json",
    }


def _check_writable(folder: Path) -> None:
    from .project import ensure_writable_folder

    try:
        ensure_writable_folder(folder)
    except OSError as exc:
        raise AnalysisError(f"cannot write the predictions to {folder}: {exc.strerror or exc}") from exc


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _partial_results(
    partial_path: Path, state_path: Path, identity: dict[str, Any], shape: tuple[int, int, int], *, resume: bool
) -> tuple[np.ndarray, int, dict[int, str]]:
    """``(results, frames done, failed frames)``: an interrupted run of the same analysis, or a fresh NaN array.

    ``results`` is a memory-mapped ``(n, k, 3)`` float32 array (x, y, likelihood).
    """
    if resume and partial_path.is_file() and state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
            if state.get("identity") == identity:
                results = np.lib.format.open_memmap(partial_path, mode="r+")
                if results.shape == shape:
                    return results, int(state["done"]), {int(i): r for i, r in state.get("failed", {}).items()}
        except (OSError, ValueError, KeyError):
            pass
    results = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.float32, shape=shape)
    results[:] = np.nan
    return results, 0, {}


def analyze_video(
    model: Predictor | str | os.PathLike,
    video: str | os.PathLike,
    *,
    output_dir: str | os.PathLike | None = None,
    batch_size: int = ANALYSIS_BATCH_SIZE,
    fast: bool = True,
    chunk_frames: int = 512,
    overwrite: bool = False,
    csv: bool = True,
    device: Any = "cpu",
    backend: str = "auto",
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> Generator[dict[str, Any], None, Path | None]:
    """Analyse a whole video file into DeepLabCut-compatible predictions; a generator.

    Yields ``{"event": "progress", "done", "total", "fps", "chunk"}`` after
    every block and returns the ``.h5`` path (``None`` when stopped early).
    Results go to ``<video stem><scorer>.h5`` (+ ``.csv``, ``_meta.json``) in
    ``output_dir`` (default: beside the video); an existing result is kept
    and returned at once unless ``overwrite``.  Progress is kept in a hidden
    memory-mapped file flushed every ``chunk_frames`` frames, so memory does
    not grow with the video and a rerun after an interruption resumes where it
    stopped.  The final files appear atomically.  Frames that cannot be
    decoded come out NaN with likelihood 0 and are listed in the metadata
    (``failed_frames``).  ``model`` is a :class:`Predictor` or what
    :meth:`Predictor.load` takes (with ``device`` and ``backend``; the
    video's frames help choose the backend when the model has no labeled
    frames).  Other keyword arguments go to :func:`iter_analyze`.
    """
    from .predictions import write_predictions
    from .video import read_metadata

    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"{video}: no such video")
    if isinstance(model, Predictor):
        predictor = model
    else:
        predictor = Predictor.load(model, device=device, backend=backend, probe_frames=lambda: probe_frames(video))
    paths = output_paths(video, predictor.scorer, output_dir)
    if paths["h5"].is_file() and not overwrite:
        return paths["h5"]
    _check_writable(paths["h5"].parent)
    meta = read_metadata(video)
    n, k = meta.n_frames, len(predictor.bodyparts)
    identity = {
        "video": str(video.resolve()),
        "n_frames": n,
        "checkpoint": str(predictor.checkpoint.resolve()) if predictor.checkpoint else None,
        "step": int(predictor.meta.get("step", 0)),
        "bodyparts": predictor.bodyparts,
    }
    state_path, partial_path = paths["partial_state"], paths["partial"]
    results, done, failed = _partial_results(partial_path, state_path, identity, (n, k, 3), resume=not overwrite)
    t0, frames0 = time.monotonic(), done
    since_flush = 0

    def flush(done: int) -> None:
        results.flush()
        _write_json_atomic(state_path, {"identity": identity, "done": done, "failed": failed})

    for chunk in iter_analyze(
        predictor, video, start=done, batch_size=batch_size, fast=fast, should_stop=should_stop, **options
    ):
        results[chunk.start : chunk.stop, :, :2] = chunk.xy
        results[chunk.start : chunk.stop, :, 2] = chunk.likelihood
        failed.update(chunk.failed)
        done = chunk.stop
        since_flush += len(chunk.xy)
        if since_flush >= chunk_frames:
            flush(done)
            since_flush = 0
        elapsed = time.monotonic() - t0
        yield {
            "event": "progress",
            "done": done,
            "total": n,
            "fps": (done - frames0) / max(elapsed, 1e-9),
            "chunk": chunk,
        }
    if done < n:
        flush(done)
        return None
    failed_list = sorted(failed)
    write_predictions(
        paths["h5"],
        np.asarray(results[:, :, :2], dtype=np.float64),
        np.asarray(results[:, :, 2], dtype=np.float64),
        predictor.bodyparts,
        predictor.scorer,
        csv=csv,
        metadata={
            **identity,
            "scorer": predictor.scorer,
            "fps": meta.fps,
            "width": meta.width,
            "height": meta.height,
            "fast": bool(fast),
            "skeleton": [list(e) for e in predictor.skeleton],
            "failed_frames": failed_list,
            "failed_reasons": {str(i): failed[i] for i in failed_list[:100]},
            "seconds": time.monotonic() - t0,
        },
    )
    results = None  # closes the memory map before its file goes
    partial_path.unlink(missing_ok=True)
    state_path.unlink(missing_ok=True)
    return paths["h5"]
