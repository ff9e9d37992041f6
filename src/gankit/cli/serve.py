"""``gankit serve``: a local web explorer of a trained run (samples, interpolation, curves)."""

from __future__ import annotations

import argparse

from gankit.cli.common import add_device

FLAG_NAMES = {"run_dir": "RUN_DIR"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="explore a run in the browser: samples, curves, config")
    p.add_argument("run_dir", help="run directory (with checkpoints/step_*/)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (0: any free port)")
    add_device(p, "auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.serve import serve

    serve(args.run_dir, host=args.host, port=args.port, device=args.device)
    return 0
