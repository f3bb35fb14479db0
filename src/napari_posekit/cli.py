"""The ``posekit`` command: the core's functions, headless."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _info(args) -> int:
    from napari_posekit.core.video import VideoError, format_time, read_metadata

    status = 0
    for path in args.videos:
        try:
            meta = read_metadata(path)
        except VideoError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(meta.to_dict()))
        else:
            print(
                f"{meta.path}: {meta.n_frames} frames, {meta.width}x{meta.height}, {meta.fps:.3f} fps, "
                f"{format_time(meta.duration)}, {meta.codec} ({meta.pix_fmt}), {meta.n_keyframes} keyframes"
            )
    return status


def _sample(args) -> int:
    from napari_posekit.core.sample import write_sample

    files = write_sample(args.folder, n_frames=args.frames, seed=args.seed)
    print(f"video:        {files.video}")
    print(f"ground truth: {files.groundtruth_csv}")
    return 0


def _create_project(args) -> int:
    from napari_posekit.core.project import ProjectError, create_project

    skeleton = [tuple(edge.split("-", 1)) for edge in args.skeleton]
    try:
        config = create_project(args.folder, args.task, args.scorer, args.videos, args.bodyparts, skeleton,
                                copy_videos=args.copy_videos)
    except ProjectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"project created: {config}")
    return 0


def _extract_frames(args) -> int:
    from napari_posekit.core.frames import extract_frames, select_kmeans, select_uniform
    from napari_posekit.core.project import read_config
    from napari_posekit.core.video import VideoError, read_metadata

    config = read_config(args.project)
    k = args.n or int(config.get("numframes2pick") or 20)
    status = 0
    for video in args.videos:
        try:
            if args.method == "kmeans":
                frames = select_kmeans(video, k, start=args.start, stop=args.stop, seed=args.seed)
            else:
                frames = select_uniform(read_metadata(video).n_frames, k, start=args.start, stop=args.stop)
            result = extract_frames(video, frames, config.project_folder / "labeled-data")
        except (VideoError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"{video}: {len(result.written)} frames written to {result.folder}"
              + (f", {len(result.skipped)} existed and were kept" if result.skipped else ""))
    return status


def _extract_outliers(args) -> int:
    from napari_posekit.core.outliers import extract_outliers
    from napari_posekit.core.video import VideoError

    problem = _device_problem(args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    bar = None

    def report(event: dict) -> None:
        nonlocal bar
        if event["event"] == "analyze":
            if bar is None:
                from tqdm import tqdm

                bar = tqdm(total=event["total"], unit="frame", desc="analysing", file=sys.stderr)
            bar.n = event["done"]
            bar.refresh()

    if args.device is None:
        from napari_posekit.core.train import default_device

        args.device = str(default_device())
    try:
        result = extract_outliers(
            args.project, args.video, args.n, methods=args.method, epsilon=args.epsilon, p_bound=args.p_bound,
            window=args.window, candidates=args.candidates, model=args.model, predictions=args.predictions,
            predictions_dir=args.predictions_dir, reanalyze=args.reanalyze, seed=args.seed, device=args.device,
            progress=report,
        )
    except (*_model_errors(), VideoError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    scores = result.scores
    print(f"{result.predictions.name}: {int(scores.flagged.sum())} of {scores.n_frames} frames flagged")
    if not result.frames:
        print("no outlier frames to extract" + (" (the others are in the folder already)" if result.excluded else ""))
        return 0
    print(f"{len(result.frames)} frames written to {result.folder} with machine labels {result.machinelabels.name}")
    for frame, image in zip(result.frames, result.images):
        print(f"  {image.name}  score {scores.combined[frame]:.2f}")
    if result.added_video:
        print("the video was added to the config's video_sets")
    return 0


def _train(args) -> int:
    from tqdm import tqdm

    from napari_posekit.core.model import PretrainedWeightsError, UnknownBackboneError
    from napari_posekit.core.project import ProjectError
    from napari_posekit.core.train import CheckpointError, TrainingMemoryError
    from napari_posekit.core.workflow import evaluate_project, format_evaluation, train_project

    max_minutes = args.max_minutes
    if args.epochs is None and max_minutes is None:
        max_minutes = 10.0
    options = {
        key: value
        for key, value in {
            "input_scale": args.input_scale, "lr": args.lr, "head_stride": args.head_stride,
        }.items()
        if value is not None
    }
    if args.crop:
        options["input_size"] = (args.crop, args.crop)
    if args.train_batchnorm:
        options["frozen_bn"] = False
    gen = train_project(
        args.project, backbone=args.backbone, pretrained=not args.no_pretrained, epochs=args.epochs,
        max_minutes=max_minutes, batch_size=args.batch_size, split=args.split, seed=args.seed,
        train_fraction=args.train_fraction, shuffle=args.shuffle, resume=args.resume,
        device=args.device, **options,
    )
    bar = tqdm(total=1000, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}", file=sys.stderr)
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as done:
                checkpoint = done.value
                break
            if p.get("event") == "warning":
                tqdm.write(f"warning: {p['message']}", file=sys.stderr)
                continue
            bar.n = int(1000 * p["progress"])
            if p.get("event") == "evaluated":
                bar.set_postfix_str(f"epoch {p['epoch']} loss {p['loss']:.4f} test error {p['test_error_px']:.2f} px")
            else:
                bar.set_description(f"epoch {p['epoch']}", refresh=False)
                bar.refresh()
    except KeyboardInterrupt:
        gen.close()  # saves a checkpoint
        bar.close()
        print("interrupted: checkpoint saved; continue with --resume", file=sys.stderr)
        return 130
    except (ProjectError, CheckpointError, PretrainedWeightsError, UnknownBackboneError, TrainingMemoryError,
            ValueError) as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar.close()
    print(f"model saved: {checkpoint}")
    evaluation = evaluate_project(args.project, checkpoint)
    print(format_evaluation(evaluation))
    return 0


def _evaluate(args) -> int:
    from napari_posekit.core.project import ProjectError
    from napari_posekit.core.train import CheckpointError
    from napari_posekit.core.workflow import evaluate_project, format_evaluation

    try:
        evaluation = evaluate_project(args.project, args.checkpoint, pcutoff=args.pcutoff)
    except (ProjectError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_evaluation(evaluation))
    for path in evaluation.files:
        print(f"written: {path}")
    return 0


def _model_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the model argument cannot be used."""
    from napari_posekit.core.inference import AnalysisError
    from napari_posekit.core.project import ProjectError
    from napari_posekit.core.train import CheckpointError

    return FileNotFoundError, ProjectError, CheckpointError, AnalysisError


