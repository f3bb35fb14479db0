"""The ``posekit extract-outliers`` command: the frames where the model is probably wrong, ready to refine."""

from __future__ import annotations

import argparse
import sys

from napari_posekit.cli._common import _device_problem, _model_errors
from napari_posekit.core.options import OUTLIER_EPSILON
from napari_posekit.core.outlier_scores import OUTLIER_METHODS


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``extract-outliers`` to the ``posekit`` parser's subcommands."""
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
    p.add_argument(
        "--method",
        nargs="+",
        choices=list(OUTLIER_METHODS),
        default=list(OUTLIER_METHODS),
        help="criteria of the ranking (default: all three)",
    )
    p.add_argument(
        "--epsilon",
        type=float,
        default=OUTLIER_EPSILON,
        help=f"pixels: jump and fitting threshold (default {OUTLIER_EPSILON:g})",
    )
    p.add_argument(
        "--p-bound", type=float, default=0.01, help="likelihood below which a body part is uncertain (default 0.01)"
    )
    p.add_argument("--window", type=int, default=9, help="odd number of frames of the trajectory smoother")
    p.add_argument("--candidates", type=int, default=None, help="best-ranked frames clustered (default 5 x n)")
    p.add_argument("--model", default=None, help="checkpoint to analyse with (default: the project's latest)")
    p.add_argument("--predictions", default=None, help="a prediction file to use instead of the model's")
    p.add_argument("--predictions-dir", default=None, help="where predictions are (default: beside the video)")
    p.add_argument("--reanalyze", action="store_true", help="analyse the video again, replacing its predictions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "mps"],
        default=None,
        help="for analysing the video (default: the best available)",
    )
    p.set_defaults(func=_extract_outliers)


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
            args.project,
            args.video,
            args.n,
            methods=args.method,
            epsilon=args.epsilon,
            p_bound=args.p_bound,
            window=args.window,
            candidates=args.candidates,
            model=args.model,
            predictions=args.predictions,
            predictions_dir=args.predictions_dir,
            reanalyze=args.reanalyze,
            seed=args.seed,
            device=args.device,
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
