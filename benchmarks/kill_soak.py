"""Kill soak: SIGKILL `gankit train` at random moments, resume each time, check nothing is lost.

A tiny run (checkpoint every step, so many kills land inside a checkpoint write) is killed
``--kills`` times at uniformly random moments after it starts training; after each kill the
script checks that every listed checkpoint loads (weights and state), that the newest
checkpoint's step never goes back, and how many kills hit a write in progress (a ``.tmp-*``
directory left behind); then it resumes with ``gankit resume``. Finally it lets the run finish
and compares G, D and G_ema with an uninterrupted run of the same config (bitwise on CPU), and
its training log (every step logged once, with the same losses). With ``--eval-every N`` the
run evaluates every N steps, and the eval records and ``checkpoints/best`` are compared too.
Prints one JSON report:

    python benchmarks/kill_soak.py --kills 20 --steps 40 --work /tmp/soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gankit.checkpoint import WEIGHT_FILES, load_state, load_weights
from gankit.run import RunDir
from gankit.training.hooks import eval_pending

TINY = [
    "model.arch=sagan",
    "model.resolution=32",
    "model.channels=1",
    "model.n_classes=3",
    "model.dim_z=8",
    "model.G_ch=8",
    "model.D_ch=8",
    "model.G_attn=[]",
    "model.D_attn=[]",
    "train.batch_size=4",
    "train.log_every=1",
    "train.snapshot_every=1",
    "train.keep_last=2",
    "train.sigma_layers=2",
    "train.device=cpu",
]


def _eval_overrides(every: int) -> tuple[str, ...]:
    """The overrides of a soak with evaluations every ``every`` steps."""
    return (f"eval.every={every}", "eval.n=400", "eval.metrics=swd,cfid")


def _tiny_data(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(48, 32, 32), dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(48) % 3)
    return path


def _gankit(*args: str) -> list[str]:
    return [sys.executable, "-m", "gankit.cli", *args]


def _train_args(data: Path, run: Path, steps: int, extra: tuple[str, ...]) -> list[str]:
    sets = [a for item in (*TINY, *extra) for a in ("--set", item)]
    return _gankit("train", "--data", str(data), "--out", str(run), "--steps", str(steps),
                   "--quiet", *sets)  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _latest_step(run: Path) -> int:
    ckpts = RunDir(run).list_checkpoints()
    return int(load_state(ckpts[-1])["step"]) if ckpts else 0


def _finished(run: Path, steps: int) -> bool:
    """The run has its last checkpoint and, with evaluations, that step's eval record (a kill
    during the last eval leaves it to ``gankit resume``)."""
    if _latest_step(run) < steps:
        return False
    return not eval_pending(RunDir(run).load_config(), RunDir(run), steps)


def _check_readable(run: Path) -> int:
    """Load every listed checkpoint fully; return how many failed to load."""
    bad = 0
    for ckpt in RunDir(run).list_checkpoints():
        try:
            load_state(ckpt)
            for which in WEIGHT_FILES:
                load_weights(ckpt, which)
        except Exception:  # any failure to read counts; the report says how many
            bad += 1
    return bad


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    ckpt = RunDir(run).list_checkpoints()[-1]
    return {w: load_weights(ckpt, w) for w in WEIGHT_FILES}


def _command(data: Path, run: Path, steps: int, extra: tuple[str, ...]) -> list[str]:
    """``gankit resume`` once the run has a checkpoint, else ``gankit train`` again."""
    if RunDir(run).list_checkpoints():
        return _gankit("resume", str(run), "--steps", str(steps), "--quiet")
    return _train_args(data, run, steps, extra)


def _log_lines(run: Path) -> int:
    path = RunDir(run).metrics_file
    return len(path.read_bytes().splitlines()) if path.is_file() else 0


def _log(run: Path) -> list[tuple]:
    """``(step, loss_D, loss_G)`` of each training record of ``metrics.jsonl`` and ``(step,
    results)`` of each eval record, in file order."""
    return [
        (r["step"], r["loss_D"], r["loss_G"]) if "loss_D" in r else (r["step"], r["eval"])
        for r in RunDir(run).read_metrics()
        if "loss_D" in r or "eval" in r
    ]


def _same_best(a: Path, b: Path) -> bool:
    """Whether the two runs' ``checkpoints/best`` record the same metric, value and step and
    hold the same G_ema (or neither run has one)."""
    best_a, best_b = RunDir(a).best_checkpoint(), RunDir(b).best_checkpoint()
    if best_a is None or best_b is None:
        return best_a is best_b
    wa, wb = load_weights(best_a, "G_ema"), load_weights(best_b, "G_ema")
    same_weights = wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    return load_state(best_a)["best"] == load_state(best_b)["best"] and same_weights


def soak(
    work: Path,
    kills: int,
    steps: int,
    seed: int = 0,
    max_delay: float = 2.0,
    eval_every: int = 0,
) -> dict:
    """Run the soak in ``work`` and return the report (see the module docstring).

    Each life of the process is killed ``uniform(0, max_delay)`` seconds after it logged its
    first step (so kills land in training and checkpoint writes, not in start-up). With
    ``eval_every`` the run also evaluates (swd and cfid on 400 samples) every that many steps,
    so kills land in evaluations and ``best`` writes too."""
    extra = _eval_overrides(eval_every) if eval_every else ()
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    data = _tiny_data(work / "data.npz")
    ref, run = work / "reference", work / "killed"
    for d in (ref, run):
        shutil.rmtree(d, ignore_errors=True)
    reference = _train_args(data, ref, steps, extra)
    subprocess.run(reference, check=True, env=_env(), capture_output=True)

    report = {"kills": 0, "kills_during_write": 0, "resumes": 0, "resume_failures": 0,
              "unreadable_checkpoints": 0, "step_went_back": 0, "steps": steps}  # fmt: skip
    last_step = 0
    while report["kills"] < kills:
        if _finished(run, steps):  # (a kill can land after the last checkpoint and eval)
            shutil.rmtree(run)
            last_step = 0
        report["resumes"] += bool(RunDir(run).list_checkpoints())
        lines = _log_lines(run)
        proc = subprocess.Popen(
            _command(data, run, steps, extra), env=_env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        while proc.poll() is None and _log_lines(run) <= lines:
            time.sleep(0.02)
        try:
            proc.wait(timeout=rng.uniform(0.0, max_delay))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            report["kills"] += 1
            ckpts = RunDir(run).checkpoints
            report["kills_during_write"] += any(ckpts.glob(".tmp-*")) if ckpts.is_dir() else 0
        else:
            if proc.returncode != 0:
                report["resume_failures"] += 1
                report["last_error"] = proc.stderr.read().decode()[-500:]
            if _finished(run, steps):  # finished before the kill: the loop starts over
                continue
        report["unreadable_checkpoints"] += _check_readable(run)
        step = _latest_step(run)
        report["step_went_back"] += step < last_step
        last_step = step
    if not _finished(run, steps):
        report["resumes"] += bool(RunDir(run).list_checkpoints())
        done = subprocess.run(_command(data, run, steps, extra), env=_env(), capture_output=True)
        report["resume_failures"] += done.returncode != 0
    a, b = _weights(ref), _weights(run)
    report["final_bitwise_equal"] = all(
        a[w].keys() == b[w].keys() and all(torch.equal(a[w][k], b[w][k]) for k in a[w]) for w in a
    )
    report["log_equal"] = _log(run) == _log(ref)
    report["best_equal"] = _same_best(run, ref)
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--max-delay", type=float, default=2.0, help="seconds after the first logged step"
    )
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: off)")
    p.add_argument("--work", default=None, help="work folder (default: a temp dir)")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="gankit-soak-"))
    start = time.perf_counter()
    report = soak(work, args.kills, args.steps, args.seed, args.max_delay, args.eval_every)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