def _device_problem(device: str | None) -> str | None:
    """Why ``device`` cannot be used on this machine, or None."""
    if device is None or device == "cpu":
        return None
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return "--device cuda: no CUDA GPU is available to torch on this machine"
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps is not None and mps.is_available()):
        return "--device mps: Apple MPS is not available on this machine"
    return None


def _load_predictor(model: str, device: str | None):
    """The model's Predictor, or None after printing why it cannot be loaded."""
    from napari_posekit.core.inference import Predictor
    from napari_posekit.core.train import default_device

    problem = _device_problem(device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return None
    try:
        return Predictor.load(model, device=device or default_device())
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
                bar = tqdm(total=p["total"], initial=p["done"] - len(chunk.xy), unit="frame", desc=video.name,
                           file=sys.stderr, mininterval=0.5)
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
        print(f"warning: {video}: {failed_frames} frames could not be decoded; their predictions are empty "
              f"(listed in the _meta.json)", file=sys.stderr)
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
    if args.scheduler is None and (args.local or len(videos) == 1):
        return _analyze_here(args, videos)
    return _analyze_on_dask(args, videos)


def _analyze_here(args, videos: list[Path]) -> int:
    from napari_posekit.core.inference import AnalysisError, output_paths
    from napari_posekit.core.video import VideoError

    predictor = _load_predictor(args.model, args.device)
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
            h5 = _run_analysis(predictor, video, output_dir=args.output_dir, batch_size=args.batch_size,
                               fast=not args.no_fast, overwrite=args.overwrite)
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
            args.model, videos, output_dir=args.output_dir, scheduler=args.scheduler, n_workers=args.workers,
            fast=not args.no_fast, batch_size=args.batch_size, overwrite=args.overwrite, device=args.device,
            on_result=on_result,
        )
    except KeyboardInterrupt:
        bar.close()
        print("interrupted: finished videos are kept and started ones keep their progress; the same command "
              "continues", file=sys.stderr)
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
    print(f"{len(result.done)} analysed, {len(result.skipped)} kept, {len(result.failed)} failed "
          f"in {result.seconds:.0f} s (model {result.checkpoint})")
    return 1 if result.failed else 0


def _project_pcutoff(checkpoint: Path | None, default: float = 0.6) -> float:
    """The ``pcutoff`` of the project a checkpoint lives in, else ``default``."""
    from napari_posekit.core.project import ProjectError, read_config
    from napari_posekit.core.workflow import MODELS_FOLDER

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
            video, predictions.xy, predictions.likelihood, predictions.bodyparts, out,
            skeleton=[] if args.no_skeleton else predictor.skeleton, individual_of=predictions.individual_of,
            pcutoff=pcutoff, trail_length=args.trail,
        )
        bar = tqdm(total=read_metadata(video).n_frames, unit="frame", desc=out.name, file=sys.stderr,
                   mininterval=0.5)
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
                path, args.output, method=args.method, window=args.window,
                polyorder=args.polyorder, pcutoff=args.pcutoff, max_gap=args.max_gap, csv=not args.no_csv,
            )
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"written: {written}")
    return status


