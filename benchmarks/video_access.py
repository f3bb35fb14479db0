#!/usr/bin/env python
"""Benchmark of video frame access: napari-posekit's reader against the alternatives.

Run by hand (it is not a test)::

    python benchmarks/video_access.py              # full run, 5 repetitions
    python benchmarks/video_access.py --quick      # smoke run, about a minute
    python benchmarks/video_access.py --videos a.mp4 b.avi --reps 7 --json out.json

Methods
-------
A  posekit      ``napari_posekit.core.video``: ``VideoReader(path, **options)`` wrapped by
                ``as_dask`` (one frame per chunk). Taken from ``src/`` of this checkout.
B  dlc-style    Reproduction of napari-deeplabcut's OpenCV video reader (``read_video``
                in ``napari_deeplabcut/core/io.py`` after its "Improve video reader speed"
                change, PR #215): a dask array concatenated from delayed chunks of 32
                frames; computing a chunk opens a new ``cv2.VideoCapture``, seeks with
                ``CAP_PROP_POS_FRAMES``, reads the chunk's frames, converts BGR->RGB and
                releases the capture. No cache: every frame request decodes its chunk.
                (The only change: captures get an explicit decoder thread count.)
C  raw decoders Sequential decode baselines over the same frames: imageio-ffmpeg
                ``read_frames`` (rgb24), PyAV ``decode`` + ``to_ndarray('rgb24')``
                (thread_type AUTO) and OpenCV ``cap.read()`` (BGR, no conversion).

Measurements, per video
-----------------------
1. Sequential throughput: ``np.asarray(arr[i])`` for ``--seq-frames`` consecutive frames
   from ``--seq-start`` (clamped to the video), as a viewer stepping through frames does.
   A and B use a fresh array every repetition (A: fresh reader). The raw decoders seek to
   the same first frame and decode the same frames. Reported: steady-state frames/s
   (frames 2..N over the time from the first to the last frame) and, separately, the
   time to the first frame (the seek). imageio-ffmpeg cannot seek frame-exactly on every
   file (see ``imageio_ffmpeg_frames``), so it decodes from the start of the file and its
   first-frame time includes that and the ffmpeg process start. Ratios use the steady
   state. Each decoder's first frame is compared with A's (or B's) frame ``start``.
   A diagnostic row A' reads through ``reader.get(i)`` without dask, and the cost of
   dask alone is measured as ``np.asarray(arr[i])`` on a frame A has cached.
2. Cold random-frame latency: the indices are
   ``np.random.default_rng(0).choice(n_frames, N, replace=False)`` (N = ``--random-frames``,
   50 by default, read in the order drawn); each is read once with ``np.asarray(arr[i])``
   on a freshly opened array, and each read is timed on its own. Per repetition the median
   and the 90th percentile (``np.percentile``, linear) are taken; the table shows the median
   over repetitions of each statistic.
3. Open time: path -> dask array ready, and path -> first frame (frame 0) in memory.
4. Peak RSS of this process (``resource.getrusage``) at the end.

The script also checks that A and B return the same frames: for a few indices it prints
the max and mean absolute difference of A[i] and B[i], and checks that A[i] is closer
(mean absolute difference) to B[i] than to B[i-1] and B[i+1], which catches off-by-one.

Protocol: small noisy machines, so all methods run side by side in one process,
interleaved (A, B, C, A, B, C, ...) for every repetition; tables report the median over
repetitions (min and max next to it) and ratios of medians. Thread counts are set
explicitly (``--threads``, default: the CPUs this process may use): OpenCV's own pool
(``cv2.setNumThreads``), OpenCV's FFmpeg decoder (``CAP_PROP_N_THREADS``), PyAV and
posekit decoder threads, ffmpeg's ``-threads`` and dask's thread pool.

Inputs by default: the openfield video of the DeepLabCut example project
(``../shared/data/dlc_openfield-Pranav-2018-10-30/videos/m3v1mp4.mp4`` from the repository
root) and a clip made from its first 1000 frames with x264's defaults (keyint 250,
B-frames on, yuv420p), encoded once by imageio-ffmpeg's ffmpeg and cached in
``benchmarks/.cache/``.

The issue's targets are checked for every video and summarised at the end: cold random
median at least 3x lower than B and p90 under 60 ms (set on the 1000-frame clip),
sequential throughput at least 50% of imageio-ffmpeg's decode, open time (path -> dask
array) under 200 ms (set on the openfield video).

A full run takes about 10 minutes on a 2-core machine, most of it in B's sequential pass
(every frame costs B a capture, a seek and the decode of a 32-frame chunk); ``--quick``
takes about a minute.
"""

from __future__ import annotations

