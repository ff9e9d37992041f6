"""``gankit eval``: metrics of a run's EMA generator, printed as JSON."""

from __future__ import annotations

import argparse
import json

from gankit.cli.common import add_device

FLAG_NAMES = {"source": "SOURCE"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="compute metrics (FID, IS, KID, PRDC, offline metrics)")
    p.add_argument("source", help="run directory or checkpoint")
    p.add_argument("--metrics", default="fid", help="comma-separated metric names")
    p.add_argument("--n", type=int, default=50000, help="number of generated samples")
    p.add_argument("--data", default=None, help="reference data (default: the run's data)")
    p.add_argument("--inception-weights", default=None, help="pt_inception-2015-12-05 .pth file")
    p.add_argument("--truncation", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    add_device(p, "auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.evaluation import evaluate

    result = evaluate(
        args.source,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()],
        n=args.n,
        data=args.data,
        inception_weights=args.inception_weights,
        truncation=args.truncation,
        device=args.device,
        seed=args.seed,
        quiet=args.quiet,
    )
    print(json.dumps(result, indent=2))
    return 0
