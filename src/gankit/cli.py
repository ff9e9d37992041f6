"""``gankit`` command line: parses arguments, builds configs and calls the library.

Each sub-command is one ``cmd_*`` function; heavy modules are imported inside it so that
``gankit --help`` stays fast. Any :class:`~gankit.errors.GankitError` is printed as one line
(``gankit: error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gankit.config import DEFAULT_PRESET, apply_overrides, list_presets, load_preset, to_dict
from gankit.errors import GankitError


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.batch_size=32 (repeatable)",
    )


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def cmd_info(args: argparse.Namespace) -> int:
    from gankit.models import build, count_params

    cfg = load_preset(args.preset, args.overrides)
    G, D = build(cfg.model, init=False)  # parameter counts do not depend on the values
    report = {"config": to_dict(cfg), "params_G": count_params(G), "params_D": count_params(D)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"preset: {cfg.preset}")
        for section, values in report["config"].items():
            if isinstance(values, dict):
                print(f"[{section}]")
                for k, v in values.items():
                    print(f"  {k} = {v!r}")
        print(f"params_G: {report['params_G']:,}")
        print(f"params_D: {report['params_D']:,}")
    return 0


def _data_path(value: str) -> str:
    """``--data`` as an absolute path (``~`` expanded) so that resume/eval work from any cwd;
    ``""`` (embedded MNIST) stays empty."""
    return str(Path(value).expanduser().resolve()) if value else value


def cmd_train(args: argparse.Namespace) -> int:
    from gankit.training import train

    cfg = load_preset(args.preset or DEFAULT_PRESET)
    if args.data is not None:
        cfg.data.path = _data_path(args.data)
    if args.steps is not None:
        cfg.train.steps = args.steps
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.device is not None:
        cfg.train.device = args.device
    if args.skip_bad:
        cfg.data.skip_bad = True
    apply_overrides(cfg, args.overrides)
    train(cfg, out_dir=args.out, quiet=args.quiet)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from gankit.training import resume

    resume(args.run_dir, steps=args.steps, device=args.device, quiet=args.quiet)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from gankit.sampling import sample_command

    sample_command(
        args.source,
        n=args.n,
        out=args.out,
        truncation=args.truncation,
        classes=args.classes,
        seed=args.seed,
        interpolate=args.interpolate,
        device=args.device,
        batch_size=args.batch_size,
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from gankit.evaluate import eval_command

    result = eval_command(
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


def cmd_inspect(args: argparse.Namespace) -> int:
    from gankit.analysis.report import inspect_run

    for path in inspect_run(args.run_dir, out_dir=args.out):
        print(path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from gankit.bench import bench_command

    result = bench_command(
        workload=args.workload,
        device=args.device,
        steps=args.steps,
        warmup=args.warmup,
        overrides=args.overrides,
        resolution=args.resolution,
        channels=args.channels,
        batch_size=args.batch_size,
        ops_detail=args.ops_detail,
    )
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gankit", description="Train, sample, evaluate and inspect class-conditional GANs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    presets = ", ".join(list_presets())

    p = sub.add_parser("info", help="print a preset's resolved config and parameter counts")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"one of: {presets}")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_set(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a GAN (default: the default preset on embedded MNIST)")
    p.add_argument("--preset", default=None, help=f"one of: {presets} (default {DEFAULT_PRESET})")
    p.add_argument("--data", default=None, help="image folder, .npz, CIFAR batches or cache file")
    p.add_argument("--out", default="runs/default", help="run directory")
    p.add_argument("--steps", type=int, default=None, help="number of G steps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (counted)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_set(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a run exactly where its last checkpoint left off")
    p.add_argument("run_dir")
    p.add_argument("--steps", type=int, default=None, help="total G steps to reach")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("sample", help="sample a grid (.png) or arrays (.npz) from a run")
    p.add_argument("source", help="run directory or checkpoint")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--out", required=True, help="FILE.png (grid) or FILE.npz (x uint8, y int64)")
    p.add_argument("--truncation", type=float, default=0.0, help="truncation tau (0: none)")
    p.add_argument("--classes", type=_int_list, default=None, help="e.g. 3,7")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--interpolate",
        choices=["z", "class"],
        default=None,
        help="write an interpolation strip between two z (or the two --classes) instead",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--batch-size", type=int, default=256, help="samples per forward pass")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("eval", help="compute metrics (FID, IS, KID, PRDC, offline metrics)")
    p.add_argument("source", help="run directory or checkpoint")
    p.add_argument("--metrics", default="fid", help="comma-separated metric names")
    p.add_argument("--n", type=int, default=50000, help="number of generated samples")
    p.add_argument("--data", default=None, help="reference data (default: the run's data)")
    p.add_argument("--inception-weights", default=None, help="pt_inception-2015-12-05 .pth file")
    p.add_argument("--truncation", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("inspect", help="plot losses and sigma_0 curves of a run to PNG")
    p.add_argument("run_dir")
    p.add_argument("--out", default=None, help="output folder (default RUN/plots)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("bench", help="time a full training iteration; prints JSON")
    p.add_argument("--workload", default="cifar", help="cifar | i128 | attention | a preset name")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--resolution", type=int, default=64, help="attention workload: feature size")
    p.add_argument("--channels", type=int, default=256, help="attention workload: channels")
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
    _add_set(p)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GankitError as err:
        print(f"gankit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
