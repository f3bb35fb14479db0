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

    p = sub.add_parser("demo", help="open napari with the plugin's widgets and the sample")
    p.add_argument("--output-dir", default="outputs/demo", help="where the demo writes its files")
    p.add_argument("--screenshot", action="store_true", help="no window: save a screenshot and exit")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
