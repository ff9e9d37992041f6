"""``gankit train``: a new run from a preset, ``--set`` overrides and a few shortcut flags."""

from __future__ import annotations

import argparse

from gankit.cli.common import add_device, add_preset, add_set, data_path, refuse_double_settings

FLAG_NAMES = {"run_dir": "--out", "out_dir": "--out"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GAN (default: the default preset on embedded MNIST)")
    add_preset(p, None)
    p.add_argument("--data", default=None, help="image folder, .npz, CIFAR batches or cache file")
    p.add_argument("--out", default="runs/default", help="run directory")
    p.add_argument("--steps", type=int, default=None, help="number of G steps")
    p.add_argument("--seed", type=int, default=None)
    add_device(p, None)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_set(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.config import DEFAULT_PRESET, apply_overrides, load_preset
    from gankit.training import train

    cfg = load_preset(args.preset or DEFAULT_PRESET)
    if args.data is not None:
        cfg.data.path = data_path(args.data)
    if args.steps is not None:
        cfg.train.steps = args.steps
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.device is not None:
        cfg.train.device = args.device
    if args.skip_bad:
        cfg.data.skip_bad = True
    given = {
        "data.path": ("--data", args.data is not None),
        "train.steps": ("--steps", args.steps is not None),
        "train.seed": ("--seed", args.seed is not None),
        "train.device": ("--device", args.device is not None),
        "data.skip_bad": ("--skip-bad", args.skip_bad),
    }
    refuse_double_settings(args.overrides, given)
    apply_overrides(cfg, args.overrides)
    train(cfg, out_dir=args.out, quiet=args.quiet)
    return 0
