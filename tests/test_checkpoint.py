"""Checkpoints: atomic writes under a simulated crash, keep-last-K, exact resume."""

from __future__ import annotations

import errno
import os

import pytest
import torch
from training_fixtures import TINY, tiny_cfg, tiny_data

from gankit import checkpoint as ckpt_io
from gankit.cli import main
from gankit.config import Config, load_toml, save_toml
from gankit.errors import GankitError
from gankit.run import find_checkpoint
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
