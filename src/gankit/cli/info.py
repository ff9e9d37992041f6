"""``gankit info``: a preset's resolved config and parameter counts."""

from __future__ import annotations

import argparse
import json

from gankit.cli.common import add_preset, add_set
from gankit.config import DEFAULT_PRESET


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print a preset's resolved config and parameter counts")
    add_preset(p, DEFAULT_PRESET)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_set(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gankit.config import load_preset, to_dict
    from gankit.models import build, count_params
    from gankit.validation import validate

    cfg = validate(load_preset(args.preset, args.overrides))
    G, D = build(cfg.model, init=False)  # parameter counts do not depend on the values
    report = {"config": to_dict(cfg), "params_G": count_params(G), "params_D": count_params(D)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"preset: {cfg.preset}")
    for section, values in report["config"].items():
        if isinstance(values, dict):
            print(f"[{section}]")
            for k, v in values.items():
                print(f"  {k} = {v!r}")
    print(f"params_G: {report['params_G']:,}")
    print(f"params_D: {report['params_D']:,}")
    return 0
