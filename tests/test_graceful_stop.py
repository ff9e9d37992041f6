"""SIGTERM / SIGINT during `gankit train`: a final checkpoint, one clear line, resumable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from training_fixtures import TINY, tiny_cfg, tiny_data

import gankit.data.prefetch as prefetch
import gankit.training.hooks as hooks
from gankit.checkpoint import load_state
from gankit.run import RunDir
from gankit.training import Trainer, resume, train
from gankit.training.stop import StopSignals, TrainingStopped


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


def _handlers():
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def test_second_signal_acts_as_usual():
    """After the first stop signal, a second one of either kind gets its previous handler."""
    before = _handlers()  # SIGINT: SIG_IGN in a background job, else Python's
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested(False) == signal.SIGTERM
        assert _handlers() == before  # neither is caught any more
    assert _handlers() == before


LINES = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


@pytest.fixture
def sigint_raises():
    """SIGINT with Python's handler, as in a terminal (a background job ignores it)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize(("sig", "line"), LINES.items())
@pytest.mark.usefixtures("sigint_raises")
def test_signal_outside_training_exits_with_one_line(monkeypatch, capsys, sig, line):
    """A stop signal while a command runs outside the training loop (start-up, data loading,
    sampling) ends it with one line and 128 + signal, not a traceback or a silent death."""
    import gankit.cli.info
    from gankit.cli import main

    def signalled(args):
        # blocked only while main starts: processes started by the command can be stopped
        assert not {signal.SIGINT, signal.SIGTERM} & signal.pthread_sigmask(signal.SIG_BLOCK, [])
        os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler raises before this ends
        return 0

    monkeypatch.setattr(gankit.cli.info, "run", signalled)
    before, mask = _handlers(), signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert main(["info"]) == 128 + sig
    assert capsys.readouterr().err == f"gankit: {line}\n"
    assert (_handlers(), signal.pthread_sigmask(signal.SIG_BLOCK, [])) == (before, mask)


@pytest.mark.usefixtures("sigint_raises")
def test_late_signal_reaches_the_caller(monkeypatch, capsys):
    """``main(argv)`` called from Python: a signal that comes once the command has finished
    leaves its line and goes to the caller's handler when main returns (here: Python's)."""
    import gankit.cli.info
    from gankit.cli import main

    class Stopped(TrainingStopped):
        def __str__(self):  # main is writing the line
            os.kill(os.getpid(), signal.SIGINT)
            return super().__str__()

    def stopped(args):
        raise Stopped("stopped by SIGTERM at step 1", signal.SIGTERM)

    monkeypatch.setattr(gankit.cli.info, "run", stopped)
    with pytest.raises(KeyboardInterrupt):
        main(["info"])
    assert capsys.readouterr().err == "gankit: stopped by SIGTERM at step 1\n"


def test_only_light_modules_load_before_main():
    """``import gankit.cli`` (all that runs before :func:`gankit.cli.main` handles signals)
    loads neither torch nor the command modules."""
    code = "import sys, gankit.cli; print({'torch', 'numpy', 'gankit.config'} & set(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "set()"


def _gankit(code, *argv):
    """Run ``code``, then the ``gankit`` program on ``argv`` as its console script does, with
    SIGINT as in a terminal."""
    sigint = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)"
    script = f"{sigint}\n{code}\nimport sys\nfrom gankit.cli import main\nsys.exit(main())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True,
                          env=env, timeout=240)  # fmt: skip
    return done.returncode, done.stderr


SIGNAL_AT_IMPORT = """
import os, sys
class SignalAt:  # sends the signal once, as the import of the module starts
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), {sig})
sys.meta_path.insert(0, SignalAt())
"""


@pytest.mark.parametrize(
    ("module", "sig"), [("gankit.config", signal.SIGINT), ("numpy", signal.SIGTERM)]
)
def test_signal_during_startup_imports(module, sig):
    """A stop signal while the command modules load (a traceback before main ran) or while
    torch imports numpy (which swallowed it: the command went on) ends the command with one
    line and 128 + signal once the imports are done."""
    rc, err = _gankit(SIGNAL_AT_IMPORT.format(module=module, sig=int(sig)), "info")
    assert (rc, err) == (128 + sig, f"gankit: {LINES[sig]}\n")


