"""Every analysis backend side by side on the openfield video: speed, start-up, latency and accuracy.

For a trained model (``--project``: a DeepLabCut project with a posekit model
in it, or ``--model``: a checkpoint or an exported ``.onnx`` file), each
backend of :data:`napari_posekit.core.backends.BACKENDS` that loads here is
measured in one process, rounds interleaved (A B C ... A B C ...), medians
over ``--reps``:

- **throughput**: frames/s of ``iter_analyze`` end to end (video decoding
  included) in fast mode over the whole video and whole-frame mode over the
  first ``--full-frames`` frames; the longest wait between two consecutive
  blocks (the first block excluded) and the number of whole-frame passes in
  fast mode;
- **latency**: one frame at a time (batch 1), frames already decoded, p50 and
  p99 over ``--latency-frames`` frames, for a 256x256 crop and a whole frame;
- **accuracy**: mean error on the project's labeled frames, whole frame and
  fast mode (each image located afresh), and the mean shift of every backend's
  whole-frame keypoints from torch float32's;
- **start-up**: a fresh process per backend (and ``auto``) once the cache is
  filled: import time and time from ``Predictor.load`` to the first analysed
  block; and ``posekit analyze --backend auto`` on the whole video, whose wall
  time (start-up included) is compared with the steady rate;
- the reference resnet50_gn pipeline of ``analyze_openfield.py`` on the first
  ``--reference-frames`` frames, in the same rounds.

The instruction-set check measures OpenVINO and onnxruntime on a batch of
crops in two fresh processes, one with ``ONEDNN_MAX_CPU_ISA=AVX2`` (and
``ATEN_CPU_CAPABILITY=avx2``) and one without, and reads OpenVINO's
``OPTIMIZATION_CAPABILITIES`` in both.

    python benchmarks/analyze_backends.py --project /path/to/project --json bench.json
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/analyze_backends.py --project ... --json avx2.json

The ranking cache (``POSEKIT_CACHE_DIR``) defaults to a folder of its own
(``--cache-dir``); the first run fills it, later ones reuse it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CAP_VARS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
DLC_CSPNEXT_S_FPS = 7.1  # DeepLabCut 3 CSPNeXt-s on the same video and machine class (benchmarks/README.md)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _load(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


# --------------------------------------------------------------------------- child processes
STARTUP_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
from napari_posekit.core.predictor import Predictor
from napari_posekit.core.inference import iter_analyze, probe_frames
t1 = time.perf_counter()
source, video, backend, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
predictor = Predictor.load(source, backend=backend, threads=threads, probe_frames=lambda: probe_frames(video))
t2 = time.perf_counter()
chunks = iter_analyze(predictor, video, fast=True)
next(chunks)
t3 = time.perf_counter()
chunks.close()
print(json.dumps({"backend": predictor.backend, "imports_s": t1 - t0, "load_s": t2 - t1,
                  "load_to_first_block_s": t3 - t1, "torch_imported": "torch" in sys.modules}))
"""

ISA_CODE = r"""
import json, os, statistics, sys, time
import numpy as np
name, path, side, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from napari_posekit.core.engines import OnnxRuntimeEngine
runtime, precision = name.split("-", 1)
out = {"backend": name}
if runtime == "openvino":
    import openvino as ov
    out["openvino_capabilities"] = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    # the same precision hint with and without the cap (int8 graphs: float32 for the float layers)
    hint = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}[precision]
    compiled = ov.Core().compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint})
    out["inference_precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT")).split("'")[1]
    request = compiled.create_infer_request()

    class engine:
        run = staticmethod(lambda images: request.infer({"images": images}))
else:
    engine = OnnxRuntimeEngine(path, precision=precision, threads=threads)
batch = np.random.default_rng(0).integers(0, 255, (8, side, side, 3), dtype=np.uint8)
engine.run(batch)
times = []
for _ in range(5):
    t = time.perf_counter(); engine.run(batch); times.append(time.perf_counter() - t)
out["ms_per_crop"] = round(1000 * statistics.median(times) / len(batch), 2)
print(json.dumps(out))
"""