import argparse
import ast
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import dask
import dask.array as da
import imageio_ffmpeg
import numpy as np

try:
    import av
except ImportError:  # PyAV is optional for B and C
    av = None

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
OPENFIELD = REPO_ROOT / ".." / "shared" / "data" / "dlc_openfield-Pranav-2018-10-30" / "videos" / "m3v1mp4.mp4"
CLIP_FRAMES = 1000
DLC_CHUNK = 32

TARGET_RANDOM_SPEEDUP = 3.0  # B median / A median
TARGET_P90_MS = 60.0
TARGET_SEQ_FRACTION = 0.5  # of imageio-ffmpeg's sequential decode
TARGET_OPEN_MS = 200.0

now = time.perf_counter


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def total_memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def ffmpeg_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30, check=False).stdout
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe_machine(threads: int, posekit) -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = []
    info = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": total_memory_gib(),
        "load_average": load,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "dask": dask.__version__,
        "opencv": cv2.__version__,
        "pyav": getattr(av, "__version__", "not installed"),
        "pyav_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])) if av else None,
        "imageio_ffmpeg": imageio_ffmpeg.__version__,
        "ffmpeg_binary": ffmpeg_version(imageio_ffmpeg.get_ffmpeg_exe()),
        "posekit": posekit.describe(),
        "threads": {
            "cv2.setNumThreads": cv2.getNumThreads(),
            "opencv_ffmpeg_decoder (CAP_PROP_N_THREADS)": threads,
            "pyav_decoder": threads,
            "posekit_decoder": posekit.options.get("threads", "default (1 per decoder)"),
            "ffmpeg -threads": threads,
            "dask num_workers": dask.config.get("num_workers", None),
            "dask scheduler": dask.config.get("scheduler", None),
        },
    }
    return info


def print_machine(info: dict) -> None:
    print("Machine")
    print(f"  CPU              {info['cpu_model']}")
    print(f"  cores            {info['logical_cpus']} logical, {info['usable_cpus']} usable by this process")
    if info["memory_gib"]:
        print(f"  memory           {info['memory_gib']:.1f} GiB")
    print(f"  load average     {' '.join(info['load_average'])}")
    print(f"  platform         {info['platform']}")
    print(f"  Python           {info['python']}")
    print(
        f"  numpy {info['numpy']}, dask {info['dask']}, opencv {info['opencv']}, "
        f"PyAV {info['pyav']} (libavcodec {info['pyav_libavcodec']}), imageio-ffmpeg {info['imageio_ffmpeg']}"
    )
    print(f"  ffmpeg binary    {info['ffmpeg_binary']}")
    print(f"  posekit          {info['posekit']}")
    print("  threads          " + ", ".join(f"{k}={v}" for k, v in info["threads"].items()))
    print()


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def probe(path: str) -> dict:
    """Frame count, rate, size and keyframes of a video, from packet headers (PyAV) or OpenCV."""
    if av is not None:
        with av.open(path) as container:
            stream = container.streams.video[0]
            packets = sorted((p.pts, p.is_keyframe) for p in container.demux(stream) if p.size and p.pts is not None)
            keyframes = [i for i, (_, key) in enumerate(packets) if key]
            rate = stream.average_rate or stream.guessed_rate
            ctx = stream.codec_context
            return {
                "n_frames": len(packets),
                "fps": float(rate) if rate else float("nan"),
                "width": ctx.width,
                "height": ctx.height,
                "codec": ctx.name,
                "pix_fmt": str(ctx.pix_fmt),
                "keyframes": keyframes,
            }
    cap = cv2.VideoCapture(path)
    try:
        return {
            "n_frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "fps": cap.get(cv2.CAP_PROP_FPS),
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "codec": "?",
            "pix_fmt": "?",
            "keyframes": [],
        }
    finally:
        cap.release()


