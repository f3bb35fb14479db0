"""``posekit`` commands that use a trained network on videos: ``analyze``, ``label-video`` and ``filter``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_posekit.cli._common import _device_problem, _model_errors
from napari_posekit.core.options import ANALYSIS_BATCH_SIZE, PCUTOFF


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``analyze``, ``label-video`` and ``filter`` to the ``posekit`` parser's subcommands."""
    p = sub.add_parser(
        "analyze",
        help="predict the body parts in videos with a trained model (DeepLabCut prediction files)",
        description="Writes <video stem><scorer>.h5/.csv/_meta.json beside each video (or in --output-dir). One "
        "video runs here; several run in parallel on a local Dask cluster, or on a running cluster "
        "with --scheduler (one task per video). An interrupted video continues where it stopped.",
    )
    p.add_argument(
        "model",
        help="project folder or its config.yaml (its latest model), a checkpoint file, or an exported model "
        "(.onnx, from posekit export: runs without torch)",
    )
    p.add_argument("videos", nargs="+", metavar="video", help="video files or folders of videos")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a running Dask scheduler (tcp://host:8786) or its scheduler file",
    )
    where.add_argument("--local", action="store_true", help="analyse the videos one after the other in this process")
    p.add_argument("--output-dir", default=None, help="where the predictions go (default: beside each video)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes of the local Dask cluster (default: 2, at most the CPUs)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=ANALYSIS_BATCH_SIZE,
        help=f"frames per forward pass (default {ANALYSIS_BATCH_SIZE})",
    )
    p.add_argument("--no-fast", action="store_true", help="every frame whole instead of crops around the animal")
    p.add_argument("--overwrite", action="store_true", help="analyse again videos that have predictions")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "mps"],
        default=None,
        help="default: the best available (on each worker with Dask)",
    )
    p.add_argument(
        "--backend",
        choices=["auto", *_backend_names()],
        default="auto",
        help="what runs the network (default auto: the fastest that keeps the accuracy, measured once per model "
        "and machine and remembered)",
    )
    p.add_argument(
        "--format",
        choices=["h5", "slp"],
        default="h5",
        help="multi-animal models: DeepLabCut's tracked .h5 with its .csv (default), or a SLEAP .slp",
    )
    p.set_defaults(func=_analyze)

    p = sub.add_parser("label-video", help="draw a model's predictions over a video (<stem><scorer>_labeled.mp4)")
    p.add_argument("model", help="project folder or its config.yaml (its latest model), or a checkpoint file")
    p.add_argument("video")
    p.add_argument(
        "--output", default=None, help="the MP4 to write (default: <stem><scorer>_labeled.mp4 beside the predictions)"
    )
    p.add_argument(
        "--predictions-dir",
        default=None,
        help="where the video's predictions are, or go when it is analysed first (default: beside it)",
    )
    p.add_argument("--filtered", action="store_true", help="draw the <stem>_filtered.h5 predictions")
    p.add_argument(
        "--pcutoff",
        type=float,
        default=None,
        help=f"likelihood below which a body part is not drawn (default: the project's, else {PCUTOFF:g})",
    )
    p.add_argument("--trail", type=int, default=0, metavar="N", help="draw each body part's last N positions")
    p.add_argument("--no-skeleton", action="store_true", help="body parts only, no skeleton lines")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "mps"],
        default=None,
        help="for analysing the video first (default: the best available)",
    )
    p.set_defaults(func=_label_video)

    p = sub.add_parser("filter", help="smooth predicted trajectories over time (writes <stem>_filtered.h5/.csv)")
    p.add_argument("predictions", nargs="+", help="prediction files (.h5 or .csv)")
    p.add_argument(
        "--method",
        choices=["median", "savgol"],
        default="median",
        help="median: removes single-frame jumps; savgol: Savitzky-Golay, smooths jitter",
    )
    p.add_argument("--window", type=int, default=5, help="odd number of frames (default 5)")
    p.add_argument("--polyorder", type=int, default=2, help="polynomial order of savgol (default 2)")
    p.add_argument(
        "--pcutoff",
        type=float,
        default=0.0,
        help="points below this likelihood count as missing (default 0: all points count)",
    )
    p.add_argument(
        "--max-gap",
        type=int,
        default=None,
        help="longest gap of missing frames bridged by interpolation (default: the window)",
    )
    p.add_argument("--output", default=None, help="output .h5 (one input only; default <stem>_filtered.h5)")
    p.add_argument("--no-csv", action="store_true", help="write the .h5 only")
    p.set_defaults(func=_filter)


