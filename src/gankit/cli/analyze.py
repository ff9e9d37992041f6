"""``gankit analyze saliency|reconstruct|neighbours``: what D looks at, how well G covers held-out
real images, and whether G copies its training images (JSON on stdout, PNG grids in ``--out``)."""

from __future__ import annotations

import argparse
import json

from gankit.cli.common import add_device, check_truncation_flag

FLAG_NAMES = {"source": "SOURCE"}

_RUN_DATA = "<the run's data>"  # bare `analyze saliency --images`


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="saliency of D, reconstruction of real images, neighbours")
    p.set_defaults(func=run)
    what = p.add_subparsers(dest="analysis", required=True)
    q = what.add_parser("saliency", help="D's saliency maps |dD/dx| beside the images, per class")
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images",
        nargs="?",
        const=_RUN_DATA,
        default=None,
        metavar="SRC",
        help="real images: a data source (.npz, folder, ...); bare --images: the run's data",
    )
    source.add_argument("--samples", type=int, default=None, help="N samples of the EMA G")
    q.add_argument("--per-class", type=int, default=8, help="real images per class")
    q.add_argument("--truncation", type=float, default=0.0)
    q.add_argument("--batch-size", type=int, default=64, help="images per backward pass")
    r = what.add_parser("reconstruct", help="invert G on held-out real images; error vs baseline")
    r.add_argument("--data", default=None, help="data set (default: the run's data)")
    r.add_argument("--n", type=int, default=100, help="held-out images to reconstruct")
    r.add_argument("--steps", type=int, default=200, help="Adam steps per start")
    r.add_argument("--restarts", type=int, default=4, help="seeded starts per image")
    r.add_argument("--lr", type=float, default=0.1, help="initial Adam learning rate (cosine)")
    r.add_argument("--search-class", action="store_true", help="try every class, keep the best")
    r.add_argument("--feature-weight", type=float, default=0.0, help="classifier-feature loss")
    r.add_argument("--batch-size", type=int, default=512, help="latents optimised together")
    m = what.add_parser("neighbours", help="nearest training images of samples; memorisation")
    m.add_argument("--data", default=None, help="data set (default: the run's data)")
    m.add_argument("--n", type=int, default=1000, help="number of samples")
    m.add_argument("--k", type=int, default=3, help="neighbours shown per sample")
    m.add_argument("--truncation", type=float, default=0.0)
    m.add_argument("--batch-size", type=int, default=256, help="samples per forward pass")
    for a in (q, r, m):
        a.add_argument("--quiet", action="store_true", help="no progress bar")
        a.add_argument("source", help="run directory or checkpoint")
        a.add_argument("--out", required=True, help="output folder")
        a.add_argument("--seed", type=int, default=0)
        add_device(a, "auto")
        a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    common = dict(seed=args.seed, device=args.device, batch_size=args.batch_size, quiet=args.quiet)
    check_truncation_flag(getattr(args, "truncation", 0.0))  # saliency, neighbours
    if args.analysis == "saliency":
        from gankit.analysis.saliency import analyze_saliency

        result = analyze_saliency(
            args.source,
            args.out,
            samples=args.samples,
            data=None if args.images == _RUN_DATA else args.images,
            per_class=args.per_class,
            truncation=args.truncation,
            **common,
        )
    elif args.analysis == "reconstruct":
        from gankit.analysis.reconstruct import analyze_reconstruct

        result = analyze_reconstruct(
            args.source,
            args.out,
            data=args.data,
            n=args.n,
            steps=args.steps,
            restarts=args.restarts,
            lr=args.lr,
            search_class=args.search_class,
            feature_weight=args.feature_weight,
            **common,
        )
    else:
        from gankit.analysis.neighbours import analyze_neighbours

        result = analyze_neighbours(
            args.source,
            args.out,
            n=args.n,
            data=args.data,
            k=args.k,
            truncation=args.truncation,
            **common,
        )
    print(json.dumps(result, indent=2))
    return 0
