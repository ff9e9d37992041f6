"""Checkpoints: atomic writes under a simulated crash, keep-last-K, exact resume."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from training_fixtures import TINY, single_thread, tiny_cfg, tiny_data

from gankit import checkpoint as ckpt_io
from gankit.cli import main
from gankit.config import Config, load_toml, save_toml
from gankit.errors import GankitError, ParameterError
from gankit.models import build
from gankit.run import RunDir, find_checkpoint
from gankit.training import resume, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(ckpt):
    return {w: ckpt_io.load_weights(ckpt, w) for w in ckpt_io.WEIGHT_FILES}


def test_resume_is_exact(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    straight = train(tiny_cfg(data, "train.keep_last=0"), tmp_path / "a", quiet=True)
    half = train(tiny_cfg(data, "train.steps=2"), tmp_path / "b", quiet=True)
    resume(half, steps=4, quiet=True)
    ca, cb = (ckpt_io.list_checkpoints(r / "checkpoints")[-1] for r in (straight, half))
    assert ca.name == cb.name == "step_00000004"
    wa, wb = _weights(ca), _weights(cb)
    for net in ckpt_io.WEIGHT_FILES:
        assert wa[net].keys() == wb[net].keys()
        for k in wa[net]:
            assert torch.equal(wa[net][k], wb[net][k]), f"{net}.{k} differs after resume"
    sa, sb = ckpt_io.load_state(ca), ckpt_io.load_state(cb)
    assert torch.equal(sa["rng_latents"][0], sb["rng_latents"][0])
    assert sa["sampler"]["position"] == sb["sampler"]["position"]
    # metrics.jsonl continues where the first half stopped
    assert len((half / "metrics.jsonl").read_text().splitlines()) == 4


def _eval_log(run):
    """``(step, record)`` of every eval record of the training and ``(step, loss_D, loss_G)``
    of every other record of ``run``'s log, in file order (timings and `gankit eval` records
    left out)."""
    return [
        (r["step"], r["eval"]) if "eval" in r else (r["step"], r["loss_D"], r["loss_G"])
        for r in RunDir(run).read_metrics()
        if r.get("source") != "gankit eval"
    ]


@pytest.mark.parametrize("best_written", [False, True])
def test_resume_evaluates_the_eval_step_a_kill_left_unlogged(tmp_path, best_written):
    """A kill between step 2's checkpoint and its eval's record (before or after the eval
    wrote ``checkpoints/best``, which comes first) leaves that checkpoint without the record;
    the resumed run evaluates step 2 before going on, so its log and ``best`` equal the
    uninterrupted run's."""
    data = tiny_data(tmp_path / "d.npz", n=60)  # the classifier of cfid holds out 12
    evals = ("eval.every=2", "eval.n=12", "eval.metrics=cfid,swd", "train.keep_last=0")
    straight = train(tiny_cfg(data, *evals), tmp_path / "a", quiet=True)
    killed = train(tiny_cfg(data, *evals, "train.steps=2"), tmp_path / "b", quiet=True)
    log = killed / "metrics.jsonl"  # as the kill left it (state.pt is from before the eval)
    log.write_text("".join(line for line in log.open() if '"eval"' not in line))
    with log.open("a") as f:  # and a `gankit eval` of that step since: not the eval it owes
        f.write(json.dumps({"step": 2, "eval": {"swd": 1.0}, "source": "gankit eval"}) + "\n")
    if not best_written:
        shutil.rmtree(killed / "checkpoints" / "best")
    resume(killed, steps=4, quiet=True)
    assert _eval_log(killed) == _eval_log(straight)
    assert [r[0] for r in _eval_log(killed) if len(r) == 2] == [2, 4]
    best_a, best_b = (ckpt_io.load_state(r / "checkpoints" / "best") for r in (straight, killed))
    assert best_a["best"] == best_b["best"] and best_a["step"] == best_b["step"]
    wa, wb = (ckpt_io.load_weights(r / "checkpoints" / "best", "G_ema") for r in (straight, killed))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # killed in the last step's eval: resuming at that step adds it, then there is nothing left
    log.write_text("".join(line for line in log.open() if '"step": 4, "eval"' not in line))
    assert [r[0] for r in _eval_log(killed) if len(r) == 2] == [2]
    resume(killed, quiet=True)
    assert _eval_log(killed) == _eval_log(straight)
    with pytest.raises(ParameterError, match="already at step 4"):
        resume(killed, quiet=True)


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "d.npz")
    run = train(tiny_cfg(data, "train.steps=2"), tmp_path / "r", quiet=True)
    root = run / "checkpoints"
    before = ckpt_io.list_checkpoints(root)
    assert [c.name for c in before] == ["step_00000002"]

    calls = {"n": 0}
    real_save = torch.save

    def crash(*args, **kwargs):  # the weights are written, then state.pt fails
        calls["n"] += 1
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_io.torch, "save", crash)
    with pytest.raises(ckpt_io.CheckpointWriteError, match="No space left on device"):
        resume(run, steps=4, quiet=True)
    monkeypatch.setattr(ckpt_io.torch, "save", real_save)
    assert calls["n"] == 1
    after = ckpt_io.list_checkpoints(root)
    assert [c.name for c in after] == ["step_00000002"]
    assert find_checkpoint(run) == before[0]
    assert not list(root.glob(".tmp-*"))  # the failed temp dir was removed
    # a half-written dir (simulated hard kill) is never taken as latest
    half = root / "step_00000099"
    half.mkdir()
    (half / "G.safetensors").write_bytes(b"partial")
    assert find_checkpoint(run) == before[0]
    _weights(before[0])  # still loadable
    resume(run, steps=4, quiet=True)  # and resumable
    assert (root / "step_00000004").is_dir()