def make_gop250_clip(source: Path) -> Path:
    """First 1000 frames of ``source`` re-encoded with x264 defaults (keyint 250, B-frames), cached."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    out = CACHE_DIR / f"{source.stem}_first{CLIP_FRAMES}_x264_yuv420p.mp4"
    if out.exists() and out.stat().st_mtime >= source.stat().st_mtime:
        return out
    tmp = out.with_name(out.stem + ".partial.mp4")
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(source),
        "-map",
        "0:v:0",
        "-frames:v",
        str(CLIP_FRAMES),
        "-an",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(tmp),
    ]
    print(f"encoding {out.name} (cached in {CACHE_DIR}) ...", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed to make {out}:\n{result.stderr}")
    os.replace(tmp, out)
    return out


def default_videos() -> list[Path]:
    source = OPENFIELD.resolve()
    if not source.exists():
        raise SystemExit(f"openfield video not found at {source}; pass --videos")
    return [source, make_gop250_clip(source)]


# ---------------------------------------------------------------------------
# A: napari-posekit
# ---------------------------------------------------------------------------


class Posekit:
    """Access to napari_posekit.core.video, or the reason it is unavailable."""

    def __init__(self, options: dict):
        self.options = options
        self.error = None
        self.module = None
        src = str(REPO_ROOT / "src")
        if src not in sys.path:
            sys.path.insert(0, src)
        try:
            from napari_posekit.core import video
        except Exception as err:  # noqa: BLE001 - any import failure makes A unavailable
            self.error = f"{type(err).__name__}: {err}"
        else:
            self.module = video

    @property
    def available(self) -> bool:
        return self.module is not None

    def describe(self) -> str:
        if not self.available:
            return f"unavailable ({self.error})"
        import napari_posekit

        return f"{getattr(napari_posekit, '__version__', '?')} from {self.module.__file__}, options {self.options}"

    def open(self, path: str):
        """Path -> (dask array, closer)."""
        reader = self.module.VideoReader(path, **self.options)
        return self.module.as_dask(reader), reader.close

    def n_frames(self, path: str) -> int:
        arr, close = self.open(path)
        close()
        return arr.shape[0]


# ---------------------------------------------------------------------------
# B: napari-deeplabcut style (OpenCV, 32-frame chunks, new capture per chunk)
# ---------------------------------------------------------------------------


def open_capture(path: str, threads: int) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not cap.isOpened():
        raise OSError(f"OpenCV cannot open {path}")
    return cap


def dlc_style_array(path: str, threads: int, chunk_size: int = DLC_CHUNK) -> da.Array:
    """A dask array like napari-deeplabcut's reader builds it."""
    cap = open_capture(path, threads)
    n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()

    def read_block(start: int, stop: int) -> np.ndarray:
        cap = open_capture(path, threads)
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            block = np.empty((stop - start, height, width, 3), np.uint8)
            for k in range(stop - start):
                ok, frame = cap.read()
                if not ok:
                    raise OSError(f"{path}: OpenCV could not read frame {start + k}")
                cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=block[k])
            return block
        finally:
            cap.release()

    blocks = [
        da.from_delayed(
            dask.delayed(read_block)(start, min(start + chunk_size, n_frames)),
            shape=(min(start + chunk_size, n_frames) - start, height, width, 3),
            dtype=np.uint8,
        )
        for start in range(0, n_frames, chunk_size)
    ]
    return da.concatenate(blocks, axis=0)


# ---------------------------------------------------------------------------
# Sequential passes: every method is a generator of frames start..start+count-1
# ---------------------------------------------------------------------------


def time_stream(frames, count: int) -> dict:
    """Take ``count`` frames from the generator ``frames`` and time them.

    ``first_ms``: from the first request to the first frame (includes the seek to the first
    frame; for imageio-ffmpeg the ffmpeg process start and the decode of every frame before
    it). ``fps``: steady-state throughput, frames 2..count over the time from the first to
    the last frame.
    """
    try:
        t0 = now()
        next(frames)
        t1 = now()
        for _ in range(count - 1):
            next(frames)
        t2 = now()
    except StopIteration:
        raise RuntimeError(f"the stream ended before {count} frames") from None
    finally:
        frames.close()
    return {"first_ms": (t1 - t0) * 1e3, "fps": (count - 1) / (t2 - t1) if count > 1 else float("nan")}


def dask_frames(arr: da.Array, start: int, count: int):
    """Frame by frame through a dask array, as a viewer stepping through a video does."""
    for i in range(start, start + count):
        yield np.asarray(arr[i])


def posekit_direct_frames(posekit, path: str, start: int, count: int):
    """Diagnostic: posekit's ``reader.get(i)`` without dask (fresh reader, opened here)."""
    reader = posekit.module.VideoReader(path, **posekit.options)

    def frames():
        try:
            for i in range(start, start + count):
                yield reader.get(i)
        finally:
            reader.close()

    return frames()


def imageio_ffmpeg_frames(path: str, start: int, count: int, fps: float, threads: int):
    # Output-side -ss: ffmpeg decodes from the start of the file and drops the frames before
    # ``start``. Its input-side seek is not usable here: on files that carry the H.264
    # parameter sets only in the first packet (the openfield video) it decodes garbage.
    output_params = ["-frames:v", str(count)]
    if start > 0:
        # Half a frame early, so that frame ``start`` is the first one kept.
        output_params = ["-ss", f"{(start - 0.5) / fps:.6f}", *output_params]
    gen = imageio_ffmpeg.read_frames(
        path, pix_fmt="rgb24", input_params=["-threads", str(threads)], output_params=output_params
    )
    try:
        meta = next(gen)
        w, h = meta["size"]
        for raw in gen:
            yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    finally:
        gen.close()


