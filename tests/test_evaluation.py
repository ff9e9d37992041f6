"""``gankit.evaluate`` / ``periodic_eval``: offline metrics on a tiny labelled data set."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from torch import nn

from gankit.config import load_preset
from gankit.data import with_source
from gankit.errors import GankitError, ParameterError
from gankit.evaluation import (
    check_per_class,
    evaluate,
    evaluate_images,
    generate_balanced,
    periodic_eval,
    prepare,
)
from gankit.metrics import get_metric
from gankit.metrics.prdc import PRDC_K
from gankit.metrics.stats_cache import data_digest
from gankit.run import RunDir

RES, K = 32, 4


def _pattern(c: int, rng: np.random.RandomState) -> np.ndarray:
    """Class c: a bright 12×12 square in quadrant c, plus noise; uint8 (1, RES, RES)."""
    img = rng.randint(0, 40, (1, RES, RES))
    r, q = divmod(c, 2)
    img[:, 16 * r + 2 : 16 * r + 14, 16 * q + 2 : 16 * q + 14] += 200
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture()
def data_cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.RandomState(0)
    y = np.arange(400) % K
    x = np.stack([_pattern(c, rng) for c in y])
    np.savez(tmp_path / "toy.npz", x=x.transpose(0, 2, 3, 1), y=y)
    cfg = load_preset(
        overrides=[
            f"data.path={tmp_path / 'toy.npz'}",
            f"model.resolution={RES}",
            "model.channels=1",
            f"model.n_classes={K}",
            "eval.n=200",
            "eval.metrics=class_acc,cfid,swd",
        ]
    )
    return cfg


class PatternG(nn.Module):
    """A stand-in generator: the class pattern (``perfect``) or pure noise, in [-1, 1]."""

    def __init__(self, perfect: bool) -> None:
        super().__init__()
        self.dim_z, self.n_classes, self.perfect = 8, K, perfect
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seed = int(z.abs().sum() * 1e4) % 2**31
        rng = np.random.RandomState(seed)
        if self.perfect:
            x = np.stack([_pattern(int(c), rng) for c in y])
        else:
            x = rng.randint(0, 256, (len(y), 1, RES, RES))
        return torch.tensor(x, dtype=torch.float32) / 127.5 - 1


def test_periodic_eval_separates_perfect_from_noise(data_cfg):
    good = periodic_eval(PatternG(True), data_cfg, device="cpu")
    bad = periodic_eval(PatternG(False), data_cfg, device="cpu")
    assert set(good) == {"class_acc", "cfid", "swd"}
    assert good["class_acc"] > 0.95 and bad["class_acc"] < 0.6
    assert good["cfid"] < bad["cfid"] / 10 and good["swd"] < bad["swd"] / 3


def _saved_run(cfg, run):
    """``run`` with one checkpoint (step 7) of an untrained DCGAN of ``cfg``."""
    from gankit.checkpoint import save_checkpoint
    from gankit.models import build

    cfg.model.arch, cfg.model.G_attn, cfg.model.D_attn = "dcgan", [], []
    G, D = build(cfg.model)
    weights = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict()}
    save_checkpoint(run / "checkpoints", "step_00000007", weights, {"step": 7}, cfg)
    return run


def test_evaluate_writes_json_and_metrics_row(data_cfg, tmp_path, capsys, monkeypatch):
    run = _saved_run(data_cfg, tmp_path / "run")
    out = evaluate(str(run), ["class_acc", "swd", "cprdc"], n=40, device="cpu", quiet=True)
    assert out["step"] == 7 and out["n"] == 40 and "NOT comparable" in out["notes"]["offline"]
    names = ["class_acc", "swd", "cprecision", "crecall", "cdensity", "ccoverage"]
    assert set(out["eval"]) == {*names, *(f"{n}_real_heldout" for n in names)}
    assert out["eval"]["class_acc_real_heldout"] > 0.95
    # an untrained G covers little of the real digits; held-out reals cover them well
    assert out["eval"]["ccoverage"] < 0.5 < out["eval"]["ccoverage_real_heldout"]
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row == {"step": 7, "eval": out["eval"], "source": "gankit eval"}
    with pytest.raises(GankitError, match="unknown metric 'fdi'"):
        evaluate(str(run), ["fdi"], n=40, device="cpu")
    with pytest.raises(GankitError, match="Inception weights not found"):
        evaluate(str(run), ["fid"], n=40, device="cpu")
    with pytest.raises(ParameterError, match="^n: expected at least 10"):
        evaluate(str(run), ["swd"], n=5, device="cpu")
    with pytest.raises(ParameterError, match="^metrics: expected a list of metric names"):
        evaluate(str(run), "swd", n=40, device="cpu")  # a string is not a list of names
    # too few reference images: 10, and 10 in the held-out split of the offline metrics
    few = tmp_path / "few.npz"
    for n_real, message in [(12, r"held-out split, got 2\)$"), (5, "at least 10 \\(and")]:
        np.savez(few, x=np.zeros((n_real, RES, RES, 1), np.uint8), y=np.arange(n_real) % K)
        with pytest.raises(GankitError, match=f"few.npz holds {n_real} images; .*{message}"):
            evaluate(str(run), ["swd"], n=40, data=str(few), device="cpu")
    np.savez(few, x=np.zeros((50, RES, RES, 1), np.uint8), y=np.arange(50) % K)
    assert (
        "swd" in evaluate(str(run), ["swd"], n=40, data=str(few), device="cpu", quiet=True)["eval"]
    )
    more = tmp_path / "more.npz"  # more classes than the model: refused, as training does
    np.savez(more, x=np.zeros((50, RES, RES, 1), np.uint8), y=np.arange(50) % (K + 1))
    with pytest.raises(GankitError, match=f"more.npz': has {K + 1} classes but the model of "):
        evaluate(str(run), ["swd"], n=40, data=str(more), device="cpu", quiet=True)
    with pytest.raises(GankitError, match="classes but the model of "):  # said first
        evaluate(str(run), ["ccoverage_class"], n=12, data=str(more), device="cpu", quiet=True)

    # a run directory that cannot be written: the result is still returned, with a warning
    def read_only(self, record):
        raise PermissionError(13, "Permission denied", str(self.metrics_file))

    monkeypatch.setattr(RunDir, "append_metrics", read_only)
    out = evaluate(str(run), ["swd"], n=40, device="cpu", quiet=True)
    err = capsys.readouterr().err
    assert "swd" in out["eval"] and err == (
        f"gankit: warning: the result was not added to {run / 'metrics.jsonl'} "
        "(Permission denied)\n"
    )


def test_other_data_never_goes_through_the_runs_cache(data_cfg, tmp_path):
    """``data=`` (``--data``) of another source is read directly: the run's ``data.cache``,
    built from the run's own images, is not rebuilt from it (it stays byte for byte)."""
    cache = tmp_path / "train_cache.npy"
    data_cfg.data.cache = str(cache)
    assert with_source(data_cfg.data, None) is data_cfg.data
    assert with_source(data_cfg.data, data_cfg.data.path).cache == str(cache)
    run = _saved_run(data_cfg, tmp_path / "run")
    evaluate(str(run), ["swd"], n=20, device="cpu", quiet=True)  # builds the run's cache
    before = (cache.read_bytes(), cache.stat().st_mtime_ns)
    x = np.load(data_cfg.data.path)["x"][:100]
    np.savez(tmp_path / "other.npz", x=x, y=np.arange(100) % K)
    other = str(tmp_path / "other.npz")
    assert with_source(data_cfg.data, other).cache == ""
    out = evaluate(str(run), ["swd"], n=20, device="cpu", quiet=True, data=other)
    assert out["data"] == str(tmp_path / "other.npz")
    assert (cache.read_bytes(), cache.stat().st_mtime_ns) == before