def _demo(args) -> int:
    import os

    # On a busy machine torch's OpenMP threads that spin while waiting make every training step many
    # times slower; passive waiting costs little on an idle machine. Set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from napari_posekit.core.demo_pipeline import DemoError, check_output_dir

    if args.minutes is not None and not (args.minutes > 0 and args.minutes < float("inf")):
        print(f"error: --minutes must be a positive number, got {args.minutes}", file=sys.stderr)
        return 2
    output_dir = args.output_dir or os.environ.get("POSEKIT_OUTPUT_DIR") or "outputs/demo"
    try:
        output_dir = check_output_dir(output_dir)
    except DemoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    from napari_posekit.demo import run_demo

    return run_demo(output_dir=output_dir, screenshot=args.screenshot, show=not args.screenshot,
                    minutes=args.minutes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posekit", description="Markerless animal pose estimation (napari-posekit).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print video metadata without decoding")
    p.add_argument("videos", nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    p.set_defaults(func=_info)

    p = sub.add_parser("sample", help="write the synthetic mouse video and its ground truth")
    p.add_argument("folder")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_sample)

    p = sub.add_parser("create-project", help="create a DeepLabCut-compatible project")
    p.add_argument("folder", help="where the project folder <task>-<scorer>-<date> is created")
    p.add_argument("task")
    p.add_argument("scorer")
    p.add_argument("--videos", nargs="+", required=True)
    p.add_argument("--bodyparts", nargs="+", required=True)
    p.add_argument("--skeleton", nargs="*", default=[], metavar="A-B", help="edges such as snout-leftear")
    p.add_argument("--copy-videos", action="store_true", help="copy instead of linking the videos")
    p.set_defaults(func=_create_project)

    p = sub.add_parser("extract-frames", help="pick frames (k-means or uniform) into labeled-data/<video>/")
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument("videos", nargs="+")
    p.add_argument("--n", type=int, default=None, help="frames per video (default: numframes2pick)")
    p.add_argument("--method", choices=["kmeans", "uniform"], default="kmeans")
    p.add_argument("--start", type=float, default=0.0, help="start of the range, fraction of the video")
    p.add_argument("--stop", type=float, default=1.0, help="end of the range, fraction of the video")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_extract_frames)

    p = sub.add_parser(
        "extract-outliers",
        help="pick frames where the model is probably wrong into labeled-data/<video>/ with machine labels",
        description="Analyses the video with the project's latest model when it has no predictions yet, ranks the "
                    "frames by jumps, low likelihood and distance from the smoothed trajectory, keeps the picks "
                    "diverse by k-means on their appearance, and writes them as PNGs with their predictions as "
                    "machinelabels-iter<i>.h5 beside them, ready to refine.",
    )
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument("video", help="the video (a path, or a file name in the project's videos/)")
    p.add_argument("--n", type=int, default=None, help="frames to pick (default: numframes2pick)")
    p.add_argument("--method", nargs="+", choices=["jump", "uncertain", "fitting"],
                   default=["jump", "uncertain", "fitting"], help="criteria of the ranking (default: all three)")
    p.add_argument("--epsilon", type=float, default=20.0, help="pixels: jump and fitting threshold (default 20)")
    p.add_argument("--p-bound", type=float, default=0.01,
                   help="likelihood below which a body part is uncertain (default 0.01)")
    p.add_argument("--window", type=int, default=9, help="odd number of frames of the trajectory smoother")
    p.add_argument("--candidates", type=int, default=None, help="best-ranked frames clustered (default 5 x n)")
    p.add_argument("--model", default=None, help="checkpoint to analyse with (default: the project's latest)")
    p.add_argument("--predictions", default=None, help="a prediction file to use instead of the model's")
    p.add_argument("--predictions-dir", default=None, help="where predictions are (default: beside the video)")
    p.add_argument("--reanalyze", action="store_true", help="analyse the video again, replacing its predictions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda", "mps"], default=None,
                   help="for analysing the video (default: the best available)")
    p.set_defaults(func=_extract_outliers)

    p = sub.add_parser("train", help="train a pose network on a project's labeled frames")
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument("--backbone", default="efficientnet_lite0", help="timm model name (default: efficientnet_lite0)")
    p.add_argument("--no-pretrained", action="store_true", help="random initialisation instead of ImageNet weights")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (default: no limit with a time budget)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="time budget; stops with a checkpoint (default 10 when --epochs is not given)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--split", choices=["random", "block"], default="random",
                   help="random: DeepLabCut's TrainingFraction split; block: first frames train, last ones test")
    p.add_argument("--train-fraction", type=float, default=None, help="default: the config's TrainingFraction")
    p.add_argument("--shuffle", type=int, default=1, help="shuffle number (names the model folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-scale", type=float, default=None,
                   help="image scale before the network (default: from the labels; 1 unless the animal spans "
                        "more than a training crop)")
    p.add_argument("--crop", type=int, default=None, help="square training crop, pixels")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--head-stride", type=int, default=None)
    p.add_argument("--train-batchnorm", action="store_true",
                   help="let the backbone's batch-norm statistics adapt (default: keep the pretrained ones)")
    p.add_argument("--resume", action="store_true", help="continue the model folder's checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="pixel errors of a trained model on the project's labeled frames")
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument("--checkpoint", default=None, help="default: the project's latest checkpoint")
    p.add_argument("--pcutoff", type=float, default=None, help="default: the config's pcutoff")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "analyze", help="predict the body parts in videos with a trained model (DeepLabCut prediction files)",
        description="Writes <video stem><scorer>.h5/.csv/_meta.json beside each video (or in --output-dir). One "
                    "video runs here; several run in parallel on a local Dask cluster, or on a running cluster "
                    "with --scheduler (one task per video). An interrupted video continues where it stopped.",
    )
    p.add_argument("model", help="project folder or its config.yaml (its latest model), or a checkpoint file")
    p.add_argument("videos", nargs="+", metavar="video", help="video files or folders of videos")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="a running Dask scheduler (tcp://host:8786) or its scheduler file")
    where.add_argument("--local", action="store_true",
                       help="analyse the videos one after the other in this process")
    p.add_argument("--output-dir", default=None, help="where the predictions go (default: beside each video)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of the local Dask cluster (default: 2, at most the CPUs)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-fast", action="store_true", help="every frame whole instead of crops around the animal")
    p.add_argument("--overwrite", action="store_true", help="analyse again videos that have predictions")
    p.add_argument("--device", choices=["cpu", "cuda", "mps"], default=None,
                   help="default: the best available (on each worker with Dask)")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("label-video", help="draw a model's predictions over a video (<stem><scorer>_labeled.mp4)")
    p.add_argument("model", help="project folder or its config.yaml (its latest model), or a checkpoint file")
    p.add_argument("video")
    p.add_argument("--output", default=None, help="the MP4 to write (default: <stem><scorer>_labeled.mp4 beside "
                                                  "the predictions)")
    p.add_argument("--predictions-dir", default=None,
                   help="where the video's predictions are, or go when it is analysed first (default: beside it)")
    p.add_argument("--filtered", action="store_true", help="draw the <stem>_filtered.h5 predictions")
    p.add_argument("--pcutoff", type=float, default=None,
                   help="likelihood below which a body part is not drawn (default: the project's, else 0.6)")
    p.add_argument("--trail", type=int, default=0, metavar="N", help="draw each body part's last N positions")
    p.add_argument("--no-skeleton", action="store_true", help="body parts only, no skeleton lines")
    p.add_argument("--device", choices=["cpu", "cuda", "mps"], default=None,
                   help="for analysing the video first (default: the best available)")
    p.set_defaults(func=_label_video)

    p = sub.add_parser("filter", help="smooth predicted trajectories over time (writes <stem>_filtered.h5/.csv)")
    p.add_argument("predictions", nargs="+", help="prediction files (.h5 or .csv)")
    p.add_argument("--method", choices=["median", "savgol"], default="median",
                   help="median: removes single-frame jumps; savgol: Savitzky-Golay, smooths jitter")
    p.add_argument("--window", type=int, default=5, help="odd number of frames (default 5)")
    p.add_argument("--polyorder", type=int, default=2, help="polynomial order of savgol (default 2)")
    p.add_argument("--pcutoff", type=float, default=0.0,
                   help="points below this likelihood count as missing (default 0: all points count)")
    p.add_argument("--max-gap", type=int, default=None,
                   help="longest gap of missing frames bridged by interpolation (default: the window)")
    p.add_argument("--output", default=None, help="output .h5 (one input only; default <stem>_filtered.h5)")
    p.add_argument("--no-csv", action="store_true", help="write the .h5 only")
    p.set_defaults(func=_filter)

    p = sub.add_parser(
        "demo", help="the whole job on the built-in sample: project, training, analysis, then napari",
        description="Builds a DeepLabCut project from the synthetic sample (frames picked by k-means, labels from "
                    "its ground truth), trains a network, analyses the video (predictions .h5/.csv and a labeled "
                    "video), prints the error against the ground truth and opens napari with the results.",
    )
    p.add_argument("--output-dir", default=None,
                   help="where the demo writes its files (default: $POSEKIT_OUTPUT_DIR, else outputs/demo)")
    p.add_argument("--minutes", type=float, default=None,
                   help="training budget in minutes (default 2; longer gives a smaller error)")
    p.add_argument("--screenshot", action="store_true", help="no window: save screenshot.png and exit")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