def pyav_frames(path: str, start: int, count: int, fps: float, threads: int):
    container = av.open(path)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    first = stream.start_time or 0
    target_time = (start - 0.5) / fps  # seconds after the first frame, half a frame early
    # Decode the first frame before seeking (as part of opening, untimed): some files carry
    # the H.264 parameter sets only in the first packet, and a decoder that never saw them
    # turns every later keyframe into garbage.
    next(container.decode(stream))

    def frames():
        try:
            if start > 0:
                container.seek(
                    first + int(target_time / stream.time_base), stream=stream, backward=True, any_frame=False
                )
            for frame in container.decode(stream):
                if frame.pts is not None and (frame.pts - first) * stream.time_base < target_time:
                    continue  # decoded on the way from the keyframe, not converted
                yield frame.to_ndarray(format="rgb24")
        finally:
            container.close()

    return frames()


def opencv_frames(path: str, start: int, count: int, threads: int):
    cap = open_capture(path, threads)

    def frames():
        try:
            if start > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, start)
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return frames()


# ---------------------------------------------------------------------------
# Random access and open time through a dask array (A and B)
# ---------------------------------------------------------------------------


def dask_random_latencies_ms(arr: da.Array, indices: np.ndarray) -> np.ndarray:
    latencies = np.empty(len(indices))
    for k, i in enumerate(indices):
        t0 = now()
        np.asarray(arr[int(i)])
        latencies[k] = (now() - t0) * 1e3
    return latencies


def open_times_ms(open_array) -> tuple[float, float]:
    """(path -> dask array, path -> frame 0 in memory) in ms, for ``open_array() -> (arr, close)``."""
    t0 = now()
    arr, close = open_array()
    t1 = now()
    np.asarray(arr[0])
    t2 = now()
    close()
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3


def dask_access_overhead_ms(arr: da.Array, i: int, calls: int = 30) -> float:
    """Median time of ``np.asarray(arr[i])`` for a frame the reader has cached (dask's own cost)."""
    np.asarray(arr[i])
    times = []
    for _ in range(calls):
        t0 = now()
        np.asarray(arr[i])
        times.append((now() - t0) * 1e3)
    return float(np.median(times))


# ---------------------------------------------------------------------------
# Agreement of A and B
# ---------------------------------------------------------------------------


def compare_frames(a_arr: da.Array, b_arr: da.Array, indices: list[int]) -> list[dict]:
    n = b_arr.shape[0]
    rows = []
    for i in indices:
        a = np.asarray(a_arr[i]).astype(np.int16)
        lo, hi = max(i - 1, 0), min(i + 2, n)
        b = np.asarray(b_arr[lo:hi]).astype(np.int16)
        same = b[i - lo]
        row = {
            "index": i,
            "shape_ok": a.shape == same.shape,
            "max_abs_diff": int(np.abs(a - same).max()),
            "mean_abs_diff": float(np.abs(a - same).mean()),
            "mean_abs_diff_prev": float(np.abs(a - b[i - 1 - lo]).mean()) if i > 0 else None,
            "mean_abs_diff_next": float(np.abs(a - b[i + 1 - lo]).mean()) if i + 1 < n else None,
        }
        neighbours = [d for d in (row["mean_abs_diff_prev"], row["mean_abs_diff_next"]) if d is not None]
        if not neighbours:
            row["verdict"] = "no neighbour"
        elif min(neighbours) == 0 and row["mean_abs_diff"] == 0:
            row["verdict"] = "ambiguous (duplicate frames)"
        elif row["mean_abs_diff"] < min(neighbours):
            row["verdict"] = "ok"
        else:
            row["verdict"] = "MISMATCH (closer to a neighbour)"
        rows.append(row)
    return rows


def stream_alignment(streams: dict, ref_arr: da.Array, start: int) -> dict:
    """Mean absolute difference of each stream's first frame to ref[start-1], ref[start], ref[start+1]."""
    n = ref_arr.shape[0]
    lo, hi = max(start - 1, 0), min(start + 2, n)
    ref = np.asarray(ref_arr[lo:hi]).astype(np.int16)
    out = {}
    for key, make_stream in streams.items():
        frames = make_stream()
        try:
            frame = next(frames)
        finally:
            frames.close()
        if key == "opencv":
            frame = frame[..., ::-1]  # BGR
        diffs = {j: float(np.abs(frame.astype(np.int16) - ref[j - lo]).mean()) for j in range(lo, hi)}
        out[key] = {"mean_abs_diff": diffs, "ok": min(diffs, key=diffs.get) == start}
    return out


