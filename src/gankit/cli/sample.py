"""``gankit sample``: a grid (.png), arrays (.npz) or an interpolation strip from a run."""

from __future__ import annotations

import argparse

from gankit.cli.common import add_device, check_truncation_flag, int_list

FLAG_NAMES = {"source": "SOURCE"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample a grid (.png) or arrays (.npz) from a run")
    p.add_argument("source", help="run directory or checkpoint")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True, help="FILE.png (grid) or FILE.npz (x uint8, y int64)")
    p.add_argument("--truncation", type=float, default=0.0, help="truncation tau (0: none)")
    p.add_argument("--classes", type=int_list, default=None, help="e.g. 3,7")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--interpolate",
        choices=["z", "class"],
        default=None,
        help="write an interpolation strip instead: between two z in one class (z: the one "
        "--classes, default 0) or between the two --classes at one z (class)",
    )
    add_device(p, "auto")
    p.add_argument("--batch-size", type=int, default=256, help="samples per forward pass")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.generation import write_samples
    from gankit.run import load_generator

    check_truncation_flag(args.truncation)
    G = load_generator(args.source, device=args.device)
    write_samples(
        G,
        args.out,
        n=args.n,
        truncation=args.truncation,
        classes=args.classes,
        seed=args.seed,
        interpolate=args.interpolate,
        batch_size=args.batch_size,
    )
    return 0
