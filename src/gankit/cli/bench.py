"""``gankit bench``: time a training iteration (or one attention layer); prints JSON."""

from __future__ import annotations

import argparse
import json

from gankit.cli.common import add_device, add_set, data_path, refuse_double_settings

FLAG_NAMES = {"attn_type": "--set model.attn_type"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time a full training iteration; prints JSON")
    p.add_argument("--workload", default="cifar", help="cifar | i128 | attention | a preset name")
    add_device(p, "auto")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--resolution", type=int, help="attention workload: feature size (64)")
    p.add_argument("--channels", type=int, help="attention workload: channels (256)")
    p.add_argument(
        "--ops-detail",
        type=int,
        nargs="?",
        const=20,
        default=0,
        metavar="N",
        help="add the N most frequent ATen ops of one iteration (ops_top; N defaults to 20)",
    )
    p.add_argument("--json", action="store_true", help="one-line JSON")
    p.add_argument(
        "--data",
        default=None,
        help="time the iteration on this data (cache file or folder) instead of synthetic "
        "images; adds loader_imgs_per_s",
    )
    add_set(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.bench import benchmark

    given = {  # --device always applies (its default is auto)
        "train.device": ("--device", True),
        "train.batch_size": ("--batch-size", args.batch_size is not None),
        "data.path": ("--data", args.data is not None),
    }
    refuse_double_settings(args.overrides, given)
    result = benchmark(
        workload=args.workload,
        device=args.device,
        steps=args.steps,
        warmup=args.warmup,
        overrides=args.overrides,
        resolution=args.resolution,
        channels=args.channels,
        batch_size=args.batch_size,
        data=data_path(args.data) if args.data else None,
        ops_detail=args.ops_detail,
    )
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
