"""The ``posekit demo`` command: the whole job on the built-in sample, then napari."""

from __future__ import annotations

import argparse
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``posekit`` parser's subcommands."""
    p = sub.add_parser(
        "demo",
        help="the whole job on the built-in sample: project, training, analysis, then napari",
        description="Builds a DeepLabCut project from the synthetic sample (frames picked by k-means, labels from "
        "its ground truth), trains a network, analyses the video (predictions .h5/.csv and a labeled "
        "video), prints the error against the ground truth and opens napari with the results.",
    )
    p.add_argument(
        "--output-dir",
        default=None,
        help="where the demo writes its files (default: $POSEKIT_OUTPUT_DIR, else outputs/demo)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training budget in minutes (default 2; longer gives a smaller error)",
    )
    p.add_argument("--screenshot", action="store_true", help="no window: save screenshot.png and exit")
    p.set_defaults(func=_demo)


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

    return run_demo(output_dir=output_dir, screenshot=args.screenshot, show=not args.screenshot, minutes=args.minutes)
