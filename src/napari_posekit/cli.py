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


def _demo(args) -> int:
    from napari_posekit.demo import run_demo

    return run_demo(output_dir=Path(args.output_dir), screenshot=args.screenshot, show=not args.screenshot)


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
    p.add_argument("--input-scale", type=float, default=None, help="image scale before the network")
    p.add_argument("--crop", type=int, default=None, help="square training crop, pixels")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--head-stride", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue the model folder's checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="pixel errors of a trained model on the project's labeled frames")
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument("--checkpoint", default=None, help="default: the project's latest checkpoint")
    p.add_argument("--pcutoff", type=float, default=None, help="default: the config's pcutoff")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("demo", help="open napari with the plugin's widgets and the sample")
    p.add_argument("--output-dir", default="outputs/demo", help="where the demo writes its files")
    p.add_argument("--screenshot", action="store_true", help="no window: save a screenshot and exit")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
