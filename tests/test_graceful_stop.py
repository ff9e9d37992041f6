"""SIGTERM / SIGINT during `gankit train`: a final checkpoint, one clear line, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from training_fixtures import TINY, tiny_data

from gankit.checkpoint import load_state
from gankit.run import RunDir
from gankit.training.stop import StopSignals


def _start(data, run, steps):
    tiny = [o for o in TINY if not o.startswith("train.steps")]
    sets = [a for o in [*tiny, "train.snapshot_every=1000"] for a in ("--set", o)]
    cmd = [sys.executable, "-m", "gankit.cli", "train", "--data", str(data), "--out", str(run),
           "--steps", str(steps), "--quiet", *sets]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_writes_checkpoint_and_resumes(tmp_path, sig):
    data = tiny_data(tmp_path / "d.npz")
    run = tmp_path / "r"
    proc = _start(data, run, 100_000)
    deadline = time.time() + 240
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.2)  # training is under way: at least one logged step
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + sig, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"gankit: stopped by {sig.name} at step ") and "gankit resume" in line
    step = int(line.split(" at step ")[1].split()[0])
    (ckpt,) = RunDir(run).list_checkpoints()  # written by the stop (snapshots are 1,000 apart)
    assert load_state(ckpt)["step"] == step and str(ckpt) in line
    done = subprocess.run([sys.executable, "-m", "gankit.cli", "resume", str(run), "--steps",
                           str(step + 2), "--quiet"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert load_state(RunDir(run).latest_checkpoint())["step"] == step + 2


def test_second_signal_acts_as_usual():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job, else Python's
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested(False) == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is not stop._handle  # the next one is not caught
    assert signal.getsignal(signal.SIGINT) is before  # restored on exit


@pytest.mark.parametrize(
    ("sig", "line"), [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupted")]
)
def test_signal_outside_training_exits_with_one_line(monkeypatch, capsys, sig, line):
    """A stop signal while a command runs outside the training loop (start-up, data loading,
    sampling) ends it with one line and 128 + signal, not a traceback or a silent death."""
    import gankit.cli.info
    from gankit.cli import main

    def signalled(args):
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler raises before this ends
        return 0

    monkeypatch.setattr(gankit.cli.info, "run", signalled)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["info"]) == 128 + sig
    assert capsys.readouterr().err == f"gankit: {line}\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_torch_loads_inside_the_commands():
    """``import gankit.cli`` (all that runs before :func:`gankit.cli.main` handles signals)
    does not import torch, whose import takes seconds."""
    code = "import sys, gankit.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
