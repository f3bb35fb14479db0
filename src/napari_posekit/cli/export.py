"""``posekit export``: a trained model as one self-contained ONNX file."""

from __future__ import annotations

import argparse
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``posekit`` parser's subcommands."""
    p = sub.add_parser(
        "export",
        help="write a trained model as an ONNX file that runs without torch (onnxruntime, OpenVINO)",
        description="Write a trained model as a self-contained ONNX file: uint8 RGB frames in, heatmaps and "
        "location refinement out, with body parts, codec and scorer stored in its metadata.",
    )
    p.add_argument("model", help="project folder, its config.yaml (latest model) or a checkpoint file")
    p.add_argument("--format", dest="fmt", default="onnx", metavar="FORMAT", help="file format (only onnx for now)")
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantise to int8, calibrated on the project's labeled frames (smaller, faster on most CPUs)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        metavar="PATH",
        help="int8 calibration frames: a project or a folder of images (default: the model's own project)",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=None,
        metavar="N",
        help="at most this many calibration images (default 64)",
    )
    p.add_argument(
        "--output", default=None, metavar="FILE", help="file to write (default: beside the checkpoint, .onnx)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_export)


def _export(args) -> int:
    from napari_posekit.cli._common import _model_errors
    from napari_posekit.core.export import ExportError, export_model
    from napari_posekit.core.model_file import read_model_meta

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        path = export_model(
            args.model,
            args.output,
            fmt=args.fmt,
            int8=args.int8,
            calibration=args.calibration,
            calibration_images=args.calibration_images,
            overwrite=args.overwrite,
            progress=say,
        )
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except _model_errors() as err:
        print(f"error: cannot use the model {args.model}: {err}", file=sys.stderr)
        return 1
    meta = read_model_meta(path)
    size = path.stat().st_size / 2**20
    line = f"written: {path} ({size:.1f} MiB, {meta['precision']}"
    if meta.get("quantization"):
        line += f", calibrated on {meta['quantization']['calibration_images']} images"
    print(line + ")")
    return 0
