"""Training hooks: the loop calls them; collapse rollback reads health from meta.json."""

from __future__ import annotations

import json

import pytest
import torch
from training_fixtures import tiny_cfg, tiny_data

from gankit import checkpoint as ckpt_io
from gankit.run import RunDir
from gankit.training import hooks as hooks_mod
from gankit.training import state as state_mod
from gankit.training.hooks import CollapseRollback, grid_latents
from gankit.training.loop import Hook, Trainer
from gankit.training.monitor import Monitor

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def on_start(self, trainer):
        self.calls.append(("start", trainer.step))

    def on_log(self, trainer, record):
        self.calls.append(("log", record["step"]))
        record["extra"] = 1.0

    def on_snapshot(self, trainer, G):
        assert G is trainer.sampling_G and not G.training
        self.calls.append(("snapshot", trainer.step))

    def on_step(self, trainer):
        self.calls.append(("step", trainer.step))


def test_loop_calls_hooks_in_order(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    cfg = tiny_cfg(data, "train.steps=2", "train.log_every=2", "train.snapshot_every=2")
    rec = Recorder()
    trainer = Trainer(cfg, RunDir.create(tmp_path / "run").path, hooks=[rec], quiet=True)
    trainer.fit(2)
    assert rec.calls == [("start", 0), ("step", 1), ("log", 2), ("snapshot", 2), ("step", 2)]
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["extra"] == 1.0 and not any(k.startswith("sigma") for k in record)
    assert not (tmp_path / "run" / "samples").exists()  # no SnapshotGrid hook given


def test_grid_latents_rows_per_class(tmp_path):
    cfg = tiny_cfg(tmp_path, "model.n_classes=40")
    z, y = grid_latents(cfg, torch.device("cpu"))
    assert z.shape == (16 * 8, 8) and y.tolist()[:8] == [0] * 8 and y[-1] == 39


def test_rollback_reads_health_from_meta_not_state(tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "d.npz")
    cfg = tiny_cfg(data, "train.keep_last=0", "train.snapshot_every=2")
    trainer = Trainer(cfg, RunDir.create(tmp_path / "run").path, quiet=True)
    trainer.fit(6)
    ckpts = trainer.run.list_checkpoints()
    assert [ckpt_io.load_meta(c) for c in ckpts] == [
        {"step": s, "healthy": True} for s in (2, 4, 6)
    ]
    (ckpts[1] / ckpt_io.META_FILE).write_text(json.dumps({"step": 4, "healthy": False}))
    loads = []
    real = ckpt_io.load_state

    def counting(ckpt):
        loads.append(ckpt.name)
        return real(ckpt)

    monkeypatch.setattr(ckpt_io, "load_state", counting)
    monkeypatch.setattr(hooks_mod.ckpt_io, "load_state", counting)
    monkeypatch.setattr(state_mod.ckpt_io, "load_state", counting)
    trainer.monitor = Monitor(trainer.run, 6, 6, quiet=True)  # fit closed its own
    CollapseRollback().on_collapse(trainer, ["loss spike"])
    trainer.monitor.close()
    assert loads == ["step_00000002"]  # only the checkpoint restored, never to read a flag
    assert trainer.step == 2 and trainer.rollbacks == 1
    record = trainer.run.read_metrics()[-1]  # numbered, which inspect reads
    assert record["step"] == 6 and record["rollback"] == 1
    assert record["warning"].startswith("rolled back to ")
