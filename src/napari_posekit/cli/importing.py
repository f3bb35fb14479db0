"""``posekit import``: SLEAP labels into a new DeepLabCut-compatible project (single- or multi-animal)."""

from __future__ import annotations

import argparse
import sys
import warnings


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``import`` to the ``posekit`` parser's subcommands."""
    from napari_posekit.core.sleap_import import DEFAULT_SCORER

    p = sub.add_parser(
        "import",
        help="make a project from SLEAP labels (.slp): frames as images, CollectedData per video",
        description=(
            "Make a new project from one or more SLEAP label files (e.g. one per camera). Body parts and "
            "skeleton come from the SLEAP skeleton; every labeled frame becomes labeled-data/<video stem>/"
            "imgNNNN.png with its points in CollectedData_<scorer>.h5/.csv. Labels of several animals (several "
            "instances on a frame, or several tracks) make a multi-animal project whose individuals are the "
            "tracks (individual1, individual2 ... by order on the frame when there are no tracks)."
        ),
    )
    p.add_argument(
        "labels", nargs="+", help="SLEAP label files (.slp; also analysis .h5, NWB, JABS: what sleap-io reads)"
    )
    p.add_argument("project", help="the new project folder (must not exist, or be empty); its name is the Task")
    p.add_argument(
        "--video",
        default=None,
        help="the video of a single labels file (default: its stored path, else the file of that name beside it)",
    )
    p.add_argument(
        "--scorer", default=DEFAULT_SCORER, help=f"scorer of the CollectedData files (default: {DEFAULT_SCORER})"
    )
    p.add_argument(
        "--include-predicted",
        action="store_true",
        help="a frame without a user instance takes its predicted instance (e.g. proofread predictions)",
    )
    p.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="import one labeled frame in N (default: every labeled frame), e.g. for a densely labeled clip",
    )
    p.set_defaults(func=_import)


def _import(args) -> int:
    from tqdm import tqdm

    from napari_posekit.core.sleap_import import LabelsImportError, iter_import_labels

    if args.every < 1:
        print(f"error: --every must be at least 1, got {args.every}", file=sys.stderr)
        return 2
    work = iter_import_labels(
        args.labels,
        args.project,
        video=args.video,
        scorer=args.scorer,
        include_predicted=args.include_predicted,
        every=args.every,
    )
    bar = tqdm(total=100, unit="%", desc="import", file=sys.stderr, mininterval=0.5)
    try:
        while True:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # printed below, from the result
                    fraction = next(work)
            except StopIteration as finished:
                result = finished.value
                break
            bar.update(int(fraction * 100) - bar.n)
    except KeyboardInterrupt:
        bar.close()
        work.close()
        print("interrupted: no project written", file=sys.stderr)
        return 130
    except (LabelsImportError, OSError) as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar.close()
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    for item in result.videos:
        notes = []
        if item.predicted_frames:
            notes.append(f"{item.predicted_frames} from predicted instances")
        if item.unselected_frames:
            notes.append(f"{item.unselected_frames} labeled frames not chosen (--every)")
        if item.skipped_frames:
            notes.append(f"{item.skipped_frames} labeled frames without points or user instance left out")
        extra = f" ({'; '.join(notes)})" if notes else ""
        print(f"{item.folder}: {len(item.frames)} frames from {item.labels_path}{extra}")
    animals = f"{len(result.individuals)} individuals ({', '.join(result.individuals)}), " if result.multianimal else ""
    print(f"written: {result.config} ({animals}{len(result.bodyparts)} body parts, {result.n_frames} frames)")
    return 0