def test_reference_caches_follow_the_data_contents(data_cfg, tmp_path):
    """A data file replaced by other images of the same count and size gets new reference
    features and a new classifier (the caches were keyed by path and shape: stale numbers)."""
    x, y = np.zeros((100, 1, 8, 8), np.uint8), np.arange(100) % 3
    assert data_digest(x, y) == data_digest(x.copy(), y.copy())
    assert data_digest(x, np.roll(y, 1)) != data_digest(x, y)
    x2 = x.copy()
    x2[99, 0, 0, 0] = 1  # the last row is one of the sampled rows
    assert data_digest(x2, y) != data_digest(x, y)
    source = tmp_path / "f.npy"  # a data file: its size and modification time count too
    np.save(source, x)
    before = data_digest(x, y, str(source))
    os.utime(source, ns=(0, 10**9))
    assert data_digest(x, y, str(source)) != before
    assert data_digest(x, y, "mnist-5k (embedded)") == data_digest(x, y)  # not a file
    cache = tmp_path / "cache"
    args = (data_cfg.data, RES, 1, 50, None, torch.device("cpu"))
    first = prepare(["swd", "class_acc"], *args)
    entries = {p.name for p in cache.rglob("*") if p.is_file()}
    with np.load(data_cfg.data.path) as d:
        np.savez(data_cfg.data.path, x=255 - d["x"], y=d["y"])
    second = prepare(["swd", "class_acc"], *args)
    new = {p.name for p in cache.rglob("*") if p.is_file()} - entries
    assert len([n for n in new if n.endswith(".npz")]) >= 2  # reference and held-out features
    assert [n for n in new if n.endswith(".safetensors")]  # a classifier of the new images
    assert not np.array_equal(first.reference[True]["swd_proj"], second.reference[True]["swd_proj"])


