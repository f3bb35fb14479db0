"""End-to-end video analysis speed, fast-mode accuracy and memory on the openfield data.

Side by side in one process, interleaved (A B R A B R ...), medians over
repetitions; every method decodes the video, runs its network, decodes
keypoints and writes DeepLabCut prediction files:

- **fast**: ``analyze_video(..., fast=True)``: crops around the animal at full resolution;
- **full**: ``analyze_video(..., fast=False)``: the whole frame through the network;
- **reference**: DeepLabCut's architecture reproduced — timm ``resnet50_gn`` at
  output stride 16, one stride-2 transposed-convolution head with location
  refinement, whole frames, batch 8, PyTorch eager (random weights: speed only),
  on the first ``--reference-frames`` frames.

Accuracy: the model's mean error on the project's labeled frames with whole
frames and with fast mode (each image located afresh by the low-resolution pass
and cropped).  Memory: peak RSS of ``posekit analyze`` in a fresh process on the
video looped to ``--memory-minutes`` (ffmpeg stream copy), for each length given.

    python benchmarks/train_openfield.py --split random --minutes 10 --keep model.pt
    python benchmarks/analyze_openfield.py --model model.pt --reps 3 --memory-minutes 1 10 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_posekit.core.codec import HeatmapCodec
from napari_posekit.core.data import load_image, load_project_labels
from napari_posekit.core.inference import Predictor, analyze_video, iter_analyze
from napari_posekit.core.options import ANALYSIS_BATCH_SIZE
from napari_posekit.core.predictions import write_predictions
from napari_posekit.core.video import VideoReader, read_metadata

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("POSEKIT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
PROJECT = SHARED / "dlc_openfield-Pranav-2018-10-30"
VIDEO = PROJECT / "videos" / "m3v1mp4.mp4"


class Reference(nn.Module):
    """ResNet-50 (GroupNorm) at output stride 16 with one stride-2 deconvolution: heatmaps + locref."""

    def __init__(self, n_keypoints: int):
        super().__init__()
        import timm

        self.backbone = timm.create_model(
            "resnet50_gn", features_only=True, output_stride=16, out_indices=(4,), pretrained=False
        )
        c = self.backbone.feature_info.channels()[-1]
        self.heatmap = nn.ConvTranspose2d(c, n_keypoints, 4, stride=2, padding=1)
        self.locref = nn.ConvTranspose2d(c, 2 * n_keypoints, 4, stride=2, padding=1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        f = self.backbone((x - self.mean) / self.std)[-1]
        return self.heatmap(f), self.locref(f)


def run_reference(model: Reference, video: Path, n_frames: int, bodyparts, out: Path) -> float:
    """Frames/s of the reference pipeline over the first ``n_frames`` frames (decode -> net -> keypoints -> h5)."""
    reader = VideoReader(video, readahead=0, cache_bytes=0, max_decoders=1)
    h, w = reader.shape[1:3]
    codec = HeatmapCodec((h, w), stride=8, refine_radius=0)
    k = len(bodyparts)
    xy = np.zeros((n_frames, k, 2))
    p = np.zeros((n_frames, k))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, n_frames, 8):
            idx = range(s, min(s + 8, n_frames))
            frames = np.stack([reader.get(i) for i in idx])
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
            heat, loc = model(x)
            hc, wc = -(-h // 8), -(-w // 8)
            a, b = codec.decode(heat[..., :hc, :wc], loc[..., :hc, :wc], from_logits=True)
            xy[s : s + len(idx)], p[s : s + len(idx)] = a.numpy(), b.numpy()
    write_predictions(out / "reference.h5", xy, p, bodyparts, "DLC_reference")
    elapsed = time.perf_counter() - t0
    reader.close()
    return n_frames / elapsed


def run_posekit(predictor: Predictor, video: Path, fast: bool, out: Path, batch_size: int) -> tuple[float, dict]:
    t0 = time.perf_counter()
    full = 0
    gen = analyze_video(predictor, video, output_dir=out, fast=fast, overwrite=True, batch_size=batch_size)
    n = 0
    try:
        while True:
            event = next(gen)
            full += event["chunk"].full_frames
            n = event["done"]
    except StopIteration:
        pass
    elapsed = time.perf_counter() - t0
    return n / elapsed, {"full_frame_passes": full}


def accuracy(predictor: Predictor) -> dict:
    images, _bodyparts, xy = load_project_labels(PROJECT)
    frames = np.stack([load_image(p) for p in images])
    labeled = ~np.isnan(xy).any(axis=-1)
    full_xy, _ = predictor.predict(frames)
    chunks = list(iter_analyze(predictor, frames, fast=True, block=1, track=False))
    fast_xy = np.concatenate([c.xy for c in chunks])
    fallbacks = sum(c.full_frames for c in chunks) - len(frames)  # one low-resolution locate per image
    err_full = np.linalg.norm(full_xy - xy, axis=-1)[labeled]
    err_fast = np.linalg.norm(fast_xy - xy, axis=-1)[labeled]
    return {
        "n_images": len(frames),
        "full_frame_error_px": float(err_full.mean()),
        "fast_error_px": float(err_fast.mean()),
        "difference_px": float(err_fast.mean() - err_full.mean()),
        "max_prediction_shift_px": float(np.nanmax(np.linalg.norm(full_xy - fast_xy, axis=-1))),
        "fast_whole_frame_fallbacks": int(fallbacks),
    }


def memory_run(model: Path, video: Path, minutes: float, workdir: Path) -> dict:
    meta = read_metadata(video)
    loops = max(1, round(minutes * 60 / meta.duration))
    looped = workdir / f"loop{loops}.mp4"
    import imageio_ffmpeg

    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-loglevel",
            "error",
            "-stream_loop",
            str(loops - 1),
            "-i",
            str(video),
            "-c",
            "copy",
            str(looped),
        ],
        check=True,
    )
    code = (
        "import json, time\n"
        "from napari_posekit.core.inference import analyze_video\n"
        # VmHWM: this process's peak resident memory (ru_maxrss can carry the parent's over exec)
        "def mem():\n"
        "    d = {l.split(':')[0]: int(l.split()[1]) for l in open('/proc/self/status') if l[:5] in ('VmRSS', 'VmHWM')}\n"
        "    return round(d['VmRSS'] / 1024), round(d['VmHWM'] / 1024)\n"
        "t = time.perf_counter(); n = 0; samples = []; every = None\n"
        f"gen = analyze_video({str(model)!r}, {str(looped)!r}, output_dir={str(workdir)!r}, overwrite=True)\n"
        "for e in gen:\n"
        "    n = e['done']; every = every or max(1, e['total'] // 10)\n"
        "    if n >= (len(samples) + 1) * every: samples.append((n, *mem()))\n"
        "rss, hwm = mem()\n"
        "print(json.dumps({'frames': n, 'seconds': time.perf_counter() - t, 'hwm': hwm, 'samples': samples}))\n"
    )
    out = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    )
    looped.unlink()
    n = out["frames"]
    # (frames done, resident MiB, peak-so-far MiB) at every tenth of the video; the peak includes the final write
    return {
        "minutes": round(n / meta.fps / 60, 1),
        "frames": n,
        "fps": round(n / out["seconds"], 1),
        "peak_rss_mib": out["hwm"],
        "rss_over_time_mib": out["samples"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="checkpoint (e.g. from train_openfield.py --keep)")
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--reps", type=int, default=3, help="speed repetitions (0: accuracy and memory only)")
    ap.add_argument("--batch-size", type=int, default=ANALYSIS_BATCH_SIZE)
    ap.add_argument("--reference-frames", type=int, default=48)
    ap.add_argument("--no-full", action="store_true", help="skip the whole-frame posekit mode")
    ap.add_argument("--memory-minutes", type=float, nargs="*", default=[])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(os.cpu_count() or 1)
    predictor = Predictor.load(args.model)
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "video": str(args.video),
        "n_frames": read_metadata(args.video).n_frames,
    }
    report["accuracy"] = accuracy(predictor)
    print(json.dumps(report["accuracy"], indent=1), flush=True)
    reference = Reference(len(predictor.bodyparts)).eval()
    workdir = Path(tempfile.mkdtemp(prefix="posekit-analyze-bench-"))
    times: dict[str, list[float]] = {"fast": [], "full": [], "reference": []}
    extra: dict[str, dict] = {}
    try:
        for rep in range(args.reps):
            fps, extra["fast"] = run_posekit(predictor, args.video, True, workdir, args.batch_size)
            times["fast"].append(fps)
            if not args.no_full:
                fps, extra["full"] = run_posekit(predictor, args.video, False, workdir, args.batch_size)
                times["full"].append(fps)
            times["reference"].append(
                run_reference(reference, args.video, args.reference_frames, predictor.bodyparts, workdir)
            )
            print(f"rep {rep}: " + ", ".join(f"{k} {v[-1]:.2f} frames/s" for k, v in times.items() if v), flush=True)
        if args.reps > 0:
            report["frames_per_s"] = {
                k: {"median": round(statistics.median(v), 2), "all": [round(x, 2) for x in v]}
                for k, v in times.items()
                if v
            }
            report["extra"] = extra
            ref = statistics.median(times["reference"])
            fast = statistics.median(times["fast"])
            report["ratios"] = {
                "fast/reference": round(fast / ref, 1),
                "fast/DLC cspnext_s (7.1 frames/s)": round(fast / 7.1, 1),
                "fast/DLC resnet50 (1.06 frames/s)": round(fast / 1.06, 1),
            }
        report["memory"] = []
        for minutes in args.memory_minutes:
            report["memory"].append(memory_run(args.model, args.video, minutes, workdir))
            print(json.dumps(report["memory"][-1]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["peak_rss_benchmark_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
