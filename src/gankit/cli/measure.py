"""``gankit measure``: a measured (damaged) copy of a data set, for AmbientGAN experiments."""

from __future__ import annotations

import argparse
import json

from gankit.cli.common import add_preset, add_set, data_path, refuse_double_settings
from gankit.config import DEFAULT_PRESET


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure", help="write lossy measurements of a data set (.npz) for AmbientGAN training"
    )
    p.add_argument("--data", default="", help="images to measure (default: embedded MNIST)")
    p.add_argument(
        "--measurement", required=True, help="spec, e.g. block_pixels:p=0.5 or conv_noise:sigma=1"
    )
    p.add_argument("--out", required=True, help="output .npz (x, y, theta, measurement, ...)")
    p.add_argument("--seed", type=int, default=0, help="seed of the measurement draws")
    add_preset(p, DEFAULT_PRESET)
    add_set(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.measure import measure_command

    refuse_double_settings(args.overrides, {"data.path": ("--data", True)})  # default: digits
    result = measure_command(
        data_path(args.data),
        args.measurement,
        args.out,
        seed=args.seed,
        preset=args.preset,
        overrides=args.overrides,
    )
    print(json.dumps(result, indent=2))
    return 0
