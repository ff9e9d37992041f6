"""``gankit data build``: decode a data source once into a ``.npy``/``.h5`` cache."""

from __future__ import annotations

import argparse
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="prepare training data")
    p.set_defaults(func=run)
    data_sub = p.add_subparsers(dest="data_command", required=True)
    b = data_sub.add_parser(
        "build",
        help="decode a data source once into a .npy/.h5 cache (streamed, parallel, resumable)",
    )
    b.add_argument("src", help="image folder (or .npz, CIFAR batches, .npy/.h5 arrays)")
    b.add_argument("--resolution", type=int, required=True, help="side length in pixels")
    b.add_argument("--channels", type=int, default=3, help="1 (grey) or 3 (RGB)")
    b.add_argument("--out", required=True, help="cache file: CACHE.npy or CACHE.h5")
    b.add_argument("--workers", type=int, default=None, help="decoding processes (default: cores)")
    b.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.data import build_cache

    start = time.perf_counter()
    ds = build_cache(
        args.src,
        resolution=args.resolution,
        channels=args.channels,
        out=args.out,
        skip_bad=args.skip_bad,
        workers=args.workers,
        quiet=args.quiet,
    )
    shape = "x".join(str(d) for d in ds.x.shape[1:])
    print(
        f"{args.out}: {len(ds):,} images {shape}, {ds.n_classes} classes, {ds.skipped} skipped "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0
