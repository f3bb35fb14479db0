"""Choosing and extracting video frames for labeling, DeepLabCut style.

DeepLabCut's ``extract_frames`` picks a few frames per video that are worth
labeling and writes them as PNG images into ``labeled-data/<video stem>/``.
This module does the same, napari-free:

* :func:`select_uniform` spreads ``k`` frames evenly over a part of the video
  (``start``/``stop`` are fractions of the video, DeepLabCut's config keys).
* :func:`select_kmeans` clusters small grayscale thumbnails of the frames with
  k-means and takes one frame per cluster, so that the picked frames look
  different from each other (different postures, places, lighting).
  :func:`iter_select_kmeans` is the same as a generator that reports progress.
* :func:`frame_image_name` is DeepLabCut's image name for a frame
  (``img0042.png``).
* :func:`frame_of_image` reads the frame number back from such a name.
* :func:`extract_frames` writes the frames as lossless RGB PNGs, atomically,
  and never replaces an image that is already there (it may carry labels).
  :func:`iter_extract_frames` is the same as a generator that reports progress.

Frame ranges follow DeepLabCut: the part of the video from ``start`` to
``stop`` is frames ``floor(n * start)`` up to (not including)
``ceil(n * stop)``.
"""

from __future__ import annotations

import math
import operator
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._generators import drive
from .clustering import _kmeans, _Thumbnailer
from .video import FrameDecodeError, VideoReader

__all__ = [
    "KMEANS_MAX_SAMPLES",
    "ExtractedFrames",
    "extract_frames",
    "frame_image_name",
    "frame_of_image",
    "frame_range",
    "iter_extract_frames",
    "iter_select_kmeans",
    "select_kmeans",
    "select_uniform",
]

#: Without an explicit ``step``, :func:`select_kmeans` reads every ``step``-th
#: frame of the range so that between this many and twice this many frames
#: (and never fewer than ``k``) are clustered.
KMEANS_MAX_SAMPLES = 1000

#: How :func:`select_kmeans` picks the frame of a cluster.
PICK_METHODS = ("random", "centre")

Progress = Callable[[float], None]


