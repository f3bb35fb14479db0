"""The ``posekit check-labels`` command: likely labeling mistakes of a project, ranked, as a summary and a CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_posekit.cli._common import _device_problem
from napari_posekit.core.label_qa import FOLDS, MAX_MINUTES


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``check-labels`` to the ``posekit`` parser's subcommands."""
    p = sub.add_parser(
        "check-labels",
        help="find likely labeling mistakes (left/right swaps, outliers, duplicates...) and rank them",
        description="Checks every labeled image of a DeepLabCut project for left/right swaps, body parts out of "
        "shape, two body parts at one point and images labeled twice; with --cross-validate also trains "
        "k models that each predict the images they did not see, and flags labels far from those "
        "predictions, missing or extra. Prints a summary and writes one CSV row per suspect, most suspect "
        "first. Suspects marked as correct in the Label QA widget are left out.",
    )
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument(
        "--output",
        default=None,
        metavar="FILE.csv",
        help="the CSV to write (default: label-checks.csv in the project folder)",
    )
    p.add_argument(
        "--cross-validate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also compare the labels with cross-validated predictions (trains models; default: no)",
    )
    p.add_argument("--folds", type=int, default=FOLDS, help=f"folds of the cross-validation (default {FOLDS})")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=MAX_MINUTES,
        help=f"time for the whole cross-validation (default {MAX_MINUTES:g})",
    )
    p.add_argument("--show-dismissed", action="store_true", help="list suspects marked as correct too")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda", "mps"],
        default=None,
        help="for the cross-validation (default: the best available)",
    )
    p.set_defaults(func=_check_labels)


def _bad_numbers(args) -> str | None:
    if args.folds < 2:
        return f"--folds {args.folds}: at least 2 folds are needed"
    if not args.max_minutes > 0:
        return f"--max-minutes {args.max_minutes:g}: must be more than 0"
    return None


def _check_labels(args) -> int:
    from tqdm import tqdm

    from napari_posekit.core.label_qa import check_labels, default_csv_path, summary, write_suspects_csv
    from napari_posekit.core.label_suspects import project_label_set
    from napari_posekit.core.project import ProjectError

    problem = _bad_numbers(args) or (_device_problem(args.device) if args.cross_validate else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    bar = None

    def progress(item: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=1000, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining}", file=sys.stderr)
        bar.n = int(1000 * item["progress"])
        bar.set_description(item.get("message", ""), refresh=False)
        bar.refresh()

    try:
        labels = project_label_set(args.project)
        report = check_labels(
            labels,
            progress=progress if args.cross_validate else None,
            cross_validate=args.cross_validate,
            folds=args.folds,
            max_minutes=args.max_minutes,
            apply_decisions=not args.show_dismissed,
            device=args.device,
        )
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        return 130
    except (ProjectError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(summary(report))
    output = Path(args.output) if args.output else default_csv_path(labels.root)
    try:
        written = write_suspects_csv(report, output)
    except OSError as err:
        print(f"error: cannot write the suspects CSV: {err}; choose another place with --output", file=sys.stderr)
        return 1
    print(f"suspects written: {written}")
    return 0
