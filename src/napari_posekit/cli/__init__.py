"""The ``posekit`` command: the core's functions, headless.

One module per group of subcommands, each adding its parsers with
``add_commands``: :mod:`~napari_posekit.cli.project` (``info``, ``sample``,
``create-project``, ``extract-frames``), :mod:`~napari_posekit.cli.training`
(``train``, ``evaluate``), :mod:`~napari_posekit.cli.checks` (``check-labels``),
:mod:`~napari_posekit.cli.analysis` (``analyze``, ``label-video``, ``filter``), :mod:`~napari_posekit.cli.refine`
(``extract-outliers``), :mod:`~napari_posekit.cli.calibrate` (``calibrate``),
:mod:`~napari_posekit.cli.importing` (``import``: SLEAP labels into a new project),
:mod:`~napari_posekit.cli.triangulate` (``triangulate``: 3D points from calibrated cameras),
:mod:`~napari_posekit.cli.export` (``export``: a trained model as an ONNX file) and
:mod:`~napari_posekit.cli.demo` (``demo``).
Defaults the commands show come from :mod:`napari_posekit.core.options`.
"""

from __future__ import annotations

import argparse

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``posekit`` argument parser with every subcommand."""
    from napari_posekit.cli import (
        analysis,
        calibrate,
        checks,
        demo,
        export,
        importing,
        project,
        refine,
        training,
        triangulate,
    )

    parser = argparse.ArgumentParser(prog="posekit", description="Markerless animal pose estimation (napari-posekit).")
    sub = parser.add_subparsers(dest="command", required=True)
    project.add_commands(sub)
    refine.add_commands(sub)
    training.add_commands(sub)
    checks.add_commands(sub)
    analysis.add_commands(sub)
    calibrate.add_commands(sub)
    importing.add_commands(sub)
    triangulate.add_commands(sub)
    export.add_commands(sub)
    demo.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``posekit`` with ``argv`` (default: the process' arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)
