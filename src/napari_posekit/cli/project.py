"""``posekit`` commands that start a project: ``info``, ``sample``, ``create-project`` and ``extract-frames``."""

from __future__ import annotations

import argparse
import json
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the project commands to the ``posekit`` parser's subcommands."""
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
        config = create_project(
            args.folder, args.task, args.scorer, args.videos, args.bodyparts, skeleton, copy_videos=args.copy_videos
        )
    except ProjectError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"project created: {config}")
    return 0


def _extract_frames(args) -> int:
    from napari_posekit.core.config import read_config
    from napari_posekit.core.frames import extract_frames, select_kmeans, select_uniform
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
        print(
            f"{video}: {len(result.written)} frames written to {result.folder}"
            + (f", {len(result.skipped)} existed and were kept" if result.skipped else "")
        )
    return status