# -- ranges and validation -----------------------------------------------------
def _as_count(value, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (ints and numpy ints only, no bools)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not a bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
    if number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def frame_range(n_frames: int, start: float = 0.0, stop: float = 1.0) -> range:
    """Frames of the part of a video between ``start`` and ``stop``.

    ``start`` and ``stop`` are fractions of the video with
    ``0 <= start < stop <= 1``; the range is ``floor(n_frames * start)`` to
    ``ceil(n_frames * stop)`` (exclusive), as in DeepLabCut, so it always holds
    at least one frame.
    """
    n_frames = _as_count(n_frames, "n_frames", 1)
    try:
        start, stop = float(start), float(stop)
    except (TypeError, ValueError):
        raise TypeError(f"start and stop must be numbers, got {start!r} and {stop!r}") from None
    if not (0.0 <= start < stop <= 1.0):
        raise ValueError(
            f"start and stop are fractions of the video and need 0 <= start < stop <= 1, "
            f"got start={start:g}, stop={stop:g}"
        )
    first = math.floor(n_frames * start)
    end = min(math.ceil(n_frames * stop), n_frames)
    return range(first, end)


def _check_enough(frames: range, k: int, n_frames: int, start: float, stop: float) -> None:
    if k > len(frames):
        where = f"frames {frames.start}..{frames.stop - 1}, start={start:g}, stop={stop:g}"
        raise ValueError(
            f"cannot pick {k} frames: the range holds only {len(frames)} of the video's {n_frames} frames ({where})"
        )


# -- uniform -------------------------------------------------------------------
def select_uniform(n_frames: int, k: int, start: float = 0.0, stop: float = 1.0) -> list[int]:
    """``k`` frames spread evenly over the part of the video from ``start`` to ``stop``.

    The range (see :func:`frame_range`) is cut into ``k`` equal segments and
    the middle frame of each is taken, so the frames are evenly spaced, in
    order, and distinct. (DeepLabCut's ``uniform`` draws ``k`` random frames
    from the range instead; evenly spaced frames cover it more regularly and
    are reproducible.)

    Raises ValueError for ``k < 1``, a bad range, or ``k`` larger than the
    number of frames in the range.
    """
    k = _as_count(k, "k", 1)
    frames = frame_range(n_frames, start, stop)
    _check_enough(frames, k, int(n_frames), float(start), float(stop))
    m = len(frames)
    # floor((j + 1/2) * m / k) in integers; consecutive picks differ by >= 1 since m >= k
    return [frames.start + (2 * j + 1) * m // (2 * k) for j in range(k)]


# -- k-means -------------------------------------------------------------------
def iter_select_kmeans(
    video_path: str | os.PathLike,
    k: int,
    start: float = 0.0,
    stop: float = 1.0,
    step: int | None = None,
    resize_width: int = 30,
    seed: int | None = 0,
    pick: str = "random",
) -> Generator[float, None, list[int]]:
    """Generator form of :func:`select_kmeans`.

    Yields progress fractions from 0.0 to 1.0 (at most about a hundred of
    them) and returns the selected frames: ``indices = yield from
    iter_select_kmeans(...)``, or the ``value`` of the ``StopIteration``.
    Closing the generator stops the work and closes the video.
    """
    k = _as_count(k, "k", 1)
    resize_width = _as_count(resize_width, "resize_width", 1)
    if pick not in PICK_METHODS:
        raise ValueError(f"pick must be one of {PICK_METHODS}, not {pick!r}")
    if step is not None:
        step = _as_count(step, "step", 1)

    with VideoReader(video_path, readahead=0, cache_bytes=0, max_decoders=1) as reader:
        meta = reader.metadata
        frames = frame_range(meta.n_frames, start, stop)
        _check_enough(frames, k, meta.n_frames, float(start), float(stop))
        if step is None:
            step = max(1, len(frames) // max(KMEANS_MAX_SAMPLES, k))
        samples = frames[::step]
        if len(samples) < k:
            raise ValueError(
                f"step={step} leaves {len(samples)} frames of the range to cluster, "
                f"fewer than k={k}; use a smaller step"
            )

        thumbnail = _Thumbnailer(meta.height, meta.width, resize_width)
        data = np.empty((len(samples), thumbnail.shape[0] * thumbnail.shape[1]))
        used = np.ones(len(samples), dtype=bool)
        reported = 0
        yield 0.0
        for n, i in enumerate(samples):
            try:
                data[n] = thumbnail(reader.get(i))
            except FrameDecodeError:
                used[n] = False  # a damaged frame is not worth labeling
            percent = (n + 1) * 95 // len(samples)
            if percent > reported:
                reported = percent
                yield percent / 100

    if not used.all():
        warnings.warn(
            f"{video_path}: {int((~used).sum())} damaged frames left out of the frame selection",
            RuntimeWarning,
            stacklevel=2,
        )
    candidates = np.asarray(samples)[used]
    if len(candidates) < k:
        raise ValueError(f"{video_path}: only {len(candidates)} frames of the range can be decoded, fewer than k={k}")

    data = data[used]
    rng = np.random.default_rng(seed)
    labels, centres = _kmeans(data, k, rng)
    picked = []
    for j in range(k):
        members = np.flatnonzero(labels == j)
        if pick == "random":
            member = members[rng.integers(len(members))]
        else:
            member = members[np.argmin(((data[members] - centres[j]) ** 2).sum(axis=1))]
        picked.append(int(candidates[member]))
    yield 1.0
    return sorted(picked)


def select_kmeans(
    video_path: str | os.PathLike,
    k: int,
    start: float = 0.0,
    stop: float = 1.0,
    step: int | None = None,
    resize_width: int = 30,
    seed: int | None = 0,
    pick: str = "random",
    progress: Progress | None = None,
) -> list[int]:
    """``k`` frames that look different from each other, by k-means on thumbnails.

    DeepLabCut's ``kmeans`` frame selection: every ``step``-th frame of the
    range from ``start`` to ``stop`` (see :func:`frame_range`) is read,
    shrunk to a grayscale thumbnail ``resize_width`` pixels wide (aspect
    ratio kept; each pixel the mean of its cell of the frame, over the colour
    channels), and the flattened thumbnails are clustered into ``k`` clusters
    with k-means (k-means++ seeding, ``numpy.random.default_rng(seed)``).
    One frame is taken from each cluster: with ``pick="random"`` (the
    default, as DeepLabCut does) a random member drawn with the same seeded
    generator; with ``pick="centre"`` the member nearest the cluster mean.

    Parameters
    ----------
    video_path
        The video; frames are read in order through a :class:`VideoReader`,
        so they are exactly the frames :func:`extract_frames` writes.
    k
        How many frames to select (DeepLabCut's ``numframes2pick``).
    start, stop
        Fractions of the video, ``0 <= start < stop <= 1``.
    step
        Read every ``step``-th frame of the range. None: a step that gives
        ``KMEANS_MAX_SAMPLES`` to twice that many frames (every frame of
        short ranges), and at least ``k``.
    resize_width
        Thumbnail width in pixels (DeepLabCut's ``cluster_resizewidth``);
        never more than the video's width.
    seed
        Seed of the random generator; the same seed gives the same frames
        (None: fresh randomness).
    pick
        ``"random"`` or ``"centre"``, see above.
    progress
        Called with the fraction done (0.0 to 1.0) as frames are read.

    Returns
    -------
    list[int]
        ``k`` distinct frame numbers in increasing order. Frames that fail to
        decode are left out of the clustering (with a RuntimeWarning).

    Raises
    ------
    ValueError
        ``k < 1``, a bad range, fewer than ``k`` frames in the range (or left
        by ``step``), or an unknown ``pick``.
    VideoOpenError
        The video cannot be opened.
    """
    return drive(iter_select_kmeans(video_path, k, start, stop, step, resize_width, seed, pick), progress)


# -- names and extraction ------------------------------------------------------
def frame_image_name(index: int, n_frames: int) -> str:
    """DeepLabCut's image name for frame ``index`` of a video with ``n_frames`` frames.

    ``"img" + str(index).zfill(int(ceil(log10(n_frames)))) + ".png"``: the
    number is zero-padded to the digits of the last frame number
    ``n_frames - 1``, so 100 frames give ``img00.png`` .. ``img99.png``, 101
    frames ``img000.png`` .. ``img100.png``, and a one-frame video
    ``img0.png``. (The digit count is computed in integers, which equals
    DeepLabCut's floating-point ``log10`` for every realistic frame count.)
    """
    n_frames = _as_count(n_frames, "n_frames", 1)
    index = _as_count(index, "index", 0)
    if index >= n_frames:
        raise ValueError(f"frame {index} is outside a video of {n_frames} frames")
    return f"img{str(index).zfill(len(str(n_frames - 1)))}.png"


_IMAGE_NAME = re.compile(r"img(\d+)\.[A-Za-z]+")


def frame_of_image(name: str | os.PathLike) -> int | None:
    """The video frame an image name stands for (``labeled-data/v/img042.png`` -> 42), or None.

    The inverse of :func:`frame_image_name`: any path or CollectedData key
    whose last part is ``img<digits>.<extension>``, whatever the separator.
    """
    match = _IMAGE_NAME.fullmatch(str(name).replace("\\", "/").rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class ExtractedFrames:
    """What :func:`extract_frames` did.

    ``paths`` holds one image per requested frame, in frame order. Of these,
    ``written`` were created now and ``skipped`` already existed and were left
    untouched (they may have been labeled already).
    """

    folder: Path
    frames: list[int] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def _write_png_exclusive(image: np.ndarray, path: Path) -> bool:
    """Write ``image`` to ``path`` as PNG, atomically and only if ``path`` does not exist.

    The image is written to a temporary file in the same folder, flushed to
    disk and then linked to its name, which fails instead of replacing a file
    that appeared meanwhile. Where hard links are not supported the temporary
    file is renamed with ``os.replace`` after checking the name is free.
    Returns False when ``path`` already existed.
    """
    from PIL import Image

    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(image)).save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this filesystem
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def iter_extract_frames(
    video_path: str | os.PathLike,
    indices: Iterable[int],
    labeled_data_folder: str | os.PathLike,
) -> Generator[float, None, ExtractedFrames]:
    """Generator form of :func:`extract_frames`.

    Yields the fraction of frames done after each frame and returns the
    :class:`ExtractedFrames`: ``result = yield from iter_extract_frames(...)``.
    Closing the generator stops the work (images written before stay) and
    closes the video.
    """
    with VideoReader(video_path, readahead=0, cache_bytes=0, max_decoders=1) as reader:
        n_frames = len(reader)
        frames = sorted({_as_count(i, "frame index", 0) for i in indices})
        outside = [i for i in frames if i >= n_frames]
        if outside:
            raise ValueError(
                f"{reader.path}: frames {outside} are outside the video ({n_frames} frames, 0..{n_frames - 1})"
            )
        folder = Path(labeled_data_folder) / Path(video_path).stem
        paths = [folder / frame_image_name(i, n_frames) for i in frames]
        written, skipped = [], []
        if frames:
            folder.mkdir(parents=True, exist_ok=True)
        for done, (i, path) in enumerate(zip(frames, paths), start=1):
            if path.exists() or not _write_png_exclusive(reader.get(i), path):
                skipped.append(path)
            else:
                written.append(path)
            yield done / len(frames)
    return ExtractedFrames(folder=folder, frames=frames, paths=paths, written=written, skipped=skipped)


def extract_frames(
    video_path: str | os.PathLike,
    indices: Iterable[int],
    labeled_data_folder: str | os.PathLike,
    progress: Progress | None = None,
) -> ExtractedFrames:
    """Write frames of a video as PNG images for labeling.

    The images go to ``labeled_data_folder / <video stem>`` (so pass a
    project's ``labeled-data`` folder), named by :func:`frame_image_name`.
    They are lossless 8-bit RGB PNGs, pixel-identical to
    ``VideoReader(video_path).get(i)``. Each image appears atomically (a
    temporary file renamed into place), and an image that already exists is
    never overwritten: it is skipped and listed in ``skipped``.

    ``indices`` may come in any order and repeat; each frame is written once.
    ``progress`` is called with the fraction of frames done (see
    :func:`iter_extract_frames`). Raises ValueError for a frame outside the
    video, VideoOpenError when the video cannot be opened and
    FrameDecodeError when a frame cannot be decoded (images written before
    stay).
    """
    return drive(iter_extract_frames(video_path, indices, labeled_data_folder), progress)