def test_evaluate_warns_when_metrics_jsonl_is_not_a_regular_file(data_cfg, tmp_path, capsys):
    """A FIFO in place of metrics.jsonl: the result is returned with a warning, nothing waits
    on it (a reader is held open so that a regression writes instead of hanging)."""
    run = _saved_run(data_cfg, tmp_path / "run")
    os.mkfifo(run / "metrics.jsonl")
    reader = os.open(run / "metrics.jsonl", os.O_RDONLY | os.O_NONBLOCK)
    try:
        out = evaluate(str(run), ["swd"], n=20, device="cpu", quiet=True)
    finally:
        os.close(reader)
    assert "swd" in out["eval"] and capsys.readouterr().err == (
        f"gankit: warning: the result was not added to {run / 'metrics.jsonl'} "
        "(not a regular file)\n"
    )


def test_per_class_metrics_need_their_images_of_every_class(data_cfg, tmp_path, monkeypatch):
    """A per-class metric refuses a sample count that leaves a class short (balanced labels give
    each class ``n // n_classes``) before any extractor is built: no classifier is trained."""
    assert get_metric("ccoverage_class").min_per_class == PRDC_K + 1 == 6
    assert get_metric("intra_fid").min_per_class == 2
    assert all(get_metric(m).min_per_class == 0 for m in ("fid", "cfid", "cprdc", "class_acc"))
    check_per_class(["swd", "ccoverage_class"], 6 * K, K, "n")
    with pytest.raises(ParameterError, match=rf"^n: ccoverage_class needs 6 .* of the {K} "):
        check_per_class(["swd", "ccoverage_class"], 6 * K - 1, K, "n")
    run = _saved_run(data_cfg, tmp_path / "run")
    monkeypatch.setattr("gankit.evaluation.ExtractorSetup", None)  # no extractor is built
    message = rf"^n: ccoverage_class needs 6 generated images of each of the {K} classes: "
    with pytest.raises(ParameterError, match=message + rf"expected at least {6 * K} samples"):
        evaluate(str(run), ["swd", "ccoverage_class"], n=20, device="cpu", quiet=True)
    data_cfg.eval.metrics, data_cfg.eval.n = ["ccoverage_class"], 20
    with pytest.raises(ParameterError, match="^eval.n: ccoverage_class needs 6"):
        periodic_eval(PatternG(True), data_cfg, device="cpu")


def test_generated_labels_cycle_over_the_data_classes():
    """A model with more classes than the data: labels stay within the data's classes."""
    G = PatternG(perfect=True).eval()
    labels = torch.cat([y for _, y in generate_balanced(G, 20, batch_size=7, n_classes=K - 1)])
    assert sorted(labels.tolist()) == sorted([i % (K - 1) for i in range(20)])
    labels = torch.cat([y for _, y in generate_balanced(G, 20, batch_size=7)])
    assert set(labels.tolist()) == set(range(K))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"data": 5}, "data: expected a reference data path or None, got int"),
        (
            {"inception_weights": 5},
            "inception_weights: expected an Inception weights file path or None, got int",
        ),
        ({"quiet": "x"}, "quiet: expected True or False, got 'x'"),
    ],
)
def test_evaluate_checks_paths_and_quiet(tmp_path, kwargs, message):
    """Checked before anything is loaded: no TypeError from pathlib, no string taken as true."""
    for call in (evaluate, evaluate_images):
        with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
            call(tmp_path, ["swd"], n=16, **kwargs)