def _backend_names() -> tuple[str, ...]:
    from napari_posekit.core.backends import BACKENDS

    return BACKENDS


def _load_predictor(model: str, device: str | None, backend: str = "auto", video: Path | None = None):
    """The model's Predictor, or None after printing why it cannot be loaded.

    ``video``'s frames help choose the backend when the model has no labeled frames to measure on.
    """
    from napari_posekit.core.inference import Predictor, probe_frames

    problem = _device_problem(device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return None
    if device is None and not model.lower().endswith(".onnx"):  # an exported model runs on the CPU, torch-free
        from napari_posekit.core.hardware import gpu_present

        if gpu_present():  # else the CPU, without importing torch to ask
            from napari_posekit.core.train import default_device

            device = default_device()
    try:
        predictor = Predictor.load(
            model,
            device=device or "cpu",
            backend=backend,
            probe_frames=(lambda: probe_frames(video)) if video is not None else None,
            report=lambda line: print(line, file=sys.stderr),
        )
        print(f"backend: {predictor.backend}", file=sys.stderr)
        return predictor
    except _model_errors() as err:
        print(f"error: cannot use the model {model}: {err}", file=sys.stderr)
    except RuntimeError as err:  # e.g. a device that torch does not have
        print(f"error: cannot load the model {model} on {device}: {err}", file=sys.stderr)
    return None


def _run_analysis(predictor, video: Path, **kwargs) -> Path | None:
    """Analyse one video in this process with a progress bar of frames; None when interrupted (progress kept).

    Raises the analysis' errors (unreadable video, unwritable folder...).
    """
    import inspect

    from tqdm import tqdm

    from napari_posekit.core.inference import analyze_video

    stop = {"now": False}
    gen = analyze_video(predictor, video, should_stop=lambda: stop["now"], **kwargs)
    bar = None
    failed_frames = 0
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as finished:
                h5 = finished.value
                break
            chunk = p["chunk"]
            failed_frames += len(chunk.failed)
            if bar is None:
                bar = tqdm(
                    total=p["total"],
                    initial=p["done"] - len(chunk.xy),
                    unit="frame",
                    desc=video.name,
                    file=sys.stderr,
                    mininterval=0.5,
                )
            bar.update(len(chunk.xy))
            if failed_frames:
                bar.set_postfix_str(f"{failed_frames} frames not decoded", refresh=False)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        if inspect.getgeneratorstate(gen) == inspect.GEN_SUSPENDED:
            stop["now"] = True  # the generator saves its progress and ends at the next step
            try:
                next(gen)
            except StopIteration:
                pass
        return None
    if bar is not None:
        bar.close()
    if failed_frames:
        print(
            f"warning: {video}: {failed_frames} frames could not be decoded; their predictions are empty "
            f"(listed in the _meta.json)",
            file=sys.stderr,
        )
    return h5


def _name_reason(video: Path, reason: str) -> str:
    """``video: reason`` unless the reason names the video already."""
    return reason if reason.startswith(str(video)) else f"{video}: {reason}"


def _analyze(args) -> int:
    from napari_posekit.core.batch import find_videos

    videos = find_videos(args.videos)
    empty = [v for v in args.videos if Path(v).is_dir() and not find_videos([v])]
    for folder in empty:
        print(f"warning: {folder}: no video files in this folder", file=sys.stderr)
    if not videos:
        print("error: no videos to analyse", file=sys.stderr)
        return 1
    if args.batch_size < 1:
        print(f"error: --batch-size must be at least 1, got {args.batch_size}", file=sys.stderr)
        return 1
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return 1
    if _is_multianimal_model(args.model):
        return _analyze_multianimal(args, videos)
    if args.scheduler is None and (args.local or len(videos) == 1):
        return _analyze_here(args, videos)
    return _analyze_on_dask(args, videos)


def _is_multianimal_model(model: str) -> bool:
    """Whether ``model`` is a multi-animal model, one of its checkpoints, or a multi-animal project."""
    from napari_posekit.core.topdown_train import MULTIANIMAL_FILE

    path = Path(model)
    if path.name == MULTIANIMAL_FILE or path.is_dir() and (path / MULTIANIMAL_FILE).is_file():
        return True
    if path.suffix == ".pt":
        return any((parent / MULTIANIMAL_FILE).is_file() for parent in path.parents[:2])
    if path.is_dir() and (path / "config.yaml").is_file() or path.suffix in (".yaml", ".yml") and path.is_file():
        from napari_posekit.core.config import read_config

        try:
            return read_config(path).multianimal
        except (OSError, ValueError):
            return False
    return False


def _analyze_multianimal(args, videos: list[Path]) -> int:
    """``posekit analyze`` with a multi-animal model: tracked poses of every individual, one video after another."""
    from tqdm import tqdm

    from napari_posekit.core.inference import probe_frames
    from napari_posekit.core.multianimal import TracksFileError
    from napari_posekit.core.topdown import MultiAnimalModel, analyze_multianimal, tracks_output_path
    from napari_posekit.core.video import VideoError

    problem = _device_problem(args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.scheduler is not None:
        print("note: multi-animal videos are analysed here, one after another, not on the scheduler", file=sys.stderr)
    first = next((v for v in videos if v.is_file()), None)
    try:
        model = MultiAnimalModel.load(
            args.model,
            device=args.device or "cpu",
            backend=args.backend,
            probe_frames=probe_frames(first) if first is not None else None,
            report=lambda line: print(line, file=sys.stderr),
        )
    except _model_errors() as err:
        print(f"error: cannot use the model {args.model}: {err}", file=sys.stderr)
        return 1
    print(f"backends: {model.backend}", file=sys.stderr)
    status = 0
    for video in videos:
        if not video.is_file():
            print(f"error: {video}: no such video file", file=sys.stderr)
            status = 1
            continue
        out = tracks_output_path(video, model.scorer, args.output_dir).with_suffix(f".{args.format}")
        if out.is_file() and not args.overwrite:
            print(f"kept (exists, --overwrite to redo): {out}")
            continue
        bar = tqdm(unit="frame", desc=video.name, file=sys.stderr, mininterval=0.5)

        def progress(done: int, total: int, bar=bar) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            analyze_multianimal(model, video, output=out, batch_size=args.batch_size, progress=progress)
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted: {video} not written", file=sys.stderr)
            return 130
        except (VideoError, TracksFileError, OSError, ValueError) as err:
            bar.close()
            print(f"error: {_name_reason(video, str(err))}", file=sys.stderr)
            status = 1
            continue
        bar.close()
        print(f"written: {out}")
    return status


def _analyze_here(args, videos: list[Path]) -> int:
    from napari_posekit.core.inference import AnalysisError, output_paths
    from napari_posekit.core.video import VideoError

    predictor = _load_predictor(args.model, args.device, args.backend, next((v for v in videos if v.is_file()), None))
    if predictor is None:
        return 1
    status = 0
    for video in videos:
        if not video.is_file():
            print(f"error: {video}: no such video file", file=sys.stderr)
            status = 1
            continue
        h5 = output_paths(video, predictor.scorer, args.output_dir)["h5"]
        if h5.is_file() and not args.overwrite:
            print(f"kept (exists, --overwrite to redo): {h5}")
            continue
        try:
            h5 = _run_analysis(
                predictor,
                video,
                output_dir=args.output_dir,
                batch_size=args.batch_size,
                fast=not args.no_fast,
                overwrite=args.overwrite,
            )
        except (AnalysisError, VideoError, OSError, ValueError) as err:
            print(f"error: {_name_reason(video, str(err))}", file=sys.stderr)
            status = 1
            continue
        if h5 is None:
            print(f"interrupted: the progress on {video} is kept; the same command continues it", file=sys.stderr)
            return 130
        print(f"written: {h5}")
    return status


def _analyze_on_dask(args, videos: list[Path]) -> int:
    from tqdm import tqdm

    from napari_posekit.core.batch import BatchError, analyze_videos

    if args.scheduler is not None and args.workers is not None:
        print("warning: --workers is ignored with --scheduler (the cluster has its own workers)", file=sys.stderr)
    problem = _device_problem(args.device) if args.scheduler is None else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    bar = tqdm(total=len(videos), unit="video", desc="videos", file=sys.stderr)

    def on_result(video: Path, status: str, value) -> None:
        if status == "failed":
            tqdm.write(f"failed: {_name_reason(video, str(value))}", file=sys.stderr)
        bar.update(1)

    try:
        result = analyze_videos(
            args.model,
            videos,
            output_dir=args.output_dir,
            scheduler=args.scheduler,
            n_workers=args.workers,
            fast=not args.no_fast,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            device=args.device,
            backend=args.backend,
            on_result=on_result,
        )
    except KeyboardInterrupt:
        bar.close()
        print(
            "interrupted: finished videos are kept and started ones keep their progress; the same command continues",
            file=sys.stderr,
        )
        return 130
    except _model_errors() as err:
        bar.close()
        print(f"error: cannot use the model {args.model}: {err}", file=sys.stderr)
        return 1
    except BatchError as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar.close()
    for h5 in result.done.values():
        print(f"written: {h5}")
    for h5 in result.skipped.values():
        print(f"kept (exists, --overwrite to redo): {h5}")
    print(
        f"{len(result.done)} analysed, {len(result.skipped)} kept, {len(result.failed)} failed "
        f"in {result.seconds:.0f} s (model {result.checkpoint})"
    )
    return 1 if result.failed else 0


def _project_pcutoff(checkpoint: Path | None, default: float = PCUTOFF) -> float:
    """The ``pcutoff`` of the project a checkpoint lives in, else ``default``."""
    from napari_posekit.core.config import read_config
    from napari_posekit.core.model_paths import MODELS_FOLDER
    from napari_posekit.core.project import ProjectError

    if checkpoint is None:
        return default
    project = next((p.parent for p in checkpoint.resolve().parents if p.name == MODELS_FOLDER), None)
    if project is None or not (project / "config.yaml").is_file():
        return default
    try:
        value = read_config(project).get("pcutoff")
        return default if value is None else float(value)
    except (ProjectError, OSError, TypeError, ValueError):
        return default


def _label_video(args) -> int:
    from tqdm import tqdm

    from napari_posekit.core.filtering import filtered_path
    from napari_posekit.core.inference import AnalysisError, output_paths
    from napari_posekit.core.labeled_video import iter_labeled_video, labeled_video_path
    from napari_posekit.core.predictions import read_predictions
    from napari_posekit.core.video import VideoError, read_metadata

    video = Path(args.video).expanduser()
    if not video.is_file():
        print(f"error: {video}: no such video file", file=sys.stderr)
        return 1
    predictor = _load_predictor(args.model, args.device)
    if predictor is None:
        return 1
    h5 = output_paths(video, predictor.scorer, args.predictions_dir)["h5"]
    if not h5.is_file():
        print(f"no predictions of this model for {video} yet: analysing it first", file=sys.stderr)
        try:
            h5 = _run_analysis(predictor, video, output_dir=args.predictions_dir)
        except (AnalysisError, VideoError, OSError, ValueError) as err:
            print(f"error: {_name_reason(video, str(err))}", file=sys.stderr)
            return 1
        if h5 is None:
            print(f"interrupted: the progress on {video} is kept; the same command continues it", file=sys.stderr)
            return 130
        print(f"written: {h5}")
    source = h5
    if args.filtered:
        source = filtered_path(h5)
        if not source.is_file():
            print(f"error: {source}: no filtered predictions; run 'posekit filter {h5}' first", file=sys.stderr)
            return 1
    out = Path(args.output).expanduser() if args.output else labeled_video_path(source)
    pcutoff = args.pcutoff if args.pcutoff is not None else _project_pcutoff(predictor.checkpoint)
    bar = None
    try:
        predictions = read_predictions(source)
        gen = iter_labeled_video(
            video,
            predictions.xy,
            predictions.likelihood,
            predictions.bodyparts,
            out,
            skeleton=[] if args.no_skeleton else predictor.skeleton,
            individual_of=predictions.individual_of,
            pcutoff=pcutoff,
            trail_length=args.trail,
        )
        bar = tqdm(total=read_metadata(video).n_frames, unit="frame", desc=out.name, file=sys.stderr, mininterval=0.5)
        while True:
            try:
                done = next(gen)
            except StopIteration as finished:
                written = finished.value
                break
            bar.update(done - bar.n)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("interrupted: no labeled video written", file=sys.stderr)
        return 130
    except (VideoError, OSError, ValueError) as err:
        if bar is not None:
            bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar.close()
    print(f"written: {written}")
    return 0


def _filter(args) -> int:
    from napari_posekit.core.filtering import filter_prediction_file

    if args.output is not None and len(args.predictions) > 1:
        print("error: --output names one file; give one prediction file with it", file=sys.stderr)
        return 1
    status = 0
    for path in args.predictions:
        try:
            written = filter_prediction_file(
                path,
                args.output,
                method=args.method,
                window=args.window,
                polyorder=args.polyorder,
                pcutoff=args.pcutoff,
                max_gap=args.max_gap,
                csv=not args.no_csv,
            )
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"written: {written}")
    return status
