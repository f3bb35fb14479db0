"""Labeled videos: predictions drawn over the frames, as DeepLabCut's ``create_labeled_video``.

:func:`iter_labeled_video` decodes the video, draws every body part whose
likelihood reaches ``pcutoff`` as a filled circle in its own colour, the
skeleton between pairs of drawn body parts and, optionally, a fading trail of
each body part's last positions, and encodes the result to MP4 with
:func:`~napari_posekit.core.video.write_video`. It is a generator that yields
the number of frames written after each frame, so a widget or command line can
show progress and stop between frames; stopping (closing the generator) leaves
no output file behind, and an existing file of that name as it was.
:func:`write_labeled_video` runs it to the end.

Colours come from :func:`bodypart_colors`: by default matplotlib's
``rainbow`` colormap sampled at one colour per body part, DeepLabCut's default,
so the napari layers and the videos can share them.

Drawing uses Pillow; coordinates follow the pixel-centre convention (the centre
of pixel ``[r, c]`` is ``x = c``, ``y = r``).

Everything here is napari-free.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from napari_posekit.core._generators import drive
from napari_posekit.core.options import PCUTOFF
from napari_posekit.core.video import VideoReader, iter_frames, read_metadata, write_video

__all__ = [
    "COLORMAPS",
    "bodypart_colors",
    "iter_labeled_video",
    "labeled_video_path",
    "write_labeled_video",
]

#: Colormaps :func:`bodypart_colors` knows.
COLORMAPS = ("rainbow", "hsv")
#: Frame rate used when the video does not say (arrays, broken headers).
DEFAULT_FPS = 30.0


def bodypart_colors(n: int, colormap: str = "rainbow") -> np.ndarray:
    """``(n, 3)`` uint8 RGB colours, one per body part, evenly spread over a colormap.

    ``"rainbow"`` is matplotlib's ``rainbow`` colormap (DeepLabCut's default)
    sampled at ``n`` evenly spaced points, from purple over green to red, with
    the same byte values matplotlib gives. ``"hsv"`` steps around the hue
    circle (``n`` hues, full saturation and value), which keeps neighbouring
    colours apart when there are many body parts.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    n = int(n)
    if colormap == "rainbow":
        x = np.linspace(0.0, 1.0, n)
        rgb = np.stack([np.abs(2 * x - 0.5), np.sin(np.pi * x), np.cos(np.pi * x / 2)], axis=1)
    elif colormap == "hsv":
        h = np.arange(n) / max(n, 1) * 6.0
        rgb = np.clip(np.stack([np.abs(h - 3) - 1, 2 - np.abs(h - 2), 2 - np.abs(h - 4)], axis=1), 0.0, 1.0)
    else:
        raise ValueError(f"colormap must be one of {', '.join(map(repr, COLORMAPS))}, got {colormap!r}")
    return (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8).reshape(n, 3)


def labeled_video_path(h5_path: str | os.PathLike) -> Path:
    """``<stem>_labeled.mp4`` beside a prediction file (DeepLabCut's name for labeled videos).

    ``m3v1DLC_resnet50_openfieldOct30shuffle1_200000.h5`` gives
    ``m3v1DLC_resnet50_openfieldOct30shuffle1_200000_labeled.mp4``.
    """
    path = Path(h5_path)
    return path.with_name(f"{path.stem}_labeled.mp4")


# --------------------------------------------------------------------------------------
# Preparing
# --------------------------------------------------------------------------------------


@dataclass
class _Plan:
    """Everything needed to render and encode, checked before any frame is decoded."""

    video: object
    start: int
    stop: int
    width: int
    height: int
    xy: np.ndarray
    visible: np.ndarray
    colors: list[tuple[int, int, int]]
    edges: list[tuple[int, int]]
    radius: float
    line_width: int
    trail_length: int
    skeleton_color: tuple[int, int, int]
    out_path: Path
    fps: float
    quality: int
    extra_args: list[str]

    @property
    def total(self) -> int:
        return self.stop - self.start


def _color(value, name: str) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"{name} must be an (r, g, b) colour with values 0-255, got {value!r}")
    return rgb  # type: ignore[return-value]


def _as_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _video_info(video) -> tuple[object, int, int, int, float | None]:
    """``(source, n_frames, height, width, fps or None)`` of a path, reader or array."""
    if isinstance(video, (str, os.PathLike)):
        meta = read_metadata(video)
        fps = meta.fps if math.isfinite(meta.fps) and meta.fps > 0 else None
        return Path(video), meta.n_frames, meta.height, meta.width, fps
    if isinstance(video, VideoReader):
        meta = video.metadata
        fps = meta.fps if math.isfinite(meta.fps) and meta.fps > 0 else None
        return video, meta.n_frames, meta.height, meta.width, fps
    shape = getattr(video, "shape", None)
    if shape is None:
        video = np.asarray(video)
        shape = video.shape
    dtype = np.dtype(getattr(video, "dtype", np.uint8))
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] != 3) or dtype != np.uint8:
        raise ValueError(
            f"video must be a path, a VideoReader or frames (n, height, width, 3) or (n, height, width) uint8, "
            f"got {tuple(shape)} {dtype}"
        )
    return video, int(shape[0]), int(shape[1]), int(shape[2]), None


