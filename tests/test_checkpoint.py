"""Checkpoints: atomic writes under a simulated crash, keep-last-K, exact resume."""

from __future__ import annotations

import pytest
import torch
from training_fixtures import tiny_cfg, tiny_data

from gankit.config import load_toml, save_toml
from gankit.errors import GankitError
from gankit.training import checkpoint as ckpt_io
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
    with pytest.raises(OSError):
        resume(run, steps=4, quiet=True)
    monkeypatch.setattr(ckpt_io.torch, "save", real_save)
    assert calls["n"] == 1
    after = ckpt_io.list_checkpoints(root)
    assert [c.name for c in after] == ["step_00000002"]
    assert ckpt_io.find_checkpoint(run) == before[0]
    assert not list(root.glob(".tmp-*"))  # the failed temp dir was removed
    # a half-written dir (simulated hard kill) is never taken as latest
    half = root / "step_00000099"
    half.mkdir()
    (half / "G.safetensors").write_bytes(b"partial")
    assert ckpt_io.find_checkpoint(run) == before[0]
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