def test_keep_last_and_state_is_weights_only(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    run = train(
        tiny_cfg(data, "train.steps=6", "train.snapshot_every=1", "train.keep_last=2"),
        tmp_path / "r",
        quiet=True,
    )
    names = [c.name for c in ckpt_io.list_checkpoints(run / "checkpoints")]
    assert names == ["step_00000005", "step_00000006"]
    state = torch.load(run / "checkpoints" / names[-1] / "state.pt", weights_only=True)
    assert state["step"] == 6 and state["config"]["model"]["G_ch"] == 8


def test_resume_with_different_model_config_names_keys(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    run = train(
        tiny_cfg(data, "train.steps=1", "train.snapshot_every=1"), tmp_path / "r", quiet=True
    )
    cfg = load_toml(run / "config.toml")
    cfg.model.G_ch, cfg.model.dim_z = 16, 4
    save_toml(cfg, run / "config.toml")
    with pytest.raises(GankitError, match=r"model\.G_ch, model\.dim_z"):
        resume(run, steps=2, quiet=True)


def test_resume_missing_run_dir(tmp_path):
    with pytest.raises(GankitError, match="not a run directory"):
        resume(tmp_path / "nope")


def test_resume_of_a_run_that_never_wrote_a_checkpoint_says_how_to_restart(tmp_path):
    """E.g. a train that failed at its first checkpoint (disk full) kept its config.toml."""
    run = tmp_path / "run"
    run.mkdir()
    save_toml(Config(), run / "config.toml")
    with pytest.raises(GankitError, match=rf"starts again with `gankit train --out {run}`"):
        resume(run)


def _save(root, name, value):
    w = {"w": torch.full((2,), float(value))}
    weights = {k: w for k in ckpt_io.WEIGHT_FILES}
    return ckpt_io.save_checkpoint(root, name, weights, {"step": value}, Config())


def _rename_crashing_on_new(monkeypatch, crash):
    """Path.rename that calls ``crash()`` when the new temp dir is renamed into place."""
    real = ckpt_io.Path.rename

    def rename(self, target):
        if self.name.startswith(".tmp-") and not self.name.startswith(".tmp-old-"):
            crash()
        return real(self, target)

    monkeypatch.setattr(ckpt_io.Path, "rename", rename)


def test_kill_between_replace_renames_keeps_old_copy(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    _save(root, "best", 1)
    _save(root, "step_00000001", 1)
    _rename_crashing_on_new(monkeypatch, lambda: os._exit(0))
    for name in ("best", "step_00000001"):
        pid = os.fork()  # the writer is killed after moving the old copy aside
        if pid == 0:
            try:
                _save(root, name, 2)
            finally:
                os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0
        assert not (root / name).exists()
        assert (root / f".tmp-old-{name}-{pid}").is_dir()
    monkeypatch.undo()
    # listing restores the orphaned step; the next save restores "best" instead of deleting it
    assert [c.name for c in ckpt_io.list_checkpoints(root)] == ["step_00000001"]
    _save(root, "step_00000002", 3)
    assert ckpt_io.load_state(root / "best")["step"] == 1
    assert ckpt_io.load_state(root / "step_00000001")["step"] == 1
    assert not list(root.glob(".tmp-*"))
    _save(root, "best", 4)
    assert ckpt_io.load_state(root / "best")["step"] == 4


def test_failed_replace_puts_old_checkpoint_back(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    _save(root, "best", 1)

    def fail():
        raise OSError(5, "I/O error")

    _rename_crashing_on_new(monkeypatch, fail)
    with pytest.raises(ckpt_io.CheckpointWriteError, match="I/O error"):
        _save(root, "best", 2)
    monkeypatch.undo()
    assert ckpt_io.load_state(root / "best")["step"] == 1
    assert not list(root.glob(".tmp-*"))


def test_resume_a_run_written_with_attn_pool(tmp_path):
    """Runs written before model.attn_type stored model.attn_pool; they still resume."""
    data = tiny_data(tmp_path / "d.npz")
    run = train(tiny_cfg(data, "train.steps=2"), tmp_path / "r", quiet=True)
    toml = run / "config.toml"
    toml.write_text(toml.read_text().replace('attn_type = "auto"', "attn_pool = true"))
    ckpt = ckpt_io.list_checkpoints(run / "checkpoints")[-1]
    state = ckpt_io.load_state(ckpt)
    del state["config"]["model"]["attn_type"]
    state["config"]["model"]["attn_pool"] = True
    torch.save(state, ckpt / ckpt_io.STATE_FILE)
    resume(run, steps=3, quiet=True)
    assert ckpt_io.list_checkpoints(run / "checkpoints")[-1].name == "step_00000003"


def test_disk_full_mid_run_stops_with_one_line_and_resume_continues(tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the step-4 checkpoint: `gankit train` exits 2 with one line naming the
    checkpoint path and the cause; step 2 stays loadable and `gankit resume` finishes the run."""
    data = tiny_data(tmp_path / "d.npz")
    run = tmp_path / "r"
    real_save = ckpt_io.save_file

    def disk_full_at_step_4(tensors, path):
        if "step_00000004" in path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        real_save(tensors, path)

    monkeypatch.setattr(ckpt_io, "save_file", disk_full_at_step_4)
    sets = [a for o in TINY for a in ("--set", o)]
    args = ["train", "--data", str(data), "--out", str(run), "--quiet", *sets]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device" in err
    assert str(run / "checkpoints" / "step_00000004") in err
    ckpts = ckpt_io.list_checkpoints(run / "checkpoints")
    assert [c.name for c in ckpts] == ["step_00000002"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert ckpt_io.load_state(ckpts[0])["step"] == 2 and _weights(ckpts[0])
    monkeypatch.setattr(ckpt_io, "save_file", real_save)
    assert main(["resume", str(run), "--quiet"]) == 0
    assert ckpt_io.list_checkpoints(run / "checkpoints")[-1].name == "step_00000004"


def _fake_checkpoint(root, name, files=ckpt_io.CHECKPOINT_FILES):
    ckpt = root / name
    ckpt.mkdir(parents=True)
    for f in files:
        (ckpt / f).write_bytes(b"x")
    return ckpt


def test_prune_removes_half_deleted_checkpoints_older_than_the_kept_ones(tmp_path, monkeypatch):
    """A kill in the middle of a prune leaves an incomplete ``step_*`` directory that the
    listing ignores; the next prune removes it with the other old ones, and deletes by first
    renaming each directory to a temp name (which the next save removes)."""
    root = tmp_path / "checkpoints"
    half = _fake_checkpoint(root, "step_00000001", ckpt_io.CHECKPOINT_FILES[1:])
    for step in (2, 3, 4):
        _fake_checkpoint(root, ckpt_io.step_dir_name(step))
    _fake_checkpoint(root, "step_00000005", ckpt_io.CHECKPOINT_FILES[:2])  # newer, incomplete
    removed = []
    real_rmtree = ckpt_io.shutil.rmtree
    monkeypatch.setattr(ckpt_io.shutil, "rmtree", lambda p, **kw: removed.append(p.name))
    ckpt_io.prune_checkpoints(root, keep_last=2)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == [
        "step_00000003", "step_00000004", "step_00000005",
    ]  # fmt: skip
    pid = os.getpid()
    assert removed == [f".tmp-pruned-step_0000000{i}-{pid}" for i in (1, 2)]
    assert not half.exists() and len(list(root.glob(".tmp-pruned-*"))) == 2  # "killed" here
    monkeypatch.setattr(ckpt_io.shutil, "rmtree", real_rmtree)
    _save(root, "step_00000006", 6)  # the next save clears the leftovers
    assert not list(root.glob(".tmp-*"))


def test_best_moved_aside_by_a_killed_replace_is_found_by_readers(tmp_path):
    """``best`` exists only as ``.tmp-old-best-<pid>`` when its writer died between the two
    renames of a replace: ``RunDir.best_checkpoint`` and ``find_checkpoint`` put it back."""
    from gankit.run import RunDir

    root = tmp_path / "run" / "checkpoints"
    _save(root, "best", 7)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a pid that is no longer running
    (root / "best").rename(root / f".tmp-old-best-{dead}")
    assert find_checkpoint(root / "best") == root / "best"
    (root / "best").rename(root / f".tmp-old-best-{dead}")
    assert RunDir(tmp_path / "run").best_checkpoint() == root / "best"
    assert ckpt_io.load_state(root / "best")["step"] == 7


def test_find_checkpoint_names_the_missing_files_of_an_incomplete_checkpoint(tmp_path):
    ckpt = _fake_checkpoint(
        tmp_path, "step_00000003", ckpt_io.CHECKPOINT_FILES[:1] + ckpt_io.CHECKPOINT_FILES[2:]
    )
    with pytest.raises(GankitError, match=r"incomplete checkpoint directory \(no D.safetensors\)$"):
        find_checkpoint(ckpt)
    run = tmp_path / "run"  # a run directory with only its config is not a checkpoint
    run.mkdir()
    save_toml(Config(), run / "config.toml")
    with pytest.raises(GankitError, match="expected a run directory with checkpoints"):
        find_checkpoint(run)
    files = [f for f in ckpt_io.CHECKPOINT_FILES if f != "G_ema.safetensors"]
    _fake_checkpoint(run / "checkpoints", "step_00000002", files)  # e.g. a disk filled up
    with pytest.raises(
        GankitError,
        match=r"run: no complete checkpoint; the newest, step_00000002, has no G_ema.safetensors$",
    ):
        find_checkpoint(run)


def test_config_write_is_atomic(tmp_path, monkeypatch):
    """A write of ``config.toml`` that fails (or is killed) before it completes leaves the
    previous file whole, and no temp file."""
    path = tmp_path / "config.toml"
    save_toml(Config(), path)
    before = path.read_bytes()
    cfg = Config()
    cfg.train.steps = 123

    def fail(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="I/O error"):
        save_toml(cfg, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]
    save_toml(cfg, path)
    assert load_toml(path).train.steps == 123


def test_resume_logs_each_step_once(tmp_path):
    """Records logged after the last checkpoint by a killed process are dropped when the run
    resumes from that checkpoint, so each step appears once (as in an uninterrupted run)."""
    data = tiny_data(tmp_path / "d.npz")
    run = train(
        tiny_cfg(data, "train.steps=4", "train.snapshot_every=2"), tmp_path / "r", quiet=True
    )
    root = run / "checkpoints"
    ckpt_io.shutil.rmtree(root / "step_00000004")  # as if killed after logging steps 3 and 4
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "warning": "x"}\n{"step": 5, "loss')  # and mid-line
    resume(run, steps=4, quiet=True)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A tiny run of 4 steps with checkpoints at steps 2 and 4 (copied by the tests below)."""
    tmp = tmp_path_factory.mktemp("straight")
    with single_thread():
        return train(tiny_cfg(tiny_data(tmp / "d.npz"), "train.keep_last=0"), tmp / "r", quiet=True)


def _copy(run, dest):
    ckpt_io.shutil.copytree(run, dest)
    return dest


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(straight, tmp_path, capsys):
    """A truncated weight file in the newest checkpoint: resume warns in one line, renames it
    aside and continues exactly from the one before (bitwise equal to the run that never
    stopped)."""
    run = _copy(straight, tmp_path / "r")
    step2, step4 = ckpt_io.list_checkpoints(run / "checkpoints")
    damaged = step4 / "G.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    resume(run, steps=4, quiet=True)
    err = capsys.readouterr().err
    assert err == (
        f"gankit: warning: 1 newer checkpoint(s) cannot be loaded ({damaged}: damaged or "
        f"unreadable checkpoint file (invalid header length)); resuming from {step2} (the "
        "damaged ones are kept as damaged-step_* beside it)\n"
    )
    # set aside, so that pruning never keeps it as the newest in place of intact ones
    kept = run / "checkpoints" / "damaged-step_00000004" / "G.safetensors"
    assert len(kept.read_bytes()) == 1000 and ckpt_io.is_complete(step4)
    want, got = _weights(straight / "checkpoints" / step4.name), _weights(step4)
    for net in ckpt_io.WEIGHT_FILES:
        for k in want[net]:
            assert torch.equal(want[net][k], got[net][k]), f"{net}.{k} differs after resume"


def test_resume_warns_about_a_newer_checkpoint_that_lost_a_file(straight, tmp_path, capsys):
    """A file deleted from the newest checkpoint (a writer only renames complete ones into
    place): resume says so in its one-line warning, like a damaged file, and sets it aside."""
    run = _copy(straight, tmp_path / "r")
    step2, step4 = ckpt_io.list_checkpoints(run / "checkpoints")
    (step4 / "G_ema.safetensors").unlink()
    resume(run, steps=4, quiet=True)
    assert capsys.readouterr().err == (
        f"gankit: warning: 1 newer checkpoint(s) cannot be loaded ({step4}: incomplete "
        f"checkpoint (no G_ema.safetensors)); resuming from {step2} (the damaged ones are kept "
        "as damaged-step_* beside it)\n"
    )
    assert (run / "checkpoints" / "damaged-step_00000004" / "G.safetensors").is_file()
    assert ckpt_io.is_complete(step4)


def test_resume_with_no_checkpoint_that_loads_is_one_line(straight, tmp_path, capsys):
    run = _copy(straight, tmp_path / "r")
    step2, step4 = ckpt_io.list_checkpoints(run / "checkpoints")
    (step4 / "state.pt").write_bytes(b"")
    (step2 / "D.safetensors").write_bytes(b"garbage!" * 10)
    assert main(["resume", str(run), "--steps", "6"]) == 2
    assert capsys.readouterr().err == (
        f"gankit: error: {run / 'checkpoints'}: none of the 2 checkpoint(s) can be loaded "
        f"(newest: {step4 / 'state.pt'}: damaged or unreadable checkpoint file (empty file))\n"
    )


def test_resume_with_weights_of_another_model_names_the_file(straight, tmp_path):
    """The message names the config the trainer's model came from (the run's), which the
    weights do not fit, even when the checkpoint's own config.toml was replaced with theirs."""
    run = _copy(straight, tmp_path / "r")
    ckpt = ckpt_io.list_checkpoints(run / "checkpoints")[-1]
    other_cfg = tiny_cfg(tmp_path, "model.D_ch=16")
    ckpt_io.save_file(
        build(other_cfg.model, init=False)[1].state_dict(), str(ckpt / "D.safetensors")
    )
    save_toml(other_cfg, ckpt / "config.toml")
    want = (
        rf"^{re.escape(str(ckpt / 'D.safetensors'))}: weights do not match the model of "
        rf"{re.escape(str(run / 'config.toml'))} \(shape: \S+ \(1, 64\) in the file, \(1, 32\) "
        r"in the model, .*, \.\.\. \(\d+ in all\)\)$"
    )
    with pytest.raises(GankitError, match=want):
        resume(run, steps=6, quiet=True)


@pytest.mark.parametrize("steps", ["10", 2.5, True, 0, -3])
def test_resume_steps_must_be_a_positive_int(straight, steps):
    with pytest.raises(
        ParameterError, match=rf"^steps: expected an integer in 1\.\.10\*\*9 .*got {steps!r}"
    ):
        resume(straight, steps=steps)


def test_init_from_a_damaged_checkpoint_names_the_file(straight, tmp_path):
    source = _copy(straight, tmp_path / "src")
    ckpt = ckpt_io.list_checkpoints(source / "checkpoints")[-1]
    (ckpt / "G_ema.safetensors").write_bytes(b"")
    cfg = tiny_cfg(tiny_data(tmp_path / "d.npz"), f"train.init_from={source}")
    with pytest.raises(
        ckpt_io.CheckpointReadError,
        match=rf"^{re.escape(str(ckpt / 'G_ema.safetensors'))}: damaged .* \(empty file\)$",
    ):
        train(cfg, tmp_path / "new", quiet=True)


def test_resume_of_a_read_only_run_says_what_to_do(straight, tmp_path, monkeypatch, capsys):
    run = _copy(straight, tmp_path / "r")

    def read_only(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("gankit.run.tempfile.TemporaryFile", read_only)
    assert main(["resume", str(run), "--steps", "6"]) == 2
    assert capsys.readouterr().err == (
        f"gankit: error: run dir {run}: cannot create or write it (Permission denied); make it "
        "writable to continue it\n"
    )


_FSIZE_WRITER = """
import resource, sys, torch
from gankit import checkpoint as ckpt_io
from gankit.config import Config
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))  # files of 64 KiB at most
big = {"w": torch.zeros(1 << 16)}  # 256 KiB
weights = {"G": {"w": torch.zeros(4)}, "D": {"w": torch.zeros(4)}, "G_ema": {"w": torch.zeros(4)}}
ckpt_io.save_checkpoint(sys.argv[1], "step_00000001", weights, {"step": 1}, Config())
which = sys.argv[2]
if which == "state":
    state = {"step": 2, "blob": torch.zeros(1 << 16)}
else:
    weights[which], state = big, {"step": 2}
try:
    ckpt_io.save_checkpoint(sys.argv[1], "step_00000002", weights, state, Config())
except ckpt_io.CheckpointWriteError as err:
    print(err)
"""


@pytest.mark.parametrize("which", ["G", "state"])
def test_a_real_file_size_limit_is_the_one_line_write_error(tmp_path, which):
    """A write the OS refuses (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) inside
    safetensors' or torch.save's own writer, which report it as their own exception types,
    is the documented one-line CheckpointWriteError; the earlier checkpoint stays, no temp."""
    root = tmp_path / "checkpoints"
    out = subprocess.run(
        [sys.executable, "-c", _FSIZE_WRITER, str(root), which],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    line = out.stdout.strip()
    assert "\n" not in line and line.startswith(f"checkpoint {root / 'step_00000002'} could not")
    assert "make room or fix the directory" in line
    assert [c.name for c in ckpt_io.list_checkpoints(root)] == ["step_00000001"]
    assert not list(root.glob(".tmp-*"))


def test_weight_files_get_the_usual_file_mode(tmp_path):
    """safetensors creates its files 0600; a checkpoint's weights are as readable as its
    config.toml (what ``open`` gives under the umask)."""
    weights = {k: {"w": torch.zeros(2)} for k in ckpt_io.WEIGHT_FILES}
    ckpt = ckpt_io.save_checkpoint(tmp_path, "step_00000001", weights, {"step": 1}, Config())
    modes = {p.name: p.stat().st_mode & 0o777 for p in ckpt.iterdir()}
    assert len(set(modes.values())) == 1, modes


def _edit_state(ckpt, edit):
    path = ckpt / "state.pt"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)
    return path


def _moments_of_another_shape(state):
    for moments in state["opt_G"]["state"].values():
        moments["exp_avg"] = moments["exp_avg_sq"] = torch.zeros(2, 2)


STATE_EDITS = {
    "step -5": (lambda s: s.update(step=-5), "'step' is -5; expected 4"),
    "step of another folder": (lambda s: s.update(step=2), "'step' is 2; expected 4"),
    "step a string": (lambda s: s.update(step="4"), "'step' is '4'; expected 4"),
    "sampler empty": (lambda s: s.update(sampler={}), "'sampler' is not the data order"),
    "sampler past its epoch": (
        lambda s: s["sampler"].update(position=10**9),
        "'sampler' is not the data order",
    ),
    "opt_G empty": (lambda s: s.update(opt_G={}), "'opt_G' is not an optimizer state dict"),
    "rng_torch floats": (
        lambda s: s.update(rng_torch=torch.zeros(5)),
        "'rng_torch' is not a uint8 RNG state",
    ),
    "rng_latents empty": (lambda s: s.update(rng_latents=[]), "'rng_latents' is not a list"),
    "collapse strings": (
        lambda s: s.update(collapse={"loss_G": ["x"]}),
        "'collapse' is not lists of numbers",
    ),
    "lecam vector": (
        lambda s: s.update(lecam={"real": torch.zeros(4), "fake": torch.zeros(1), "count": 0}),
        "'lecam' is not the LeCam anchors",
    ),
}


@pytest.mark.parametrize("case", STATE_EDITS, ids=list(STATE_EDITS))
def test_a_state_entry_that_cannot_be_restored_counts_as_damaged(straight, tmp_path, case, capsys):
    """Each entry of state.pt is checked before anything is restored: a bad one makes the
    checkpoint damaged (resume warns, naming state.pt and the entry, and continues from the
    one before), never a traceback or a run that silently continues from a wrong state."""
    edit, why = STATE_EDITS[case]
    run = _copy(straight, tmp_path / "r")
    step2, step4 = ckpt_io.list_checkpoints(run / "checkpoints")
    path = _edit_state(step4, edit)
    resume(run, steps=4, quiet=True)
    err = capsys.readouterr().err
    assert f"({path}: damaged or unreadable checkpoint file ({why}" in err
    assert f"resuming from {step2}" in err and err.count("\n") == 1


def test_moments_of_another_shape_are_one_line_not_a_crash(straight, tmp_path, capsys):
    """Adam moments whose shapes differ from the parameters' (torch does not check them, and
    its fused Adam then reads out of bounds): one line naming state.pt, the entry and shapes."""
    run = _copy(straight, tmp_path / "r")
    path = _edit_state(ckpt_io.list_checkpoints(run / "checkpoints")[-1], _moments_of_another_shape)
    with pytest.raises(ckpt_io.CheckpointReadError) as err:
        resume(run, steps=6, quiet=True)
    msg = str(err.value)
    assert msg.startswith(f"{path}: damaged or unreadable checkpoint file ('opt_G' does not fit")
    assert "exp_avg" in msg and "(2, 2)" in msg and "\n" not in msg


def test_resume_refuses_a_run_config_cut_short(straight, tmp_path):
    """config.toml cut at a line boundary still parses, and the keys after the cut would
    silently become defaults (e.g. another learning rate): resume names them instead, and
    the file is left as it was."""
    run = _copy(straight, tmp_path / "r")
    path = run / "config.toml"
    text = path.read_text()
    cut = text[: text.index("lr_G")]
    path.write_text(cut)
    with pytest.raises(GankitError) as err:
        resume(run, steps=6, quiet=True)
    msg = str(err.value)
    assert msg.startswith(f"{path}: no train.lr_G, ") and "(cut short?); restore it" in msg
    assert path.read_text() == cut


def test_a_stray_file_named_like_a_checkpoint_is_replaced_cleanly(tmp_path):
    """A file (not a folder) named step_N where a checkpoint is written: the checkpoint is
    written, the file removed, and no error claims the write failed."""
    (tmp_path / "step_00000001").write_text("x")
    ckpt = _save(tmp_path, "step_00000001", 1)
    assert ckpt_io.is_complete(ckpt) and not list(tmp_path.glob(".tmp-*"))


def test_resume_falls_back_past_non_finite_weights(straight, tmp_path, capsys):
    """NaN inside a weight file's data (its header intact) is damage like any other: resume
    warns, sets the checkpoint aside and continues from the one before."""
    run = _copy(straight, tmp_path / "r")
    step2, step4 = ckpt_io.list_checkpoints(run / "checkpoints")
    weights = ckpt_io.load_weights(step4, "G")
    name = next(k for k, t in weights.items() if t.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    ckpt_io.save_file(weights, str(step4 / "G.safetensors"))
    resume(run, steps=4, quiet=True)
    err = capsys.readouterr().err
    assert f"non-finite values in {name}" in err and f"resuming from {step2}" in err


def test_a_legacy_key_of_the_saved_config_is_not_missing(straight, tmp_path):
    """A checkpoint written before ``model.attn_pool`` became ``model.attn_type`` beside a
    config.toml already rewritten in the new form: not a file cut short."""
    run = _copy(straight, tmp_path / "r")
    step4 = ckpt_io.list_checkpoints(run / "checkpoints")[-1]
    _edit_state(step4, lambda s: s["config"]["model"].update(attn_pool=True))
    with pytest.raises(GankitError, match="already at step 4"):  # got past the config checks
        resume(run, steps=4, quiet=True)
