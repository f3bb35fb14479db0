"""``posekit`` commands that train and evaluate a network: ``train`` and ``evaluate``."""

from __future__ import annotations

import argparse
import sys

from napari_posekit.core.options import TRAIN_MINUTES, TrainOptions


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``evaluate`` to the ``posekit`` parser's subcommands."""
    defaults = TrainOptions()
    p = sub.add_parser("train", help="train a pose network on a project's labeled frames")
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument("--backbone", default=defaults.backbone, help=f"timm model name (default: {defaults.backbone})")
    p.add_argument("--no-pretrained", action="store_true", help="random initialisation instead of ImageNet weights")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (default: no limit with a time budget)")
    p.add_argument(
        "--max-minutes",
        "--minutes",
        type=float,
        default=None,
        help=f"time budget; stops with a checkpoint (default {TRAIN_MINUTES:g} when --epochs is not given); "
        "a multi-animal project's two networks share it",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"images per training step (default {defaults.batch_size})",
    )
    p.add_argument(
        "--split",
        choices=["random", "block"],
        default=defaults.split,
        help="random: DeepLabCut's TrainingFraction split; block: first frames train, last ones test",
    )
    p.add_argument("--train-fraction", type=float, default=None, help="default: the config's TrainingFraction")
    p.add_argument("--shuffle", type=int, default=1, help="shuffle number (names the model folder)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--input-scale",
        type=float,
        default=None,
        help="image scale before the network (default: from the labels; 1 unless the animal spans "
        "more than a training crop)",
    )
    p.add_argument("--crop", type=int, default=None, help="square training crop, pixels")
    p.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {defaults.lr:g})")
    p.add_argument(
        "--head-stride", type=int, default=None, help=f"input pixels per heatmap cell (default {defaults.head_stride})"
    )
    p.add_argument(
        "--train-batchnorm",
        action="store_true",
        help="let the backbone's batch-norm statistics adapt (default: keep the pretrained ones)",
    )
    p.add_argument(
        "--frozen-stride",
        type=int,
        default=None,
        help="keep the backbone's layers up to its features at this stride (e.g. 4) at their ImageNet weights: "
        "faster steps, less accuracy per epoch (default: all layers train)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default=defaults.precision,
        help="arithmetic of the training step (default auto: bfloat16 where the CPU computes it natively)",
    )
    p.add_argument("--resume", action="store_true", help="continue the model folder's checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda or mps (default: the best available)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="pixel errors of a trained model on the project's labeled frames")
    p.add_argument("project", help="project folder or its config.yaml")
    p.add_argument("--checkpoint", default=None, help="default: the project's latest checkpoint")
    p.add_argument("--pcutoff", type=float, default=None, help="default: the config's pcutoff")
    p.set_defaults(func=_evaluate)


def _is_multianimal(project: str) -> bool:
    from napari_posekit.core.config import read_config
    from napari_posekit.core.project import ProjectError

    try:
        return read_config(project).multianimal
    except (ProjectError, OSError, ValueError):
        return False  # the single-animal path reports what is wrong with the project


def _training_errors() -> tuple[type[Exception], ...]:
    """What a training run reports as ``error: …`` (bad project, checkpoint, backbone or memory) instead of a traceback."""
    from napari_posekit.core.model import PretrainedWeightsError, UnknownBackboneError
    from napari_posekit.core.project import ProjectError
    from napari_posekit.core.train import CheckpointError, TrainingMemoryError

    return (
        ProjectError,
        CheckpointError,
        PretrainedWeightsError,
        UnknownBackboneError,
        TrainingMemoryError,
        ValueError,
    )


def _train(args) -> int:
    from tqdm import tqdm

    if _is_multianimal(args.project):
        return _train_multianimal(args)

    from napari_posekit.core.workflow import evaluate_project, format_evaluation, train_project

    max_minutes = args.max_minutes
    if args.epochs is None and max_minutes is None:
        max_minutes = TRAIN_MINUTES
    options = {
        key: value
        for key, value in {
            "input_scale": args.input_scale,
            "lr": args.lr,
            "head_stride": args.head_stride,
        }.items()
        if value is not None
    }
    if args.crop:
        options["input_size"] = (args.crop, args.crop)
    if args.train_batchnorm:
        options["frozen_bn"] = False
    if args.frozen_stride is not None:
        options["frozen_stride"] = args.frozen_stride
    gen = train_project(
        args.project,
        backbone=args.backbone,
        pretrained=not args.no_pretrained,
        epochs=args.epochs,
        max_minutes=max_minutes,
        batch_size=args.batch_size,
        split=args.split,
        seed=args.seed,
        train_fraction=args.train_fraction,
        shuffle=args.shuffle,
        resume=args.resume,
        device=args.device,
        precision=args.precision,
        **options,
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
    except _training_errors() as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar.close()
    print(f"model saved: {checkpoint}")
    evaluation = evaluate_project(args.project, checkpoint)
    print(format_evaluation(evaluation))
    return 0


def _multianimal_options(args) -> dict:
    options = {
        key: value
        for key, value in {"lr": args.lr, "head_stride": args.head_stride, "frozen_stride": args.frozen_stride}.items()
        if value is not None
    }
    if args.train_batchnorm:
        options["frozen_bn"] = False
    if args.split != "random":
        options["split"] = args.split
    return options


def _train_multianimal(args) -> int:
    """``posekit train`` on a multi-animal project: the animal finder, then the pose network on crops."""
    from tqdm import tqdm

    from napari_posekit.core.topdown import iter_train_multianimal

    if args.resume or args.input_scale is not None or args.crop:
        print(
            "error: --resume, --input-scale and --crop are for single-animal projects; a multi-animal model "
            "takes its scales and crops from the labels",
            file=sys.stderr,
        )
        return 2
    minutes = args.max_minutes
    if args.epochs is None and minutes is None:
        minutes = TRAIN_MINUTES
    bar = tqdm(total=1000, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}", file=sys.stderr)
    gen = None
    try:
        gen = iter_train_multianimal(
            args.project,
            minutes=minutes,
            epochs=args.epochs,
            shuffle=args.shuffle,
            train_fraction=args.train_fraction,
            backbone=args.backbone,
            pretrained=not args.no_pretrained,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
            **_multianimal_options(args),
        )
        while True:
            try:
                p = next(gen)
            except StopIteration as done:
                folder = done.value
                break
            bar.n = int(1000 * p["overall"])
            bar.set_description(f"{p['stage']} epoch {p['epoch']}", refresh=False)
            if p.get("event") == "evaluated":
                bar.set_postfix_str(f"loss {p['loss']:.4f} test error {p['test_error_px']:.2f} px")
            bar.refresh()
    except KeyboardInterrupt:
        if gen is not None:
            gen.close()  # saves the checkpoint of the network in training
        bar.close()
        print(
            "interrupted: the network in training saved its checkpoint; train again for a whole model", file=sys.stderr
        )
        return 130
    except (*_training_errors(), FileNotFoundError) as err:
        bar.close()
        print(f"error: {err}", file=sys.stderr)
        return 1
    bar.close()
    print(f"multi-animal model saved: {folder} (finder/, pose/, multianimal.json)")
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
