"""Eval caches in ``$GANKIT_CACHE`` that are damaged or cannot be written: each entry is
logged in one line and recomputed (reference features) or retrained (classifier)."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from gankit.config import DataConfig
from gankit.evaluation import prepare
from gankit.metrics import load_or_train_classifier
from gankit.metrics.stats_cache import cache_root, load_reference

RES, N = 16, 60


@pytest.fixture()
def cache(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    caplog.set_level(logging.WARNING, logger="gankit.metrics.stats_cache")
    return tmp_path / "cache"


def _data(tmp_path):
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (N, 1, RES, RES)).astype(np.uint8)
    y = np.arange(N) % 2
    np.savez(tmp_path / "toy.npz", x=x.transpose(0, 2, 3, 1), y=y)
    return x, y, DataConfig(path=str(tmp_path / "toy.npz"))


def _swd_reference(data_cfg):
    ctx = prepare(["swd"], data_cfg, RES, 1, 20, None, torch.device("cpu"))
    return ctx.reference[True]["swd_proj"], ctx.heldout["swd_proj"]


def _damage_npz(path, how):
    arrays = dict(np.load(path))
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(3000))
    elif how == "other keys":
        np.savez(path, foo=np.zeros(3))
    elif how == "other rows":
        np.savez(path, **{k: np.zeros((3, 7), np.float32) for k in arrays})
    elif how == "nan":
        np.savez(path, **{k: np.full_like(v, np.nan) for k, v in arrays.items()})
    elif how == "objects":
        np.savez(path, **{k: np.array([object()] * 3) for k in arrays})


@pytest.mark.parametrize(
    "how", ["truncated", "empty", "garbage", "other keys", "other rows", "nan", "objects"]
)
def test_damaged_reference_features_are_recomputed(tmp_path, cache, caplog, how):
    _, _, data_cfg = _data(tmp_path)
    train, heldout = _swd_reference(data_cfg)
    entries = sorted((cache / "stats").glob("*.npz"))
    assert len(entries) == 2 and not caplog.records
    for path in entries:
        _damage_npz(path, how)
    again = _swd_reference(data_cfg)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], heldout)
    assert len(caplog.records) == 2
    for path, record in zip(entries, sorted(caplog.records, key=lambda r: r.getMessage())):
        assert record.getMessage().startswith(f"eval cache {path}: ")
        assert record.getMessage().endswith("; recomputing it")
    assert all(load_reference(p.stem) is not None for p in entries)  # rewritten


def _damage_safetensors(path, how, info):
    good_info = json.dumps(info)
    state = load_file(path)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(3000))
    elif how == "no metadata":
        save_file(state, path)
    elif how == "metadata not JSON":
        save_file(state, path, metadata={"info": "{"})
    elif how == "info of another entry":
        other = {**info, "key": "0123456789abcdef"}
        save_file(state, path, metadata={"info": json.dumps(other)})
    elif how == "other shape":
        state[sorted(state)[0]] = torch.zeros(3)
        save_file(state, path, metadata={"info": good_info})
    elif how == "nan":
        state = {k: torch.full_like(v, float("nan")) for k, v in state.items()}
        save_file(state, path, metadata={"info": good_info})


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "empty",
        "garbage",
        "no metadata",
        "metadata not JSON",
        "info of another entry",
        "other shape",
        "nan",
    ],
)
def test_damaged_classifier_is_retrained(tmp_path, cache, caplog, how):
    x, y, _ = _data(tmp_path)
    model, info = load_or_train_classifier(x, y, 2, "toy")
    path = cache / "classifiers" / f"{info['key']}.safetensors"
    _damage_safetensors(path, how, info)
    again, info_again = load_or_train_classifier(x, y, 2, "toy")
    assert info_again == info
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    [record] = caplog.records
    assert record.getMessage().startswith(f"eval cache {path}: ")
    assert record.getMessage().endswith("; recomputing it")
    load_or_train_classifier(x, y, 2, "toy")  # rewritten: loads without a message
    assert len(caplog.records) == 1


def test_entries_that_cannot_be_written_are_skipped(tmp_path, cache, caplog):
    """A folder in place of an entry: the values are computed, a line says it was not cached."""
    x, y, data_cfg = _data(tmp_path)
    train, _ = _swd_reference(data_cfg)
    _, info = load_or_train_classifier(x, y, 2, "toy")
    entries = [
        *(cache / "stats").glob("*.npz"),
        cache_root() / "classifiers" / f"{info['key']}.safetensors",
    ]
    for path in entries:
        path.unlink()
        path.mkdir()
    assert np.array_equal(_swd_reference(data_cfg)[0], train)
    assert load_or_train_classifier(x, y, 2, "toy")[1] == info
    messages = sorted(r.getMessage() for r in caplog.records)
    assert messages == sorted(f"eval cache {p}: not written (Is a directory)" for p in entries)
