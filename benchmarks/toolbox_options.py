"""Each layer/model option of the toolbox on the embedded MNIST digits: train, then evaluate.

For every configuration: ``gankit train`` (a fresh process, ``OMP_NUM_THREADS`` threads) for
``--steps`` G steps, then ``gankit eval RUN --metrics class_acc,cfid,swd --n 1000`` (offline
metrics: gankit's own MNIST classifier and sliced Wasserstein distance; EMA generator). Prints
one JSON line per configuration with the metrics, the training wall time, ``s_per_step`` (wall
time / steps, start-up, logging and snapshots included), ``s_per_iter`` (the median over the
log intervals of ``metrics.jsonl`` of one training iteration's time, from its ``img_per_s``) and
the parameter counts. Usage::

    python benchmarks/toolbox_options.py --out runs/toolbox --steps 500 --jobs 2 [--only a,b]

The ResNet rows use ``sngan-cifar`` shrunk to the digits at 32x32 (``RESNET``): the reversible
blocks need a ResNet architecture with constant channel counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# sngan-cifar on the digits at 32x32, trained like an earlier mnist-sagan default (AC-GAN term
# 0.2, Adam(2e-4, betas (0.5, 0.999)), EMA 0.99), as in the table of benchmarks/RESULTS.md
RESNET = [
    "model.channels=1", "model.G_ch=16", "model.D_ch=32", "model.init=normal",
    "model.aux_classifier=true", "train.aux_weight=0.2", "train.n_D=1",
    "train.betas_G=[0.5,0.999]", "train.betas_D=[0.5,0.999]", "train.ema_decay=0.99",
    "train.ema_start=500",
]  # fmt: skip

CONFIGS: dict[str, tuple[str, list[str]]] = {
    "mnist-sagan (baseline)": ("mnist-sagan", []),
    "G_norm=group": ("mnist-sagan", ["model.G_norm=group"]),
    "G_norm=none": ("mnist-sagan", ["model.G_norm=none"]),
    "D_norm=batch": ("mnist-sagan", ["model.D_norm=batch"]),
    "D_norm=group": ("mnist-sagan", ["model.D_norm=group"]),
    "activation=selu+init=lecun": ("mnist-sagan", ["model.activation=selu", "model.init=lecun"]),
    "activation=tprelu": ("mnist-sagan", ["model.activation=tprelu"]),
    "D_down=fmp": ("mnist-sagan", ["model.D_down=fmp"]),
    "optimizer=amsgrad": ("mnist-sagan", ["train.optimizer=amsgrad"]),
    "wn-gan": ("wn-gan", []),
    "resnet-32 (sngan on digits)": ("sngan-cifar", RESNET),
    "resnet-32 G_block=D_block=reversible": (
        "sngan-cifar",
        [*RESNET, "model.G_block=reversible", "model.D_block=reversible"],
    ),
}


def gankit(*args: str, threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "gankit.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def run(name: str, out: Path, steps: int, n_eval: int, threads: int) -> dict:
    preset, sets = CONFIGS[name]
    run_dir = out / name.split(" (")[0].replace("=", "-").replace(" ", "_").replace("+", "_")
    flags = [a for kv in sets for a in ("--set", kv)]
    info = gankit("info", "--preset", preset, "--json", *flags, threads=threads)
    if info.returncode != 0:
        return {"config": name, "error": info.stderr.strip()[-300:]}
    params = json.loads(info.stdout)
    start = time.perf_counter()
    train = gankit(
        "train", "--preset", preset, "--out", str(run_dir), "--steps", str(steps), "--quiet",
        "--device", "cpu", *flags, threads=threads,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if train.returncode != 0:
        return {"config": name, "error": train.stderr.strip()[-300:]}
    ev = gankit(
        "eval", str(run_dir), "--metrics", "class_acc,cfid,swd", "--n", str(n_eval), "--quiet",
        "--device", "cpu", threads=threads,
    )  # fmt: skip
    metrics = json.loads(ev.stdout) if ev.returncode == 0 else {"error": ev.stderr[-300:]}
    t = params["config"]["train"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    iters = sorted(t["batch_size"] * t["n_D"] / r["img_per_s"] for r in rows if "img_per_s" in r)
    return {
        "config": name,
        "preset": preset,
        "set": sets,
        "steps": steps,
        "train_s": seconds,
        "s_per_step": seconds / steps,
        "s_per_iter": iters[len(iters) // 2] if iters else None,
        "params_G": params["params_G"],
        "params_D": params["params_D"],
        "eval": metrics,
        "threads": threads,
        "loadavg_1min_end": os.getloadavg()[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/toolbox")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--n", type=int, default=1000, help="samples for gankit eval")
    p.add_argument("--jobs", type=int, default=1, help="configurations run at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per job")
    p.add_argument("--only", default="", help="comma-separated config names (default: all)")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CONFIGS)
    out = Path(args.out)
    with ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(run, n, out, args.steps, args.n, args.threads) for n in names]
        for job in jobs:
            print(json.dumps(job.result()), flush=True)


if __name__ == "__main__":
    main()