def _child(code: str, args: list[str], env: dict[str, str], timeout: float = 600) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], check=False, capture_output=True, text=True, env=env, timeout=timeout
    )
    wall = time.perf_counter() - start
    if proc.returncode < 0:  # killed by a signal: a crash inside a runtime
        return {"error": f"crashed ({signal.Signals(-proc.returncode).name})", "process_s": round(wall, 2)}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "process_s": round(wall, 2)}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = round(wall, 2)
    return result


# --------------------------------------------------------------------------- measurements
def throughput(predictor, video: Path, fast: bool, stop: int | None, batch_size: int) -> dict:
    """Frames/s of ``iter_analyze`` over frames ``0 .. stop - 1``, the longest wait between blocks, passes."""
    from napari_posekit.core.inference import iter_analyze

    t0 = time.perf_counter()
    last = t0
    gap, gap_at, passes, n, first = 0.0, None, 0, 0, True
    for chunk in iter_analyze(predictor, video, fast=fast, stop=stop, batch_size=batch_size):
        now = time.perf_counter()
        if not first and now - last > gap:
            gap, gap_at = now - last, chunk.start
        first = False
        last = now
        passes += chunk.full_frames
        n = chunk.stop
    elapsed = time.perf_counter() - t0
    return {"fps": n / elapsed, "frames": n, "longest_gap_s": gap, "gap_at_frame": gap_at, "whole_passes": passes}


def latency(predictor, frames: np.ndarray, crop: int) -> dict:
    """Batch-1 milliseconds, p50 and p99: a ``crop`` x ``crop`` window and the whole frame."""
    h, w = frames.shape[1:3]
    origin = (
        (w - crop) // 2 // predictor.pad_to * predictor.pad_to,
        (h - crop) // 2 // predictor.pad_to * predictor.pad_to,
    )
    out = {}
    for label, call in (
        ("crop", lambda f: predictor.predict_crops(f, origin, (crop, crop), batch_size=1)),
        ("frame", lambda f: predictor.predict(f, batch_size=1)),
    ):
        call(frames[:1])  # warm-up (a frozen graph or compiled shape per size)
        call(frames[1:2])
        times = []
        for i in range(len(frames)):
            t = time.perf_counter()
            call(frames[i : i + 1])
            times.append(1000 * (time.perf_counter() - t))
        out[f"{label}_p50_ms"] = round(float(np.percentile(times, 50)), 2)
        out[f"{label}_p99_ms"] = round(float(np.percentile(times, 99)), 2)
    return out


def labeled_frames(project: Path):
    from napari_posekit.core.data import load_image, load_project_labels

    images, _bodyparts, xy = load_project_labels(project)
    return np.stack([load_image(p) for p in images]), xy


def accuracy(predictor, frames: np.ndarray, truth: np.ndarray) -> tuple[dict, np.ndarray]:
    """Mean error whole frame and fast mode (located afresh per image, as analyze_openfield.accuracy)."""
    from napari_posekit.core.inference import iter_analyze

    labeled = ~np.isnan(truth).any(axis=-1)
    full_xy, _ = predictor.predict(frames)
    chunks = list(iter_analyze(predictor, frames, fast=True, block=1, track=False))
    fast_xy = np.concatenate([c.xy for c in chunks])
    return {
        "n_images": len(frames),
        "whole_error_px": float(np.linalg.norm(full_xy - truth, axis=-1)[labeled].mean()),
        "fast_error_px": float(np.linalg.norm(fast_xy - truth, axis=-1)[labeled].mean()),
        "fast_fallbacks": int(sum(c.full_frames for c in chunks) - len(frames)),
    }, full_xy


