"""The run directory (gankit.run): paths, create/open, checkpoints, metrics.jsonl, loading."""

from __future__ import annotations

import json

import pytest
import torch
from training_fixtures import TINY

from gankit.checkpoint import save_checkpoint, step_dir_name
from gankit.config import Config, apply_overrides, save_toml
from gankit.errors import GankitError
from gankit.models import build
from gankit.run import RunDir, find_checkpoint, load_discriminator, load_generator


@pytest.fixture()
def run(tmp_path) -> RunDir:
    cfg = apply_overrides(Config(), TINY)
    torch.manual_seed(0)
    G, D = build(cfg.model, init=False)
    G_ema = build(cfg.model, init=False)[0]
    weights = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict()}
    run = RunDir.create(tmp_path / "run")
    save_toml(cfg, run.config_file)
    for step in (2, 4):
        save_checkpoint(run.checkpoints, step_dir_name(step), weights, {"step": step}, cfg)
    save_checkpoint(run.checkpoints, "best", weights, {"step": 2}, cfg)
    run.nets = G, D, G_ema  # for the tests below
    return run


def test_layout_paths(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config_file == tmp_path / "r" / "config.toml"
    assert run.metrics_file.name == "metrics.jsonl" and run.tb.name == "tb"
    assert run.sample_grid(12) == tmp_path / "r" / "samples" / "step_00000012.png"
    assert run.plots == tmp_path / "r" / "plots" and not (tmp_path / "r").exists()


def test_checkpoints_latest_best_and_find(run):
    assert [c.name for c in run.list_checkpoints()] == ["step_00000002", "step_00000004"]
    assert run.latest_checkpoint().name == "step_00000004"
    assert run.best_checkpoint() == run.checkpoints / "best"
    assert find_checkpoint(run.path) == run.latest_checkpoint()
    assert find_checkpoint(run.checkpoints / "best") == run.checkpoints / "best"
    assert RunDir.of_checkpoint(run.latest_checkpoint()).path == run.path
    assert RunDir.of_checkpoint(run.path) is None


def test_create_refuses_a_run_with_checkpoints_and_open_needs_config(run, tmp_path):
    with pytest.raises(GankitError, match="already has checkpoints; continue it with `gankit"):
        RunDir.create(run.path)
    with pytest.raises(GankitError, match="not a run directory"):
        RunDir.open(tmp_path)
    assert RunDir.open(run.path).load_config().model.dim_z == 8


def test_metrics_append_and_read_skip_a_truncated_line(run):
    with pytest.raises(GankitError, match="no metrics.jsonl"):
        run.read_metrics()
    run.append_metrics({"step": 1, "loss_D": 0.5})
    run.append_metrics({"step": 2, "eval": {"fid": 3.0}})
    with open(run.metrics_file, "a") as f:
        f.write('{"step": 3, "lo')  # a writer killed mid-line
    assert run.read_metrics() == [{"step": 1, "loss_D": 0.5}, {"step": 2, "eval": {"fid": 3.0}}]
    assert json.loads(run.metrics_file.read_text().splitlines()[0])["step"] == 1


def test_load_generator_and_discriminator(run):
    G, D, G_ema = run.nets
    for loaded, ref in ((load_generator(run.path), G_ema), (load_discriminator(run.path), D)):
        assert not loaded.training and loaded.config.model.dim_z == 8
        assert not any(p.requires_grad for p in loaded.parameters())
        for (k, a), b in zip(loaded.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, b), k
    raw = load_generator(run.path, ema=False)
    assert all(
        torch.equal(a, b) for a, b in zip(raw.state_dict().values(), G.state_dict().values())
    )
