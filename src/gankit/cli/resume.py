"""``gankit resume``: continue a run exactly where its last checkpoint left off."""

from __future__ import annotations

import argparse

from gankit.cli.common import add_device

FLAG_NAMES = {"run_dir": "RUN_DIR"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resume", help="continue a run exactly where its last checkpoint left off")
    p.add_argument("run_dir")
    p.add_argument("--steps", type=int, default=None, help="total G steps to reach")
    add_device(p, None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.training import resume

    resume(args.run_dir, steps=args.steps, device=args.device, quiet=args.quiet)
    return 0