def _edges(skeleton, bodyparts: list[str], individual_of: list[str] | None) -> list[tuple[int, int]]:
    groups: dict[str | None, dict[str, int]] = {}
    for j, bp in enumerate(bodyparts):
        groups.setdefault(None if individual_of is None else individual_of[j], {})[bp] = j
    known = set(bodyparts)
    edges = []
    for pair in skeleton:
        if isinstance(pair, str) or not isinstance(pair, (Sequence, np.ndarray)) or len(pair) != 2:
            raise ValueError(f"each skeleton entry must be a pair of body parts, got {pair!r}")
        a, b = (str(p) for p in pair)
        unknown = [p for p in (a, b) if p not in known]
        if unknown:
            names = list(dict.fromkeys(bodyparts))
            raise ValueError(f"skeleton body part(s) {unknown} not among the body parts {names}")
        for parts in groups.values():
            if a in parts and b in parts:
                edges.append((parts[a], parts[b]))
    return edges


def _prepare(
    video,
    xy,
    likelihood,
    bodyparts,
    out_path,
    *,
    skeleton,
    individual_of,
    pcutoff,
    trail_length,
    dot_radius,
    line_width,
    colormap,
    skeleton_color,
    start,
    stop,
    fps,
    quality,
) -> _Plan:
    source, n_frames, height, width, video_fps = _video_info(video)
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise ValueError(f"xy must have shape (n_frames, n_bodyparts, 2), got {xy.shape}")
    n_rows, k = xy.shape[:2]
    if isinstance(bodyparts, str):
        raise TypeError(f"bodyparts must be a list of names, got the string {bodyparts!r}")
    bodyparts = [str(b) for b in bodyparts]
    if len(bodyparts) != k:
        raise ValueError(f"xy has {k} body parts per frame but {len(bodyparts)} names were given: {bodyparts}")
    if individual_of is not None:
        individual_of = [str(i) for i in individual_of]
        if len(individual_of) != k:
            raise ValueError(f"individual_of needs one individual per body part ({k}), got {len(individual_of)}")
    visible = np.isfinite(xy).all(axis=2)
    if likelihood is not None:
        likelihood = np.asarray(likelihood, dtype=np.float64)
        if likelihood.shape != (n_rows, k):
            raise ValueError(f"likelihood must have shape {(n_rows, k)}, got {likelihood.shape}")
        with np.errstate(invalid="ignore"):
            visible &= likelihood >= float(pcutoff)
    # far-away points (garbage predictions) are not drawn: Pillow works in C ints
    reach = 2 * max(height, width)
    with np.errstate(invalid="ignore"):
        visible &= (np.abs(xy[..., 0] - width / 2) < reach) & (np.abs(xy[..., 1] - height / 2) < reach)

    start = _as_int(start, "start")
    stop = n_frames if stop is None else min(_as_int(stop, "stop"), n_frames)
    if not 0 <= start < stop:
        raise ValueError(f"no frames to write: start={start}, stop={stop} in a video of {n_frames} frames")
    trail_length = _as_int(trail_length, "trail_length")
    if trail_length < 0:
        raise ValueError(f"trail_length must not be negative, got {trail_length}")
    if dot_radius is None:
        radius = float(max(2, round(min(height, width) / 100)))
    else:
        radius = float(dot_radius)
        if not (math.isfinite(radius) and radius >= 1):
            raise ValueError(f"dot_radius must be at least 1 pixel, got {dot_radius!r}")
    if line_width is None:
        line_width = max(1, round(radius / 3))
    line_width = _as_int(line_width, "line_width")
    if line_width < 1:
        raise ValueError(f"line_width must be at least 1 pixel, got {line_width}")

    names = list(dict.fromkeys(bodyparts))
    palette = bodypart_colors(len(names), colormap)
    colour_of = {name: tuple(int(v) for v in palette[i]) for i, name in enumerate(names)}

    out_path = Path(out_path)
    folder = out_path.parent
    if not folder.is_dir():
        raise FileNotFoundError(2, f"cannot write {out_path.name}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(13, f"cannot write {out_path.name} in the folder {folder}: permission denied")
    if isinstance(source, Path) and out_path.exists() and out_path.resolve() == source.resolve():
        raise ValueError(f"{out_path}: the labeled video would replace the video it is drawn on")
    if fps is None:
        fps = video_fps or DEFAULT_FPS
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    # x264 with yuv420p needs an even frame size: pad odd sizes by one pixel of black
    extra_args = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"] if height % 2 or width % 2 else []
    return _Plan(
        video=source,
        start=start,
        stop=stop,
        width=width,
        height=height,
        xy=xy,
        visible=visible,
        colors=[colour_of[bp] for bp in bodyparts],
        edges=_edges(() if skeleton is None else skeleton, bodyparts, individual_of),
        radius=radius,
        line_width=line_width,
        trail_length=trail_length,
        skeleton_color=_color(skeleton_color, "skeleton_color"),
        out_path=out_path,
        fps=fps,
        quality=_as_int(quality, "quality"),
        extra_args=extra_args,
    )


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def _draw(plan: _Plan, frame: np.ndarray, i: int) -> np.ndarray:
    """Frame ``i`` with its labels drawn."""
    frame = _as_rgb(frame)
    n_rows = len(plan.xy)
    first = max(i - plan.trail_length, 0)
    if first >= n_rows:
        return frame
    image = Image.fromarray(frame)
    xy, visible = plan.xy, plan.visible

    if plan.trail_length and i > first:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        trail = ImageDraw.Draw(overlay)
        width = max(1, round(plan.line_width))
        for j in range(first, min(i, n_rows - 1)):
            alpha = round(255 * (j - (i - plan.trail_length) + 1) / (plan.trail_length + 1))
            for k in np.flatnonzero(visible[j] & visible[j + 1]):
                trail.line(
                    [tuple(xy[j, k]), tuple(xy[j + 1, k])], fill=(*plan.colors[k], alpha), width=width, joint="curve"
                )
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")

    if i < n_rows:
        draw = ImageDraw.Draw(image)
        shown = visible[i]
        for a, b in plan.edges:
            if shown[a] and shown[b]:
                draw.line([tuple(xy[i, a]), tuple(xy[i, b])], fill=plan.skeleton_color, width=plan.line_width)
        r = plan.radius
        for k in np.flatnonzero(shown):
            x, y = xy[i, k]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=plan.colors[k])
    return np.asarray(image)


