"""``gankit eval``: metrics of a run's EMA generator, or of images of any generator (``--images``),
printed as JSON."""

from __future__ import annotations

import argparse
import json

from gankit.cli.common import add_device, check_truncation_flag
from gankit.errors import ParameterError

FLAG_NAMES = {"source": "SOURCE"}
RUN_N = 50000  # default sample count for a run (--images: all images)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="compute metrics (FID, IS, KID, PRDC, offline metrics)")
    p.add_argument("source", nargs="?", default=None, help="run directory or checkpoint")
    p.add_argument(
        "--images",
        default=None,
        help="score these images instead of a run: .npz (x, optional y), .npy/.h5, or an image "
        "folder (class sub-folders = labels)",
    )
    p.add_argument("--metrics", default="fid", help="comma-separated metric names")
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help=f"samples to score (default: {RUN_N} for a run, all images for --images)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="reference data (default: the run's data; for --images the embedded digits)",
    )
    p.add_argument("--inception-weights", default=None, help="pt_inception-2015-12-05 .pth file")
    p.add_argument(
        "--resize",
        choices=["legacy", "clean"],
        default="legacy",
        help="legacy: TF-Inception protocol (TF1 bilinear to 299); clean: clean-fid's PIL "
        "bicubic resize wherever images are resized",
    )
    p.add_argument("--truncation", type=float, default=None, help="a run only (default 0)")
    p.add_argument("--seed", type=int, default=None, help="a run only (default 0)")
    add_device(p, "auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.evaluation import evaluate, evaluate_images

    if (args.source is None) == (args.images is None):
        raise ParameterError(
            "source", "give a run directory/checkpoint or --images PATH (exactly one of them)"
        )
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.images is not None:
        for flag in ("truncation", "seed"):
            if getattr(args, flag) is not None:
                raise ParameterError(flag, "applies to a run, not to --images")
        result = evaluate_images(
            args.images,
            metrics=metrics,
            n=args.n,
            data=args.data,
            inception_weights=args.inception_weights,
            device=args.device,
            quiet=args.quiet,
            resize=args.resize,
        )
    else:
        result = evaluate(
            args.source,
            metrics=metrics,
            n=RUN_N if args.n is None else args.n,
            data=args.data,
            inception_weights=args.inception_weights,
            truncation=check_truncation_flag(args.truncation or 0.0),
            device=args.device,
            seed=args.seed or 0,
            quiet=args.quiet,
            resize=args.resize,
        )
    print(json.dumps(result, indent=2))
    return 0
