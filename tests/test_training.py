"""Training loop: EMA, standing statistics, NaN stop, bad inputs, accumulation, aux term."""

from __future__ import annotations

import json
import multiprocessing
import os
import re

import numpy as np
import pytest
import torch
from torch import nn
from training_fixtures import tiny_cfg, tiny_data

from gankit import checkpoint as ckpt_io
from gankit.data import ImageDataset
from gankit.errors import GankitError, ParameterError
from gankit.run import RunDir
from gankit.training import default_hooks, resume, train
from gankit.training.ema import EMA, standing_stats
from gankit.training.loop import Trainer
from gankit.training.loss_meter import TrainingDivergedError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ema_update_matches_formula():
    G = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(G, decay=0.9, start=2)
    theta0 = [p.detach().clone() for p in G.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
        G[1].running_mean.fill_(5.0)
    ema.update(G, step=1)  # before start: plain copy
    for pe, p in zip(ema.module.parameters(), G.parameters()):
        assert torch.equal(pe, p)
    prev = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(2.0)
    ema.update(G, step=2)
    for pe, pv, p in zip(ema.module.parameters(), prev, G.parameters()):
        torch.testing.assert_close(pe, 0.9 * pv + 0.1 * p, rtol=0, atol=1e-6)
    assert torch.equal(ema.module[1].running_mean, G[1].running_mean)  # buffers copied
    assert not any(torch.equal(a, b) for a, b in zip(theta0, ema.module.parameters()))


def test_standing_stats_is_plain_average_of_batch_stats():
    bn = nn.BatchNorm2d(2, momentum=0.1)
    G = nn.Sequential(bn)
    batches = [torch.randn(4, 2, 3, 3) * (i + 1) + i for i in range(3)]
    it = iter(batches)
    standing_stats(G, 3, lambda: (next(it),))
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.1 and not bn.training


def test_train_writes_run_layout_and_metrics(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    run = train(
        tiny_cfg(data, "train.standing_stats=2", "train.ortho_reg=1e-4"), tmp_path / "r", quiet=True
    )
    for name in ("config.toml", "metrics.jsonl", "samples/step_00000004.png", "tb"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    keys = set(records[0])
    assert {"loss_D", "loss_G", "D_real", "D_fake", "lr_G", "lr_D", "img_per_s"} <= keys
    assert any(k.startswith("sigma2/G/") for k in keys) and any(
        k.startswith("sigma0/D/") for k in keys
    )
    assert records[0]["lr_D"] == 4e-4 and records[0]["lr_G"] == 1e-4


def test_train_iteration_returns_detached_scalar_tensors(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    trainer = Trainer(tiny_cfg(data, "train.n_D=1", "train.accumulate=2"), None, quiet=True)
    out = trainer.train_iteration()
    assert set(out) == {"loss_D", "loss_G", "D_real", "D_fake"}
    assert all(
        isinstance(v, torch.Tensor) and v.shape == () and not v.requires_grad for v in out.values()
    )
    assert trainer.step == 1
    assert float(out["loss_D"]) >= 0.0  # the hinge D loss is a sum of relus


def test_gradients_are_freed_after_each_optimizer_step(tmp_path):
    """D's gradients are gone before G's backward (the step's memory peak), G's after its step;
    the weights still follow the optimizers."""
    data = tiny_data(tmp_path / "d.npz")
    trainer = Trainer(tiny_cfg(data), None, quiet=True)
    d_grads_in_G_backward = []
    first_G = next(trainer.G.parameters())
    first_G.register_hook(
        lambda g: d_grads_in_G_backward.append([p.grad is not None for p in trainer.D.parameters()])
    )
    before = [p.detach().clone() for p in (*trainer.G.parameters(), *trainer.D.parameters())]
    trainer.train_iteration()
    assert d_grads_in_G_backward == [[False] * len(list(trainer.D.parameters()))]
    params = [*trainer.G.parameters(), *trainer.D.parameters()]
    assert all(p.grad is None for p in params)
    assert not torch.equal(before[0], params[0]) and not torch.equal(before[-1], params[-1])


def test_nan_stops_with_clear_message_and_keeps_checkpoint(tmp_path, monkeypatch):
    data = tiny_data(tmp_path / "d.npz")
    cfg = tiny_cfg(data, "train.steps=4", "train.log_every=2")
    import gankit.training.loop as loop

    real = loop.g_loss

    def nan_after_two(name, logits, real_logits=None, calls=[0]):  # noqa: B006
        calls[0] += 1
        return real(name, logits, real_logits) * (float("nan") if calls[0] > 2 else 1.0)

    monkeypatch.setattr(loop, "g_loss", nan_after_two)
    with pytest.raises(TrainingDivergedError, match=r"NaN/Inf at or before step 4.*step_00000002"):
        train(cfg, tmp_path / "r", quiet=True)
    ckpts = ckpt_io.list_checkpoints(tmp_path / "r" / "checkpoints")
    assert [c.name for c in ckpts] == ["step_00000002"]
    for w in ckpt_io.WEIGHT_FILES:
        assert all(torch.isfinite(t).all() for t in ckpt_io.load_weights(ckpts[0], w).values())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_run_dir(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(GankitError, match="cannot create or write"):
            train(tiny_cfg(data), locked / "run", quiet=True)
    finally:
        locked.chmod(0o700)


def test_run_dir_is_a_file(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "run"):
        with pytest.raises(
            ParameterError,
            match=f"^out_dir: expected a directory for the run, but {re.escape(str(tmp_path))}"
            "/f is not a directory$",
        ):
            train(tiny_cfg(data), out, quiet=True)


def test_train_and_resume_check_out_dir_and_quiet(tmp_path):
    """The library names its own parameters (``out_dir``, not the CLI's ``--out``); a string
    ``quiet`` is refused rather than taken as true."""
    cfg = tiny_cfg(tmp_path / "d.npz")
    with pytest.raises(
        ParameterError, match="^out_dir: expected a run directory path, got NoneType$"
    ):
        train(cfg, None)
    with pytest.raises(ParameterError, match="^quiet: expected True or False, got 'no'$"):
        train(cfg, tmp_path / "r", quiet="no")
    with pytest.raises(ParameterError, match="^quiet: expected True or False, got 'x'$"):
        resume(tmp_path, quiet="x")
    with pytest.raises(ParameterError, match=r"^steps: expected an integer in 1\.\.10\*\*9 "):
        resume(tmp_path, steps=10**20)  # named as the argument, not as the config key
    assert not (tmp_path / "r").exists()


def _probe_many(path) -> None:
    for _ in range(300):
        RunDir(path).ensure_writable()


def test_write_probe_is_safe_across_processes(tmp_path):
    """The ranks of a DDP run check the same run directory at once: no probe may trip another."""
    procs = [multiprocessing.get_context("fork").Process(target=_probe_many, args=(tmp_path,))
             for _ in range(4)]  # fmt: skip
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 4
    assert list(tmp_path.iterdir()) == []


def test_existing_run_refuses_to_train_over(tmp_path):
    data = tiny_data(tmp_path / "d.npz")
    train(tiny_cfg(data, "train.steps=1", "train.snapshot_every=1"), tmp_path / "r", quiet=True)
    with pytest.raises(GankitError, match="gankit resume"):
        train(tiny_cfg(data), tmp_path / "r", quiet=True)


def _dataset(n_classes: int, res: int = 32) -> ImageDataset:
    x = np.zeros((8, 1, res, res), np.uint8)
    return ImageDataset(
        x, np.arange(8) % n_classes, n_classes, [str(i) for i in range(n_classes)], "test-data"
    )


def test_data_with_more_classes_than_model(tmp_path):
    with pytest.raises(GankitError, match="data has 5 classes but model.n_classes=3"):
        Trainer(tiny_cfg(tmp_path), None, dataset=_dataset(5))


def test_data_resolution_mismatch(tmp_path):
    with pytest.raises(GankitError, match="model.resolution=32"):
        Trainer(tiny_cfg(tmp_path), None, dataset=_dataset(3, res=28))


def test_aux_weight_needs_aux_classifier(tmp_path):
    with pytest.raises(GankitError, match="aux_weight > 0 needs --set model.aux_classifier"):
        train(tiny_cfg(tmp_path, "train.aux_weight=0.5"), tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()  # checked before anything is created


def test_aux_classifier_and_accumulation_run(tmp_path):
    cfg = tiny_cfg(
        tmp_path,
        "model.aux_classifier=true",
        "train.aux_weight=0.5",
        "train.accumulate=2",
        "train.n_D=1",
    )
    trainer = Trainer(cfg, None, dataset=_dataset(3))
    before = [p.detach().clone() for p in trainer.D.parameters()]
    trainer.train_iteration()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.D.parameters()))


@pytest.mark.parametrize("loss", ["wgan-gp", "nonsaturating"])
def test_other_losses_train(tmp_path, loss):
    """wgan-gp runs a second D forward (the penalty) before backward: SN must allow it."""
    trainer = Trainer(tiny_cfg(tmp_path, f"train.loss={loss}"), None, dataset=_dataset(3))
    out = trainer.train_iteration()
    assert all(torch.isfinite(v) for v in out.values())


def test_snapshot_without_ema_leaves_training_G_untouched(tmp_path):
    """With train.ema=false the grid comes from a copy: G's BN statistics, SN vectors and
    training mode stay as they were."""
    cfg = tiny_cfg(tmp_path, "train.ema=false", "train.standing_stats=2")
    trainer = Trainer(cfg, tmp_path / "run", dataset=_dataset(3))
    trainer.train_iteration()
    before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    trainer.snapshot()
    assert trainer.G.training
    for k, v in trainer.G.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_eval_setup_is_checked_at_start(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.npz"  # not read yet: the eval setup fails first
    with pytest.raises(GankitError, match="Inception weights not found"):
        train(tiny_cfg(data, "eval.every=10", "eval.metrics=fid"), tmp_path / "r", quiet=True)
    with pytest.raises(GankitError, match="unknown metric 'fdi'"):
        train(tiny_cfg(data, "eval.every=10", "eval.metrics=fdi"), tmp_path / "r", quiet=True)
    tiny_data(data)  # 3 classes: 17 samples leave a class with 5
    short = tiny_cfg(data, "eval.every=10", "eval.metrics=swd,ccoverage_class", "eval.n=17")
    with pytest.raises(ParameterError, match="^eval.n: ccoverage_class needs 6 .* of the 3 "):
        train(short, tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()
    hooks = default_hooks(tiny_cfg(tmp_path, "eval.every=10", "eval.metrics=class_acc,swd"))
    names = [type(h).__name__ for h in hooks]
    assert names == ["SigmaTracker", "SampleHealth", "SnapshotGrid", "PeriodicEval"]
