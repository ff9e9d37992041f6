"""Lever ablation of the ``cifar`` training iteration: one ``gankit bench`` per configuration.

Each configuration runs in a fresh process (so peak RSS and thread pools start clean) and
prints one JSON line: the bench result plus ``config`` (the lever switched) and
``loadavg_before`` (1-minute load average when it started; other jobs on a shared machine
inflate the timings). Usage::

    python benchmarks/ablation.py [--workload cifar] [--device cpu] [--steps 2] [--warmup 1]
        [--only all-on,reference] [--eager] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REFERENCE = [
    "train.channels_last=false",
    "train.fused_optim=false",
    "train.sn_once=false",
    "train.sdpa=false",
    "train.fused_resample=false",
    "train.sn_batched=false",
    "train.batched_fakes=false",
    "train.compile=false",
]
CONFIGS: dict[str, list[str]] = {
    "all-on": [],  # the defaults (train.compile=auto: compiled on CUDA, eager on CPU)
    "channels_last=off": ["train.channels_last=false"],
    "fused_optim=off": ["train.fused_optim=false"],
    "sn_once=off": ["train.sn_once=false"],
    "sdpa=off": ["train.sdpa=false"],
    "fused_resample=off": ["train.fused_resample=false"],
    "sn_batched=off": ["train.sn_batched=false"],
    "batched_fakes=off": ["train.batched_fakes=false"],
    "compile=off": ["train.compile=false"],
    "compile=default": ["train.compile=default"],
    "compile=reduce-overhead": ["train.compile=reduce-overhead"],
    "reference": REFERENCE,
}
EAGER = [name for name in CONFIGS if not name.startswith("compile=")]
"""The configurations without a compile lever (all of them run eagerly on CPU)."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="cifar")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated config names (default: all)")
    p.add_argument("--eager", action="store_true", help="only the configurations without compile")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or (EAGER if args.eager else list(CONFIGS))
    for name in names:
        sets = [a for kv in [*args.overrides, *CONFIGS[name]] for a in ("--set", kv)]
        cmd = [
            sys.executable, "-m", "gankit.cli", "bench", "--workload", args.workload,
            "--device", args.device, "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--json", *sets,
        ]  # fmt: skip
        load = os.getloadavg()[0]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(json.dumps({"config": name, "error": out.stderr.strip()[-500:]}), flush=True)
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({"config": name, "loadavg_before": load, **result}), flush=True)


if __name__ == "__main__":
    main()
