"""``posekit calibrate``: calibrate synchronised cameras with a board (anipose ``calibration.toml``)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``calibrate`` to the ``posekit`` parser's subcommands."""
    p = sub.add_parser("calibrate", help="calibrate synchronised cameras from board videos or image folders")
    p.add_argument("output", help="the calibration.toml to write (a <stem>.report.json goes beside it)")
    p.add_argument("--board", required=True, help="anipose board.toml (ChArUco or checkerboard)")
    p.add_argument(
        "--camera", action="append", required=True, metavar="NAME=PATH", help="a camera and its video or image folder"
    )
    p.set_defaults(func=_calibrate)


def _calibrate(args) -> int:
    raise NotImplementedError