def _frames(plan: _Plan) -> Iterator[np.ndarray]:
    """Decoded frames ``start..stop-1`` with their labels drawn."""
    if isinstance(plan.video, Path):
        source: Iterator = iter_frames(plan.video, plan.start, plan.stop)
    else:
        source = (plan.video[i] for i in range(plan.start, plan.stop))
    try:
        for i, frame in zip(range(plan.start, plan.stop), source):
            yield _draw(plan, frame, i)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------------------
# Encoding, one frame at a time
# --------------------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised inside the encoder when the consumer stopped the generator."""


def _run(plan: _Plan) -> Generator[int, None, Path]:
    """Encode on a worker thread in lock-step with the consumer: one frame per ``next()``.

    :func:`write_video` pulls frames from an iterator; when it pulls frame
    ``n`` it has sent frames ``0..n-1`` to the encoder, so the worker reports
    ``n`` and waits for the consumer before drawing frame ``n``. Closing the
    generator makes the worker raise inside :func:`write_video`, which removes
    its temporary file.
    """
    events: queue.SimpleQueue = queue.SimpleQueue()
    replies: queue.SimpleQueue = queue.SimpleQueue()

    def frames() -> Iterator[np.ndarray]:
        drawn = _frames(plan)
        try:
            for n in range(plan.total):
                if n:  # frames 0..n-1 are with the encoder
                    events.put(("progress", n))
                    if replies.get() != "go":
                        raise _Stopped
                frame = next(drawn, None)
                if frame is None:
                    return
                yield frame
        finally:
            drawn.close()  # closes the decoder now, on this thread

    def work() -> None:
        try:
            path = write_video(frames(), plan.out_path, fps=plan.fps, quality=plan.quality, extra_args=plan.extra_args)
        except _Stopped:
            events.put(("stopped", None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer's thread
            events.put(("error", err))
        else:
            events.put(("done", path))

    thread = threading.Thread(target=work, name="posekit-labeled-video", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "progress":
                yield value
                replies.put("go")
            elif kind == "done":
                yield plan.total
                return value
            elif kind == "error":
                raise value
            else:  # pragma: no cover - the worker stops only when told to
                raise RuntimeError("the labeled video was stopped")
    finally:
        replies.put("stop")  # wakes a worker waiting between frames; ignored by a finished one
        thread.join()


def iter_labeled_video(
    video: str | os.PathLike | VideoReader | np.ndarray,
    xy: np.ndarray,
    likelihood: np.ndarray | None,
    bodyparts: Sequence[str],
    out_path: str | os.PathLike,
    *,
    skeleton: Sequence[Sequence[str]] = (),
    individual_of: Sequence[str] | None = None,
    pcutoff: float = PCUTOFF,
    trail_length: int = 0,
    dot_radius: float | None = None,
    line_width: int | None = None,
    colormap: str = "rainbow",
    skeleton_color: Sequence[int] = (0, 0, 0),
    start: int = 0,
    stop: int | None = None,
    fps: float | None = None,
    quality: int = 18,
) -> Generator[int, None, Path]:
    """Write a labeled video frame by frame; yields the number of frames written, returns the path.

    Parameters
    ----------
    video:
        A video file, a :class:`~napari_posekit.core.video.VideoReader`, or
        frames ``(n, height, width, 3)`` (or ``(n, height, width)``) uint8,
        e.g. a numpy or dask array.
    xy:
        ``(n_rows, n_bodyparts, 2)`` ``(x, y)``; row ``i`` is drawn on frame
        ``i`` of the video. Frames past the last row are written without labels.
    likelihood:
        ``(n_rows, n_bodyparts)``; points below ``pcutoff`` (or NaN) are not
        drawn. None draws every point with coordinates.
    bodyparts:
        The body part of each column of ``xy``; it picks the colour.
    out_path:
        The video to write (MP4 with H.264); see :func:`labeled_video_path`.
        Its folder must exist.
    skeleton:
        Pairs of body part names joined by a line when both are drawn.
    individual_of:
        For multi-animal predictions, the individual of each column: the
        skeleton joins body parts of the same individual, and each body part
        has the same colour on every individual.
    pcutoff:
        Likelihood below which a point is not drawn (default :data:`~napari_posekit.core.options.PCUTOFF`).
    trail_length:
        Draw each body part's path over its last ``trail_length`` frames as a
        line that fades with age; 0 draws none.
    dot_radius:
        Radius of the circles in pixels; default ``min(height, width) / 100``,
        at least 2.
    line_width:
        Width of skeleton and trail lines; default a third of the radius, at least 1.
    colormap:
        See :func:`bodypart_colors`.
    skeleton_color:
        RGB of the skeleton lines (DeepLabCut's default black).
    start, stop:
        The frames to write, ``start..stop-1`` (default the whole video).
    fps:
        Frame rate of the output; default the video's, else 30.
    quality:
        x264 CRF passed to :func:`~napari_posekit.core.video.write_video`
        (lower is better, 18 is visually lossless).

    Yields
    ------
    int
        Frames written so far, ``1..stop-start``. The generator's return value
        (``StopIteration.value``) is the output path.

    Notes
    -----
    Arguments are checked when this function is called, before anything is
    decoded. The output appears only when complete; closing the generator
    early (or an error) leaves no file behind and an existing file unchanged.
    An odd frame width or height is padded with one black pixel row/column
    (H.264 in yuv420p needs even sizes).
    """
    plan = _prepare(
        video,
        xy,
        likelihood,
        bodyparts,
        out_path,
        skeleton=skeleton,
        individual_of=individual_of,
        pcutoff=pcutoff,
        trail_length=trail_length,
        dot_radius=dot_radius,
        line_width=line_width,
        colormap=colormap,
        skeleton_color=skeleton_color,
        start=start,
        stop=stop,
        fps=fps,
        quality=quality,
    )
    return _run(plan)


def write_labeled_video(
    video: str | os.PathLike | VideoReader | np.ndarray,
    xy: np.ndarray,
    likelihood: np.ndarray | None,
    bodyparts: Sequence[str],
    out_path: str | os.PathLike,
    *,
    skeleton: Sequence[Sequence[str]] = (),
    individual_of: Sequence[str] | None = None,
    pcutoff: float = PCUTOFF,
    trail_length: int = 0,
    dot_radius: float | None = None,
    line_width: int | None = None,
    colormap: str = "rainbow",
    skeleton_color: Sequence[int] = (0, 0, 0),
    start: int = 0,
    stop: int | None = None,
    fps: float | None = None,
    quality: int = 18,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a labeled video; returns its path. ``progress(done, total)`` is called after every frame.

    See :func:`iter_labeled_video` for the parameters.
    """
    plan = _prepare(
        video,
        xy,
        likelihood,
        bodyparts,
        out_path,
        skeleton=skeleton,
        individual_of=individual_of,
        pcutoff=pcutoff,
        trail_length=trail_length,
        dot_radius=dot_radius,
        line_width=line_width,
        colormap=colormap,
        skeleton_color=skeleton_color,
        start=start,
        stop=stop,
        fps=fps,
        quality=quality,
    )
    return drive(_run(plan), None if progress is None else lambda done: progress(done, plan.total))
