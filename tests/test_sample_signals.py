"""Collapse signals from samples (diversity, class spread) and the sample-based collapse rules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from training_fixtures import tiny_cfg, tiny_data

from gankit.config import DataConfig
from gankit.data import load_dataset, to_float
from gankit.run import RunDir
from gankit.training.collapse import (
    DIVERSITY_FLOOR,
    SPREAD_FLOOR,
    CollapseDetector,
    sample_warnings,
)
from gankit.training.hooks import CollapseError, CollapseRollback, SampleHealth
from gankit.training.loop import Trainer
from gankit.training.sample_signals import (
    class_spread,
    histogram_entropy,
    pairwise_distance,
    pixel_std,
)


def test_identical_samples_have_zero_diversity():
    x = torch.randn(1, 3, 8, 8).expand(16, -1, -1, -1)
    assert pixel_std(x) == 0.0
    assert pairwise_distance(x) < 1e-6
    black = -torch.ones(80, 1, 28, 28)
    assert pixel_std(black) == 0.0 and pairwise_distance(black) == 0.0


def test_pixel_std_closed_form():
    # two samples a, b: the biased std of every pixel is |a - b| / 2
    a, b = torch.full((1, 1, 4, 4), -1.0), torch.full((1, 1, 4, 4), 0.5)
    assert math.isclose(pixel_std(torch.cat([a, b])), 0.75, rel_tol=1e-6)


def test_pairwise_distance_brute_force():
    x = torch.randn(7, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    pairs = list(itertools.combinations(range(7), 2))
    expected = sum(float((x[i] - x[j]).pow(2).sum().sqrt()) for i, j in pairs) / len(pairs)
    assert math.isclose(pairwise_distance(x), expected / math.sqrt(50), rel_tol=1e-5)


def test_real_digits_score_their_own_value():
    ds = load_dataset(DataConfig(), 28, 1)
    x = to_float(ds.batch(torch.arange(80))[0])
    # real digits: ink on black, clearly varied (a collapse would be ~0)
    assert 0.2 < pixel_std(x) < 0.6 and 0.4 < pairwise_distance(x) < 1.0


def test_histogram_entropy_and_class_spread():
    assert math.isclose(histogram_entropy(torch.arange(10)), math.log(10), rel_tol=1e-6)
    assert histogram_entropy(torch.zeros(5, dtype=torch.long)) == 0.0
    cond = torch.arange(10).repeat_interleave(8)
    right = torch.nn.functional.one_hot(cond, 10).float()
    assert math.isclose(class_spread(right, cond), 1.0, rel_tol=1e-6)
    one_class = torch.nn.functional.one_hot(torch.zeros_like(cond), 10).float()
    assert class_spread(one_class, cond) == 0.0
    half = torch.nn.functional.one_hot(cond % 2, 10).float()  # predictions over 2 of 10 classes
    assert math.isclose(class_spread(half, cond), math.log(2) / math.log(10), rel_tol=1e-6)
    assert class_spread(one_class, torch.zeros_like(cond)) == 1.0  # one class was asked for


def _rec(step, div=1.0, spread=None):
    r = {"step": step, "loss_D": 1.0, "loss_G": 0.5, "sigma0/D/a.weight": 1.0}
    r.update({"diversity/pixel_std": div, "diversity/pairwise": div})
    if spread is not None:
        r["class_spread"] = spread
    return r


def test_diversity_floor_fires_without_history_and_names_the_signal():
    warnings = sample_warnings(_rec(1, div=0.02))
    assert len(warnings) == 2 and "diversity/pixel_std" in warnings[0]
    assert sample_warnings(_rec(1, div=DIVERSITY_FLOOR + 0.01)) == []
    assert CollapseDetector().check(_rec(1, div=0.0)) != []


def test_class_spread_floor():
    assert sample_warnings(_rec(1, spread=SPREAD_FLOOR + 0.1)) == []
    (warning,) = sample_warnings(_rec(1, spread=0.1))
    assert "class_spread" in warning


def _trainer(tmp_path, *overrides, hooks):
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tiny_data(tmp_path / "d.npz")
    cfg = tiny_cfg(data, "train.keep_last=0", *overrides)
    return Trainer(cfg, RunDir.create(tmp_path / "run").path, hooks=hooks, quiet=True)


def _logs(trainer):
    return [r for r in trainer.run.read_metrics() if "loss_D" in r]


@pytest.mark.usefixtures("one_thread")
def test_sample_health_logs_signals_without_changing_training(tmp_path):
    with_signals = _trainer(tmp_path / "a", hooks=[SampleHealth()])
    without = _trainer(tmp_path / "b", hooks=[])
    with_signals.fit(3)
    without.fit(3)
    for net in ("G", "D"):
        a = getattr(with_signals, net).state_dict()
        b = getattr(without, net).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), net  # buffers restored, no RNG used
    rec = _logs(with_signals)[-1]
    assert rec["diversity/pixel_std"] > 0.1 and rec["diversity/pairwise"] > 0.1
    assert rec["D_gap"] == pytest.approx(rec["D_real"] - rec["D_fake"])
    assert "diversity/pixel_std" not in _logs(without)[-1]


def _blacken(G):
    """A huge negative bias in G's last layer: tanh saturates, every image is black, and the
    saturated tanh passes (almost) no gradient back, so training keeps it black."""
    last = [m for m in G.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.bias.fill_(-50.0)


@pytest.mark.usefixtures("one_thread")
def test_black_collapse_warns_and_rollback_stops_with_one_line(tmp_path):
    trainer = _trainer(tmp_path, "train.snapshot_every=2", hooks=[SampleHealth()])
    trainer.fit(2)
    assert all("warning" not in r for r in trainer.run.read_metrics())  # healthy: no alarm
    _blacken(trainer.G)
    trainer.fit(3)
    warnings = [r["warning"] for r in trainer.run.read_metrics() if "warning" in r]
    assert any("diversity/pixel_std" in w for w in warnings)
    assert _logs(trainer)[-1]["diversity/pixel_std"] < 1e-6
    assert not trainer.healthy

    trainer = _trainer(tmp_path / "r", "train.snapshot_every=1", hooks=[SampleHealth()])
    trainer.hooks.append(CollapseRollback())
    trainer.fit(2)  # checkpoints 1, 2 healthy
    _blacken(trainer.G)
    with pytest.raises(CollapseError) as err:
        for _ in range(10):  # each rollback reloads a healthy G; blacken again to keep failing
            trainer.fit(trainer.step + 1)
            _blacken(trainer.G)
    message = str(err.value)
    assert "\n" not in message and "diversity/pixel_std" in message and str(trainer.run.path)
    assert "after 3 rollbacks" in message and trainer.rollbacks == 3


@pytest.mark.usefixtures("one_thread")
def test_collapse_before_any_checkpoint_warns_and_goes_on(tmp_path):
    trainer = _trainer(tmp_path, "train.snapshot_every=100", hooks=[SampleHealth()])
    trainer.hooks.append(CollapseRollback())
    _blacken(trainer.G)
    trainer.fit(2)  # no exception: nothing to roll back to yet
    warnings = [r["warning"] for r in trainer.run.read_metrics() if "warning" in r]
    assert "no checkpoint yet to roll back to; continuing" in warnings
    assert trainer.step == 2 and trainer.rollbacks == 0