# ---------------------------------------------------------------------------
# Statistics and printing
# ---------------------------------------------------------------------------


def summary(values) -> dict:
    values = [float(v) for v in values]
    if not values:
        return {"median": None, "min": None, "max": None, "values": []}
    return {"median": float(np.median(values)), "min": min(values), "max": max(values), "values": values}


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def fmt(value, spec=".1f", none="n/a"):
    return none if value is None else format(value, spec)


METHOD_LABELS = {
    "posekit": "A  posekit (dask, 1 frame/chunk)",
    "posekit_direct": "A' posekit reader.get, no dask (diag.)",
    "dlc_style": "B  dlc-style (dask, 32-frame chunks)",
    "imageio_ffmpeg": "C  imageio-ffmpeg read_frames rgb24",
    "pyav": "C  PyAV decode + to_ndarray rgb24",
    "opencv": "C  OpenCV cap.read (BGR)",
}


def print_video_report(res: dict) -> None:
    v = res["video"]
    print("=" * 100)
    print(
        f"{Path(v['path']).name}: {v['codec']} {v['pix_fmt']} {v['width']}x{v['height']}, "
        f"{v['n_frames']} frames, {v['fps']:.2f} fps, {len(v['keyframes'])} keyframes, "
        f"{res['reps']} repetitions, {res['threads']} threads"
    )
    print(f"  {v['path']}")
    print(f"  keyframes at {v['keyframes'][:12]}{' ...' if len(v['keyframes']) > 12 else ''}")
    print("=" * 100)

    seq = res["sequential"]
    print(
        f"1. Sequential: frames {seq['start']}..{seq['start'] + seq['count'] - 1} ({seq['count']} frames). "
        "Steady-state frames/s (frames 2..N),"
    )
    print("   median over repetitions (min - max); 'first ms' = request -> first frame, incl. the seek")
    print(f"   {'method':42s} {'median':>8s} {'min':>8s} {'max':>8s}  {'vs imageio':>10s}  {'first ms':>8s}")
    raw = seq["fps"].get("imageio_ffmpeg", {}).get("median")
    for key, label in METHOD_LABELS.items():
        s = seq["fps"].get(key)
        if s is None or s["median"] is None:
            print(f"   {label:42s} {'n/a':>8s}")
            continue
        first = seq["first_ms"][key]["median"]
        print(
            f"   {label:42s} {s['median']:8.1f} {s['min']:8.1f} {s['max']:8.1f}  "
            f"{fmt(ratio(s['median'], raw), '.3f'):>10s}  {first:8.1f}"
        )
    r = seq["ratios"]
    print(
        f"   A/raw(imageio-ffmpeg) = {fmt(r['A/imageio_ffmpeg'], '.2f')}   B/raw(imageio-ffmpeg) = "
        f"{fmt(r['B/imageio_ffmpeg'], '.3f')}   A/B = {fmt(r['A/B'], '.1f')}   "
        f"A/PyAV = {fmt(r['A/pyav'], '.2f')}   A/OpenCV = {fmt(r['A/opencv'], '.2f')}"
    )
    if seq.get("dask_overhead_ms"):
        cost = seq["dask_overhead_ms"]["median"]
        print(
            f"   dask cost of one np.asarray(arr[i]) on a frame A has cached: {cost:.2f} ms "
            f"(caps A at ~{1e3 / cost:.0f} frames/s)"
        )
    print()

    rnd = res["random"]
    print(
        f"2. Cold random access: {rnd['count']} frames, np.random.default_rng(0).choice({v['n_frames']}, "
        f"{rnd['count']}, replace=False) in drawn order,"
    )
    print("   fresh array per repetition; ms per frame, median over repetitions of each statistic")
    print(f"   {'method':42s} {'median':>8s} {'p90':>8s} {'max':>8s} {'mean':>8s}")
    for key in ("posekit", "dlc_style"):
        s = rnd["stats"].get(key)
        if s is None:
            print(f"   {METHOD_LABELS[key]:42s} {'n/a':>8s}")
            continue
        print(
            f"   {METHOD_LABELS[key]:42s} {s['median']['median']:8.1f} {s['p90']['median']:8.1f} "
            f"{s['max']['median']:8.1f} {s['mean']['median']:8.1f}"
        )
    print(
        f"   B median / A median = {fmt(rnd['B_median/A_median'], '.1f')}   "
        f"B p90 / A p90 = {fmt(rnd['B_p90/A_p90'], '.1f')}"
    )
    print()

    op = res["open"]
    print("3. Open time, ms, median over repetitions (min - max)")
    for key in ("posekit", "dlc_style"):
        s = op.get(key)
        if s is None:
            print(f"   {METHOD_LABELS[key]:42s} n/a")
            continue
        a, f = s["to_array_ms"], s["to_first_frame_ms"]
        print(
            f"   {METHOD_LABELS[key]:42s} path->dask array {a['median']:6.1f} ({a['min']:.1f} - {a['max']:.1f})"
            f"   path->frame 0 {f['median']:6.1f} ({f['min']:.1f} - {f['max']:.1f})"
        )
    print()

    agree = res.get("agreement")
    print("Frame agreement, A[i] vs B[i] (and B[i-1], B[i+1]); absolute differences in grey levels")
    if not agree:
        print("   n/a (A unavailable)")
    else:
        print(
            f"   {'index':>6s} {'max|A-B[i]|':>12s} {'mean|A-B[i]|':>13s} {'mean|A-B[i-1]|':>15s} "
            f"{'mean|A-B[i+1]|':>15s}  verdict"
        )
        for row in agree:
            print(
                f"   {row['index']:6d} {row['max_abs_diff']:12d} {row['mean_abs_diff']:13.3f} "
                f"{fmt(row['mean_abs_diff_prev'], '.3f', '-'):>15s} {fmt(row['mean_abs_diff_next'], '.3f', '-'):>15s}"
                f"  {row['verdict']}"
            )
    print("   frame counts: " + ", ".join(f"{k}={v}" for k, v in res["n_frames_by_method"].items()))
    al = res["stream_alignment"]
    start = res["sequential"]["start"]
    print(
        f"   first frame of each sequential stream vs {al['reference']}[{start - 1}], "
        f"{al['reference']}[{start}], {al['reference']}[{start + 1}] (mean abs diff):"
    )
    for key, row in al["streams"].items():
        diffs = "  ".join(f"{d:8.3f}" for d in row["mean_abs_diff"].values())
        print(f"     {METHOD_LABELS[key]:42s} {diffs}  {'ok' if row['ok'] else 'MISMATCH'}")
    print()