def cli_run(source: Path, video: Path, env: dict[str, str], workdir: Path, n_frames: int) -> dict:
    """``posekit analyze SOURCE VIDEO --backend auto --overwrite`` in a fresh process: wall time."""
    exe = Path(sys.executable).with_name("posekit")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "napari_posekit.cli"]
    out = workdir / "cli"
    out.mkdir(exist_ok=True)
    cmd += ["analyze", str(source), str(video), "--local", "--backend", "auto", "--overwrite", "--output-dir", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    chosen = next((ln.split(":", 1)[1].strip() for ln in proc.stderr.splitlines() if ln.startswith("backend:")), None)
    result = {"returncode": proc.returncode, "wall_s": round(wall, 2), "backend": chosen, "frames": n_frames}
    if proc.returncode != 0:
        result["error"] = " | ".join(proc.stderr.strip().splitlines()[-3:])
    else:
        result["fps_including_startup"] = round(n_frames / wall, 2)
    return result


ISA_ENGINES = ("openvino-float32", "openvino-bfloat16", "openvino-int8", "onnxruntime-float32", "onnxruntime-int8")


def isa_check(graphs: dict[str, Path], side: int, threads: int, rounds: int = 2) -> dict:
    """Each runtime on a batch of crops in a fresh process, with and without the AVX2 cap.

    ``graphs`` maps ``"float32"`` and ``"int8"`` to ONNX files.  A process
    per engine, so that a runtime crashing under the cap is reported, not fatal.
    """
    base = {k: v for k, v in os.environ.items() if k not in CAP_VARS}
    envs = {"native": base, "avx2_cap": {**base, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
    out: dict[str, dict] = {label: {} for label in envs}
    for name in ISA_ENGINES:
        graph = graphs.get("int8" if name.endswith("int8") else "float32")
        if graph is None:
            continue
        for _ in range(rounds):  # native and capped alternate; the fastest process of each counts (contention)
            for label, env in envs.items():
                r = _child(ISA_CODE, [name, str(graph), str(side), str(threads)], env, timeout=300)
                best = out[label].get(name)
                if best is None or "error" in best or ("error" not in r and r["ms_per_crop"] < best["ms_per_crop"]):
                    out[label][name] = r
    return out


def isa_notes(isa: dict) -> list[str]:
    """What the with/without-cap measurements say about each runtime."""
    notes = []
    native, capped = isa.get("native", {}), isa.get("avx2_cap", {})
    for name in ISA_ENGINES:
        a, b = native.get(name), capped.get(name)
        if not a or not b:
            continue
        if "error" in b and "error" not in a:
            notes.append(f"{name} fails under the AVX2 cap ({b['error']}) but runs without it")
        elif "error" not in a and "error" not in b:
            ratio = b["ms_per_crop"] / a["ms_per_crop"]
            verdict = "changes speed under the cap" if abs(ratio - 1) > 0.25 else "runs at the same speed with the cap"
            notes.append(f"{name} {verdict} (capped / native time {ratio:.2f})")
    return notes


# --------------------------------------------------------------------------- report
def _f(x, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(report: dict) -> str:
    lines = []
    add = lines.append
    add(f"CPU: {report['cpu']}, {report['threads']} threads; {report['versions']}")
    if report["isa_cap"]:
        add(f"Instruction set capped: {report['isa_cap']}")
    add(f"load average at start {report['loadavg_start']}, at end {report.get('loadavg_end')}")
    add("")
    ref = report.get("reference_fps")
    add(
        "| backend | fast frames/s | whole-frame frames/s | longest gap fast (s @ frame) "
        "| whole-frame passes in fast | fast / reference | fast / DLC CSPNeXt-s |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in report["throughput"].items():
        fast = r.get("fast_fps")
        add(
            f"| {name} | {_f(fast, 1)} | {_f(r.get('whole_fps'), 1)} "
            f"| {_f(r.get('fast_longest_gap_s'))} @ {_f(r.get('fast_gap_at_frame'))} | {_f(r.get('fast_whole_passes'))} "
            f"| {_f(fast / ref if fast and ref else None, 1)} | {_f(fast / DLC_CSPNEXT_S_FPS if fast else None, 1)} |"
        )
    if ref:
        add(f"| reference resnet50_gn (whole frame, batch 8, eager) | | {ref:.2f} | | | | |")
    for name, why in report["failed_backends"].items():
        add(f"| {name} | not loaded: {why} | | | | | |")
    add("")
    add("| backend | 256x256 crop p50 / p99 ms | 640x480 frame p50 / p99 ms |")
    add("|---|---:|---:|")
    for name, r in report["latency"].items():
        add(
            f"| {name} | {_f(r['crop_p50_ms'], 1)} / {_f(r['crop_p99_ms'], 1)} | {_f(r['frame_p50_ms'], 1)} / {_f(r['frame_p99_ms'], 1)} |"
        )
    add("")
    ranking = {e["backend"]: e for e in report.get("probe_ranking") or []}
    add(
        "| backend | whole-frame error px | fast error px | shift vs torch float32 px (mean / max) "
        "| probe ms per crop | probe accepted |"
    )
    add("|---|---:|---:|---:|---:|---|")
    for name, r in report["accuracy"].items():
        e = ranking.get(name, {})
        accepted = e.get("accepted")
        acc = "–" if accepted is None else ("yes" if accepted else f"no ({e.get('reason')})")
        add(
            f"| {name} | {_f(r['whole_error_px'], 3)} | {_f(r['fast_error_px'], 3)} "
            f"| {_f(r.get('shift_mean_px'), 3)} / {_f(r.get('shift_max_px'), 2)} | {_f(e.get('ms_per_image'), 1)} | {acc} |"
        )
    add("")
    add(f"auto chooses: **{report.get('auto_backend')}** (first load here {_f(report.get('auto_first_load_s'))} s)")
    add("")
    add("| start-up (fresh process) | imports s | load to first block s | process s | torch imported |")
    add("|---|---:|---:|---:|---|")
    for name, r in report["startup"].items():
        if "error" in r:
            add(f"| {name} | error: {r['error']} | | | |")
            continue
        label = name if name != "auto" else f"auto ({r.get('backend')})"
        add(
            f"| {label} | {_f(r['imports_s'])} | {_f(r['load_to_first_block_s'])} | {_f(r['process_s'])} | {r['torch_imported']} |"
        )
    cli = report.get("cli")
    if cli:
        add("")
        if "error" in cli:
            add(f"posekit analyze failed: {cli['error']}")
        else:
            add(
                f"`posekit analyze --backend auto` ({cli['backend']}), {cli['frames']} frames: {cli['wall_s']:.1f} s wall, "
                f"{cli['fps_including_startup']:.1f} frames/s including start-up vs {_f(cli.get('steady_fps'), 1)} steady "
                f"in this process over the same {_f(cli.get('steady_fps_frames'))} frames just before "
                f"(ratio {_f(cli.get('ratio'))}; target >= 0.90); that steady run's longest gap "
                f"{_f(cli.get('steady_longest_gap_s'))} s at frame {_f(cli.get('steady_gap_at_frame'))}, "
                f"{_f(cli.get('steady_whole_passes'))} whole-frame passes"
            )
    isa = report.get("isa_check")
    if isa:
        add("")
        add("| runtime (8 crops 256x256, fresh process) | native ms/crop | capped to AVX2 ms/crop |")
        add("|---|---:|---:|")
        for name in ISA_ENGINES:
            cells = []
            for label in ("native", "avx2_cap"):
                r = isa.get(label, {}).get(name)
                if r is None:
                    cells.append("–")
                elif "error" in r:
                    cells.append(r["error"])
                else:
                    extra = f" ({r['inference_precision']} hint)" if "inference_precision" in r else ""
                    cells.append(f"{r['ms_per_crop']:.2f}{extra}")
            add(f"| {name} | {cells[0]} | {cells[1]} |")
        caps = {
            label: next((r["openvino_capabilities"] for r in runs.values() if "openvino_capabilities" in r), None)
            for label, runs in isa.items()
        }
        add("")
        add(f"OpenVINO OPTIMIZATION_CAPABILITIES: native {caps.get('native')}, capped {caps.get('avx2_cap')}")
    for note in report["notes"]:
        add("")
        add(f"Note: {note}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from analyze_openfield import PROJECT as OPENFIELD
    from analyze_openfield import VIDEO

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--project", type=Path, help="DeepLabCut project folder with a trained posekit model")
    src.add_argument("--model", type=Path, help="a checkpoint (.pt) or an exported model (.onnx)")
    ap.add_argument("--video", type=Path, default=VIDEO)
    ap.add_argument("--backends", nargs="*", default=None, help="default: every backend that loads here")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--full-frames", type=int, default=64, help="frames analysed whole, from the start (default 64)")
    ap.add_argument(
        "--fast-frames",
        type=int,
        default=600,
        help="frames analysed in fast mode, from the start (0: all; default 600)",
    )
    ap.add_argument("--reference-frames", type=int, default=48)
    ap.add_argument("--latency-frames", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="default: the CPUs this process may use")
    ap.add_argument("--labels", type=Path, default=None, help="project whose labeled frames measure accuracy")
    ap.add_argument("--cache-dir", type=Path, default=None, help="POSEKIT_CACHE_DIR (default: the env's or a new one)")
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["accuracy", "latency", "startup", "cli", "isa", "reference"]
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    cache = args.cache_dir or (Path(os.environ["POSEKIT_CACHE_DIR"]) if os.environ.get("POSEKIT_CACHE_DIR") else None)
    if cache is None:
        cache = Path(tempfile.mkdtemp(prefix="posekit-bench-cache-"))
    os.environ["POSEKIT_CACHE_DIR"] = str(cache)
    threads = args.threads or len(os.sched_getaffinity(0))

    import torch

    torch.set_num_threads(threads)
    from analyze_openfield import Reference, run_reference

    from napari_posekit.core import backends as bk
    from napari_posekit.core.hardware import cpu_description, native_bfloat16_cpu
    from napari_posekit.core.inference import Predictor, probe_frames
    from napari_posekit.core.options import ANALYSIS_BATCH_SIZE
    from napari_posekit.core.video import VideoReader, read_metadata

    batch_size = args.batch_size or ANALYSIS_BATCH_SIZE
    source = args.project or args.model or OPENFIELD
    labels = args.labels or (args.project if args.project else None)
    if labels is None:
        project = bk._project_of(args.model) if args.model and args.model.suffix == ".pt" else None
        labels = project or OPENFIELD
    cap = {k: os.environ[k] for k in CAP_VARS if os.environ.get(k)}
    notes = []
    if cap:
        notes.append(
            f"instruction set capped by {cap}: torch (oneDNN convolutions, ATen kernels) honours it; OpenVINO "
            "reads ONEDNN_MAX_CPU_ISA only as far as the check below shows; onnxruntime's own MLAS kernels ignore "
            "both variables and run at the processor's full instruction set, so its numbers here are not capped"
        )
    report: dict = {
        "cpu": cpu_description(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable",
        "threads": threads,
        "batch_size": batch_size,
        "isa_cap": cap,
        "versions": {p: _version(p) for p in ("torch", "onnxruntime", "openvino", "onnx", "numpy")},
        "python": platform.python_version(),
        "source": str(source),
        "video": str(args.video),
        "cache_dir": str(cache),
        "loadavg_start": _loadavg(),
        "notes": notes,
    }
    _load(f"CPU {report['cpu']}; {threads} threads; {report['versions']}; cap {cap or 'none'}")
    n_video = read_metadata(args.video).n_frames

    # ---------------------------------------------------------------- load
    names = list(args.backends) if args.backends else list(bk.BACKENDS)
    predictors, failed, load_s = {}, {}, {}
    for name in names:
        if "bfloat16" in name and not native_bfloat16_cpu():
            # the loader may still build it from a cached graph; OpenVINO then crashes under the AVX2 cap
            failed[name] = "no native bfloat16 here (processor or ONEDNN_MAX_CPU_ISA cap); not run"
            _load(f"{name} skipped: {failed[name]}")
            continue
        t = time.perf_counter()
        try:
            predictors[name] = Predictor.load(source, backend=name, threads=threads)
            load_s[name] = round(time.perf_counter() - t, 2)
            _load(f"loaded {name} in {load_s[name]} s")
        except Exception as exc:  # noqa: BLE001 - listed with its reason
            failed[name] = f"{type(exc).__name__}: {exc}"
            _load(f"{name} does not load: {failed[name]}")
    report["failed_backends"] = failed
    report["load_s"] = load_s
    t = time.perf_counter()
    auto = Predictor.load(
        source, backend="auto", threads=threads, probe_frames=lambda: probe_frames(args.video), report=_load
    )
    report["auto_first_load_s"] = round(time.perf_counter() - t, 2)
    report["auto_backend"] = auto.backend
    ckpt = auto.checkpoint
    entry = bk._read_cache().get(bk._cache_key(bk._digest(ckpt), bk.machine_signature())) if ckpt else None
    report["probe_ranking"] = entry["ranking"] if entry else None
    _load(f"auto chooses {auto.backend}")
    del auto

    # ---------------------------------------------------------------- accuracy
    report["accuracy"] = {}
    if "accuracy" not in args.skip:
        frames, truth = labeled_frames(labels)
        base = None
        order = sorted(predictors, key=lambda n: n != "torch-eager-float32")
        for name in order:
            result, xy = accuracy(predictors[name], frames, truth)
            if base is None and name == "torch-eager-float32":
                base = xy
            if base is not None:
                shift = np.linalg.norm(xy - base, axis=-1)
                result["shift_mean_px"] = float(np.nanmean(shift))
                result["shift_max_px"] = float(np.nanmax(shift))
            report["accuracy"][name] = result
            _load(f"accuracy {name}: {json.dumps({k: round(v, 4) for k, v in result.items()})}")

    # ---------------------------------------------------------------- latency
    report["latency"] = {}
    if "latency" not in args.skip:
        reader = VideoReader(args.video, readahead=0, cache_bytes=0, max_decoders=1)
        lat_frames = np.stack([reader.get(i) for i in range(min(args.latency_frames, n_video))])
        reader.close()
        for name, predictor in predictors.items():
            report["latency"][name] = latency(predictor, lat_frames, 256)
            _load(f"latency {name}: {report['latency'][name]}")
        del lat_frames

    # ---------------------------------------------------------------- throughput, interleaved
    workdir = Path(tempfile.mkdtemp(prefix="posekit-backends-bench-"))
    runs: dict[str, dict[str, list[dict]]] = {n: {"fast": [], "whole": []} for n in predictors}
    ref_fps: list[float] = []
    reference = None
    if "reference" not in args.skip:
        k = len(next(iter(predictors.values())).bodyparts) if predictors else 4
        reference = Reference(k).eval()
    try:
        for rep in range(args.reps):
            for name, predictor in predictors.items():
                runs[name]["fast"].append(throughput(predictor, args.video, True, args.fast_frames or None, batch_size))
                if args.full_frames > 0:
                    runs[name]["whole"].append(throughput(predictor, args.video, False, args.full_frames, batch_size))
                _load(
                    f"rep {rep} {name}: fast {runs[name]['fast'][-1]['fps']:.1f} frames/s"
                    + (f", whole {runs[name]['whole'][-1]['fps']:.1f}" if args.full_frames > 0 else "")
                )
            if reference is not None:
                bodyparts = next(iter(predictors.values())).bodyparts
                ref_fps.append(run_reference(reference, args.video, args.reference_frames, bodyparts, workdir))
                _load(f"rep {rep} reference: {ref_fps[-1]:.2f} frames/s")
        report["throughput"] = {}
        for name, r in runs.items():
            if not r["fast"]:
                continue
            fast = r["fast"]
            worst = max(fast, key=lambda x: x["longest_gap_s"])
            report["throughput"][name] = {
                "fast_fps": statistics.median(x["fps"] for x in fast),
                "fast_fps_all": [round(x["fps"], 2) for x in fast],
                "fast_frames": fast[0]["frames"],
                "fast_longest_gap_s": round(worst["longest_gap_s"], 3),
                "fast_gap_at_frame": worst["gap_at_frame"],
                "fast_whole_passes": fast[0]["whole_passes"],
                "whole_fps": statistics.median(x["fps"] for x in r["whole"]) if r["whole"] else None,
                "whole_fps_all": [round(x["fps"], 2) for x in r["whole"]],
                "whole_frames": r["whole"][0]["frames"] if r["whole"] else 0,
            }
        report["reference_fps"] = statistics.median(ref_fps) if ref_fps else None
        report["reference_fps_all"] = [round(x, 2) for x in ref_fps]
        if ref_fps:
            report["ratios"] = {
                name: {
                    "fast/reference": round(r["fast_fps"] / report["reference_fps"], 1),
                    f"fast/DLC cspnext_s ({DLC_CSPNEXT_S_FPS} frames/s)": round(r["fast_fps"] / DLC_CSPNEXT_S_FPS, 1),
                }
                for name, r in report["throughput"].items()
            }
        del reference

        # ------------------------------------------------------------ start-up and the command line
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        report["startup"] = {}
        if "startup" not in args.skip:
            for name in [*predictors, "auto"]:
                report["startup"][name] = _child(STARTUP_CODE, [str(source), str(args.video), name, str(threads)], env)
                _load(f"start-up {name}: {report['startup'][name]}")
        report["cli"] = None
        if "cli" not in args.skip:
            # the steady rate of the backend auto chose, over the whole video, just before the command (same load)
            chosen = predictors.get(report["auto_backend"])
            whole_video = throughput(chosen, args.video, True, None, batch_size) if chosen is not None else None
            report["auto_whole_video"] = whole_video
            if whole_video is not None:
                _load(f"{report['auto_backend']} over the whole video in fast mode: {whole_video}")
            cli = cli_run(source, args.video, env, workdir, n_video)
            if whole_video is not None and "fps_including_startup" in cli and cli["backend"] == report["auto_backend"]:
                cli["steady_fps"] = round(whole_video["fps"], 2)
                cli["steady_fps_frames"] = whole_video["frames"]
                cli["steady_longest_gap_s"] = round(whole_video["longest_gap_s"], 3)
                cli["steady_gap_at_frame"] = whole_video["gap_at_frame"]
                cli["steady_whole_passes"] = whole_video["whole_passes"]
                cli["ratio"] = round(cli["fps_including_startup"] / whole_video["fps"], 3)
            report["cli"] = cli
            _load(f"posekit analyze: {cli}")
        if "isa" not in args.skip:
            graphs: dict[str, Path] = {}
            if args.model is not None and args.model.suffix == ".onnx":
                graphs["int8" if "int8" in str(report.get("auto_backend")) else "float32"] = args.model
            elif ckpt is not None:
                digest = bk._digest(ckpt)
                for kind, suffix in (("float32", ""), ("int8", "-int8")):
                    graph = cache / "models" / f"{digest}{suffix}.onnx"
                    if graph.is_file():
                        graphs[kind] = graph
            report["isa_check"] = isa = isa_check(graphs, 256, threads)
            notes.extend(isa_notes(isa))
            _load(f"instruction-set check: {json.dumps(report['isa_check'])}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["loadavg_end"] = _loadavg()
    for name, r in report.get("throughput", {}).items():
        for key in ("fast_fps", "whole_fps"):
            if r.get(key) is not None:
                r[key] = round(r[key], 2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(report, indent=1))
        os.replace(tmp, args.json)
    print()
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
