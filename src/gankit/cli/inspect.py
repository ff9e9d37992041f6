"""``gankit inspect``: loss and singular-value plots plus a JSON summary of a run."""

from __future__ import annotations

import argparse

FLAG_NAMES = {"run_dir": "RUN_DIR"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="plot a run's losses and sigma_0..2 of G and D (PNG), write summary.json"
    )
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="output folder (default RUN/plots)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.analysis.report import inspect_run
    from gankit.errors import check_path

    out = None if args.out is None else check_path(args.out, "out", "an output folder")
    for path in inspect_run(args.run_dir, out_dir=out):
        print(path)
    return 0