def target(name: str, value, text: str, unit: str, passed) -> dict:
    shown = "n/a" if value is None else f"{text}{unit}"
    return {"target": name, "value": value, "text": shown, "pass": None if value is None else bool(passed)}


def check_targets(res: dict) -> list[dict]:
    rnd, seq, op = res["random"], res["sequential"], res["open"]
    a_rand = rnd["stats"].get("posekit")
    a_open = op.get("posekit")
    speedup = rnd["B_median/A_median"]
    p90 = a_rand["p90"]["median"] if a_rand else None
    frac = seq["ratios"]["A/imageio_ffmpeg"]
    frac_direct = seq["ratios"].get("A'/imageio_ffmpeg")
    open_ms = a_open["to_array_ms"]["median"] if a_open else None
    return [
        target(
            f"cold random median >= {TARGET_RANDOM_SPEEDUP:g}x lower than B",
            speedup,
            f"B/A = {fmt(speedup)}",
            "x",
            speedup is not None and speedup >= TARGET_RANDOM_SPEEDUP,
        ),
        target(
            f"cold random p90 < {TARGET_P90_MS:g} ms",
            p90,
            f"p90 = {fmt(p90)}",
            " ms",
            p90 is not None and p90 < TARGET_P90_MS,
        ),
        target(
            f"sequential >= {TARGET_SEQ_FRACTION:.0%} of imageio-ffmpeg decode",
            frac,
            f"A/raw = {fmt(None if frac is None else 100 * frac)}",
            "%",
            frac is not None and frac >= TARGET_SEQ_FRACTION,
        ),
        target(
            "(diag.) same without dask (A' reader.get)",
            frac_direct,
            f"A'/raw = {fmt(None if frac_direct is None else 100 * frac_direct)}",
            "%",
            frac_direct is not None and frac_direct >= TARGET_SEQ_FRACTION,
        ),
        target(
            f"open (path -> dask array) < {TARGET_OPEN_MS:g} ms",
            open_ms,
            f"open = {fmt(open_ms)}",
            " ms",
            open_ms is not None and open_ms < TARGET_OPEN_MS,
        ),
    ]


def print_summary(results: list[dict], rss_mib: float, children_rss_mib: float) -> None:
    print("=" * 100)
    print("Summary: issue targets, shown for every video. The random-access targets are set on the 1000-frame")
    print("x264 clip (GOP 250), the open-time target on the openfield video, the sequential one on both.")
    print("=" * 100)
    for res in results:
        name = Path(res["video"]["path"]).name
        print(f"{name}:")
        for t in res["targets"]:
            verdict = "n/a " if t["pass"] is None else ("PASS" if t["pass"] else "MISS")
            print(f"   [{verdict}] {t['target']:52s} {t['text']}")
    print()
    print(
        f"Peak RSS of this process: {rss_mib:.0f} MiB (largest child process, i.e. ffmpeg: {children_rss_mib:.0f} MiB)"
    )


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------