LATE_SIGNAL = """
import atexit, os, signal
import gankit.cli.info
from gankit.training.stop import TrainingStopped

class Stopped(TrainingStopped):
    def __str__(self):  # a second Ctrl-C while main writes the line of the graceful stop
        os.kill(os.getpid(), signal.SIGINT)
        return super().__str__()

def stopped(args):
    raise Stopped("stopped by SIGTERM at step 1", signal.SIGTERM)

gankit.cli.info.run = stopped
atexit.register(os.kill, os.getpid(), signal.SIGTERM)  # and a SIGTERM while the process exits
"""


def test_signals_after_the_command_leave_its_line_and_status():
    """Once the command has finished, a second Ctrl-C while main writes its line and a SIGTERM
    while the process exits (a traceback, then death by SIGTERM) change neither."""
    rc, err = _gankit(LATE_SIGNAL, "info")
    assert (rc, err) == (143, "gankit: stopped by SIGTERM at step 1\n")


_EXITING = """
import os, signal, sys
sys.argv = ["gankit", "info", "--preset", "mnist-sagan"]
from gankit.cli import main
assert main() == 0
os.kill(os.getpid(), signal.SIGTERM)  # the command has finished: its status stands
print("after the first", flush=True)
os.kill(os.getpid(), signal.SIGTERM)  # a second: the process ends at once
print("after the second", flush=True)
"""


def test_a_second_signal_while_the_program_exits_ends_it_at_once():
    """The ``gankit`` program ignores the first stop signal after its command has finished (its
    line and status stand), but not every one: a second ends an exit that is stuck."""
    out = subprocess.run([sys.executable, "-c", _EXITING], capture_output=True, text=True)
    assert out.returncode == 128 + signal.SIGTERM, out.stderr[-2000:]
    assert "after the first" in out.stdout and "after the second" not in out.stdout


SIGNAL_AT_TEARDOWN = """
import os, signal, time

class SignalAtTeardown:  # collected while Python tears its modules down, after the exit callbacks
    def __del__(self, kill=os.kill, pid=os.getpid(), sig=signal.SIGTERM, sleep=time.sleep):
        kill(pid, sig)
        sleep(0.2)  # the signal's default effect would end the process here

teardown = SignalAtTeardown()
"""


def test_a_signal_while_python_tears_down_changes_nothing():
    """Past the exit callbacks Python puts handled signals back to their default effect (death
    by SIGTERM, in the second it takes to unload torch): the program ignores them there."""
    rc, err = _gankit(SIGNAL_AT_TEARDOWN, "info", "--preset", "mnist-sagan")
    assert (rc, err) == (0, "")


def test_a_signal_while_the_prefetch_thread_stops_reaches_the_caller(tmp_path, monkeypatch):
    """The trainer stops its prefetch thread when ``fit`` ends, so a stop signal raised while
    the thread is joined reaches the command (one line, 128 + signal), rather than a
    garbage-collection callback that printed it as an ignored exception and exited 0."""
    stops = []

    def interrupted_finish(stop, thread):
        stops.append(thread)
        prefetch_finish(stop, thread)
        raise KeyboardInterrupt  # what the handler raises when the signal comes in the join

    prefetch_finish = prefetch._finish
    monkeypatch.setattr(prefetch, "_finish", interrupted_finish)
    trainer = Trainer(tiny_cfg(tiny_data(tmp_path / "d.npz")), quiet=True)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(1)
    assert len(stops) == 1 and not stops[0].is_alive()


def test_a_stop_signal_during_a_resumed_runs_pending_eval_stops_at_that_step(tmp_path, monkeypatch):
    """The eval a resumed run owes (killed before its record) runs under the training's stop
    handling: a SIGTERM meanwhile lets it finish and log, then stops with the usual line."""
    data = tiny_data(tmp_path / "d.npz", n=60)
    cfg = tiny_cfg(data, "train.steps=2", "eval.every=2", "eval.n=12", "eval.metrics=swd")
    run = train(cfg, tmp_path / "r", quiet=True)
    log = run / "metrics.jsonl"
    log.write_text("".join(line for line in log.open() if '"eval"' not in line))
    real_eval = hooks.periodic_eval

    def signalled_eval(*args):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_eval(*args)

    monkeypatch.setattr(hooks, "periodic_eval", signalled_eval)
    with pytest.raises(TrainingStopped, match="^stopped by SIGTERM at step 2 \\(checkpoint "):
        resume(run, steps=4, quiet=True)
    assert [r["step"] for r in RunDir(run).read_metrics() if "eval" in r] == [2]
    assert RunDir(run).latest_checkpoint().name == "step_00000002"
