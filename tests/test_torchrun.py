"""The whole `gankit train` → `gankit resume` → `gankit sample` under torchrun (2 gloo processes).

Documented expectation: a multi-process run is exact across a resume — 4 steps straight equal
2 steps + `resume` + 2 steps bitwise (G, D, G_ema), as for one process, and an eval that a kill
left out of the log is run once on resuming (the main rank's log decides for every rank) — and
its samples are those of the checkpoint (same file twice). The logs carry no deprecation
warning and no DDP warning about gradient strides (the batched spectral norm hands back
row-major gradients).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
from safetensors.torch import load_file
from training_fixtures import TINY, tiny_data

from gankit.run import RunDir

MODEL_AND_TRAIN = [o for o in TINY if not o.startswith(("train.steps", "train.device"))] + [
    "train.sn_batched=true",  # the CUDA default: its gradients must suit DDP's buckets
    "eval.every=2",
    "eval.n=12",
    "eval.metrics=swd",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "gankit.cli", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def _train(data, run, steps) -> str:
    sets = [a for item in MODEL_AND_TRAIN for a in ("--set", item)]
    return _torchrun("train", "--data", str(data), "--out", str(run), "--steps", str(steps),
                     "--device", "cpu", "--quiet", *sets)  # fmt: skip


def _weights(run):
    ckpt = RunDir(run).latest_checkpoint()
    return {w: load_file(str(ckpt / f"{w}.safetensors")) for w in ("G", "D", "G_ema")}


def _eval_steps(run):
    return [r["step"] for r in RunDir(run).read_metrics() if "eval" in r]


def test_torchrun_train_resume_sample(tmp_path):
    data = tiny_data(tmp_path / "d.npz", n=60)  # swd needs 10 held-out images
    logs = _train(data, tmp_path / "straight", 4)
    logs += _train(data, tmp_path / "resumed", 2)
    # as if killed in step 2's eval: on resuming, every rank follows the main rank's log
    log = tmp_path / "resumed" / "metrics.jsonl"
    log.write_text("".join(line for line in log.open() if '"eval"' not in line))
    logs += _torchrun("resume", str(tmp_path / "resumed"), "--steps", "4", "--quiet")
    assert _eval_steps(tmp_path / "straight") == _eval_steps(tmp_path / "resumed") == [2, 4]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for w in a:
        assert a[w].keys() == b[w].keys()
        assert all(bool((a[w][k] == b[w][k]).all()) for k in a[w]), w
    for needle in ("FutureWarning", "DeprecationWarning", "Grad strides do not match"):
        assert needle not in logs, logs[-2000:]

    outs = []
    for name in ("s1.npz", "s2.npz"):
        cmd = [sys.executable, "-m", "gankit.cli", "sample", str(tmp_path / "resumed"),
               "--n", "6", "--device", "cpu", "--out", str(tmp_path / name)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        outs.append(np.load(tmp_path / name))
    assert outs[0]["x"].shape == (6, 32, 32, 1)
    assert np.array_equal(outs[0]["x"], outs[1]["x"]) and np.array_equal(outs[0]["y"], outs[1]["y"])