def warm_up(path: str, posekit: Posekit, info: dict, threads: int) -> None:
    """Load libraries and the file into the page cache; nothing here is timed."""
    if posekit.available:
        arr, close = posekit.open(path)
        np.asarray(arr[0])
        np.asarray(arr[info["n_frames"] // 2])
        close()
    np.asarray(dlc_style_array(path, threads)[0])
    time_stream(imageio_ffmpeg_frames(path, 0, 5, info["fps"], threads), 5)
    if av is not None:
        time_stream(pyav_frames(path, 0, 5, info["fps"], threads), 5)
    time_stream(opencv_frames(path, 0, 5, threads), 5)


def bench_video(path: str, args, posekit: Posekit) -> dict:
    info = probe(path)
    n = info["n_frames"]
    threads = args.threads
    count = min(args.seq_frames, n)
    start = max(0, min(args.seq_start, n - count))
    n_random = min(args.random_frames, n)
    indices = np.random.default_rng(0).choice(n, n_random, replace=False)
    label = Path(path).name

    n_by_method = {
        "probe (PyAV packets)": n,
        "B (OpenCV CAP_PROP_FRAME_COUNT)": dlc_style_array(path, threads).shape[0],
    }
    if posekit.available:
        n_by_method["A (posekit)"] = posekit.n_frames(path)
    if len(set(n_by_method.values())) > 1:
        print(f"warning: methods disagree on the frame count of {label}: {n_by_method}", file=sys.stderr)

    warm_up(path, posekit, info, threads)

    # Methods A and B: path -> (dask array, close)
    openers = {}
    if posekit.available:
        openers["posekit"] = lambda: posekit.open(path)
    openers["dlc_style"] = lambda: (dlc_style_array(path, threads), lambda: None)

    # Other sequential passes: () -> generator of the frames start..start+count-1
    streams = {}
    if posekit.available:
        streams["posekit_direct"] = lambda: posekit_direct_frames(posekit, path, start, count)
    streams["imageio_ffmpeg"] = lambda: imageio_ffmpeg_frames(path, start, count, info["fps"], threads)
    if av is not None:
        streams["pyav"] = lambda: pyav_frames(path, start, count, info["fps"], threads)
    streams["opencv"] = lambda: opencv_frames(path, start, count, threads)

    open_ms = {k: ([], []) for k in openers}
    seq = {k: [] for k in [*openers, *streams]}
    latencies = {k: [] for k in openers}
    overhead_ms = []

    for rep in range(args.reps):
        t_rep = now()
        # 3. open time
        for key, opener in openers.items():
            gc.collect()
            to_array, to_frame = open_times_ms(opener)
            open_ms[key][0].append(to_array)
            open_ms[key][1].append(to_frame)
        # 1. sequential: through the dask arrays (fresh array each repetition), then the others
        for key, opener in openers.items():
            arr, close = opener()
            gc.collect()
            try:
                seq[key].append(time_stream(dask_frames(arr, start, count), count))
                if key == "posekit":
                    overhead_ms.append(dask_access_overhead_ms(arr, start + count - 1))
            finally:
                close()
        for key, make_stream in streams.items():
            gc.collect()
            seq[key].append(time_stream(make_stream(), count))
        # 2. cold random access (fresh array each repetition)
        for key, opener in openers.items():
            arr, close = opener()
            gc.collect()
            try:
                latencies[key].append(dask_random_latencies_ms(arr, indices))
            finally:
                close()
        print(f"[{label}] repetition {rep + 1}/{args.reps} done in {now() - t_rep:.1f} s", file=sys.stderr)

    # Agreement of A and B, after the timed part so that it cannot warm anything up.
    agreement = None
    if posekit.available:
        check = sorted({0, 1, DLC_CHUNK - 1, DLC_CHUNK, start, n // 2, int(indices[0]), n - 1} & set(range(n)))
        a_arr, close = posekit.open(path)
        try:
            agreement = compare_frames(a_arr, dlc_style_array(path, threads), check)
        finally:
            close()

    if posekit.available:
        ref_name, (ref_arr, ref_close) = "A", posekit.open(path)
    else:
        ref_name, (ref_arr, ref_close) = "B", (dlc_style_array(path, threads), lambda: None)
    try:
        alignment = {"reference": ref_name, "streams": stream_alignment(streams, ref_arr, start)}
    finally:
        ref_close()

    seq_fps = {k: summary(r["fps"] for r in v) for k, v in seq.items()}
    seq_first = {k: summary(r["first_ms"] for r in v) for k, v in seq.items()}

    def med(key):
        return seq_fps[key]["median"] if key in seq_fps else None

    rand_stats = {}
    for key, reps in latencies.items():
        rand_stats[key] = {
            "median": summary(np.median(r) for r in reps),
            "p90": summary(np.percentile(r, 90) for r in reps),
            "max": summary(r.max() for r in reps),
            "mean": summary(r.mean() for r in reps),
            "latencies_ms": [r.tolist() for r in reps],
        }

    def rand_med(key, stat):
        return rand_stats[key][stat]["median"] if key in rand_stats else None

    res = {
        "video": {"path": str(path), **info},
        "reps": args.reps,
        "threads": threads,
        "n_frames_by_method": n_by_method,
        "sequential": {
            "start": start,
            "count": count,
            "fps": seq_fps,
            "first_ms": seq_first,
            "dask_overhead_ms": summary(overhead_ms) if overhead_ms else None,
            "ratios": {
                "A/imageio_ffmpeg": ratio(med("posekit"), med("imageio_ffmpeg")),
                "A'/imageio_ffmpeg": ratio(med("posekit_direct"), med("imageio_ffmpeg")),
                "B/imageio_ffmpeg": ratio(med("dlc_style"), med("imageio_ffmpeg")),
                "A/B": ratio(med("posekit"), med("dlc_style")),
                "A/pyav": ratio(med("posekit"), med("pyav")),
                "A/opencv": ratio(med("posekit"), med("opencv")),
            },
        },
        "random": {
            "count": n_random,
            "indices": indices.tolist(),
            "rng": f"np.random.default_rng(0).choice({n}, {n_random}, replace=False)",
            "stats": rand_stats,
            "B_median/A_median": ratio(rand_med("dlc_style", "median"), rand_med("posekit", "median")),
            "B_p90/A_p90": ratio(rand_med("dlc_style", "p90"), rand_med("posekit", "p90")),
        },
        "open": {k: {"to_array_ms": summary(v[0]), "to_first_frame_ms": summary(v[1])} for k, v in open_ms.items()},
        "agreement": agreement,
        "stream_alignment": alignment,
    }
    res["targets"] = check_targets(res)
    return res


def parse_reader_options(items: list[str], threads: int) -> dict:
    # posekit keeps its own defaults (one thread per decoder, a pool of decoders and
    # read-ahead): its thread policy is part of what is measured.
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--reader-opt expects KEY=VALUE, got {item!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return options


def main(argv=None) -> int:
    try:
        default_threads = len(os.sched_getaffinity(0))
    except AttributeError:
        default_threads = os.cpu_count() or 1
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--videos",
        nargs="+",
        metavar="PATH",
        help="videos to measure (default: the openfield video and a 1000-frame x264 clip of it)",
    )
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 repetitions, 60 sequential and 10 random frames"
    )
    parser.add_argument("--seq-start", type=int, default=400, help="first frame of the sequential pass (default 400)")
    parser.add_argument("--seq-frames", type=int, default=300, help="frames in the sequential pass (default 300)")
    parser.add_argument("--random-frames", type=int, default=50, help="frames in the cold random pass (default 50)")
    parser.add_argument(
        "--threads",
        type=int,
        default=default_threads,
        help=f"decoder / library threads (default: usable CPUs, here {default_threads})",
    )
    parser.add_argument(
        "--reader-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra option for posekit's VideoReader (repeatable), e.g. readahead=0",
    )
    parser.add_argument("--json", metavar="PATH", help="write all results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps = min(args.reps, 2)
        args.seq_frames = min(args.seq_frames, 60)
        args.random_frames = min(args.random_frames, 10)
    if args.reps < 1 or args.threads < 1:
        parser.error("--reps and --threads must be at least 1")

    sys.stdout.reconfigure(line_buffering=True)  # keep tables and progress lines in order
    cv2.setNumThreads(args.threads)
    dask.config.set(scheduler="threads", num_workers=args.threads)
    posekit = Posekit(parse_reader_options(args.reader_opt, args.threads))
    machine = describe_machine(args.threads, posekit)
    print_machine(machine)
    if not posekit.available:
        print(f"NOTE: method A is skipped: {posekit.error}\n")

    videos = [Path(p) for p in args.videos] if args.videos else default_videos()
    results = []
    for video in videos:
        res = bench_video(str(video), args, posekit)
        print_video_report(res)
        results.append(res)

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    children_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print_summary(results, rss_mib, children_mib)

    if args.json:
        payload = {
            "machine": machine,
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "posekit_options": posekit.options,
            "videos": results,
            "peak_rss_mib": rss_mib,
            "peak_child_rss_mib": children_mib,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, default=float))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
