"""Tests for gankit.data: every source, geometry, bad inputs, cache, sampler (tiny tmp fixtures)."""

from __future__ import annotations

import gzip
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from gankit.config import DataConfig
from gankit.data import BatchSampler, ImageDataset, load_dataset, to_float, to_uint8
from gankit.data.cifar import SafeUnpickler
from gankit.data.mnist import mnist_csv_path
from gankit.data.preprocess import fit_square
from gankit.errors import GankitError


def load(path: Path | str, resolution: int = 16, channels: int = 3, **kw) -> ImageDataset:
    n_classes = kw.pop("n_classes", None)
    return load_dataset(DataConfig(path=str(path), **kw), resolution, channels, n_classes)


def solid(path: Path, value, size=(20, 12), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


# --- embedded MNIST --------------------------------------------------------------------------


def test_mnist_embedded_matches_csv():
    ds = load_dataset(DataConfig(), 28, 1)
    with gzip.open(mnist_csv_path(), "rt") as f:  # independent parse of the shipped file
        rows = [list(map(int, line.split(","))) for line in f]
    table = np.array(rows)
    assert len(ds) == 5000 and ds.n_classes == 10 and ds.class_names == list("0123456789")
    assert np.bincount(ds.y).tolist() == [500] * 10
    assert ds.x.min() == 0 and ds.x.max() == 255
    np.testing.assert_array_equal(ds.x.reshape(5000, 784), table[:, :784])
    np.testing.assert_array_equal(ds.y, table[:, 784])


def test_mnist_resized_to_rgb_32():
    ds = load_dataset(DataConfig(), 32, 3)
    assert ds.x.shape == (5000, 3, 32, 32) and ds.x.dtype == np.uint8
    np.testing.assert_array_equal(ds.x[:, 0], ds.x[:, 2])  # grey repeated
    raw = load_dataset(DataConfig(), 28, 1).x[:50, 0].astype(np.float64)
    ref = F.interpolate(torch.from_numpy(raw)[:, None], size=32, mode="bilinear")[:, 0].numpy()
    assert np.abs(ds.x[:50, 0].astype(np.float64) - ref).mean() < 2.0  # same bilinear upscale


# --- float mapping and geometry --------------------------------------------------------------


def test_to_float_closed_form_and_inverse():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = to_float(x)
    assert f.dtype == torch.float32
    assert f.min().item() == -1.0 and f.max().item() == 1.0
    torch.testing.assert_close(f, x.double().mul(2 / 255).sub(1).float())
    assert torch.equal(to_uint8(f), x)
    with pytest.raises(TypeError):
        to_float(x.float())


@pytest.mark.parametrize("size", [(80, 40), (40, 80)])
def test_center_crop_keeps_left_half_white(size):
    w, h = size
    arr = np.zeros((h, w), dtype=np.uint8)
    arr[:, : w // 2] = 255  # left half white
    out = np.asarray(fit_square(Image.fromarray(arr), 16))
    assert out.shape == (16, 16)
    assert (out[:, :7] == 255).all() and (out[:, 9:] == 0).all()
    if w > h:  # crop keeps x in [20, 60): the edge sits exactly between columns 7 and 8
        assert (out[:, 7].astype(int) + out[:, 8] == 255).all() and (out[:, 7] > 128).all()


def test_fit_square_equals_resize_shorter_side_then_center_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)  # H=40, W=60
    ours = np.asarray(fit_square(Image.fromarray(img), 16)).astype(np.float64)
    chw = torch.from_numpy(img.astype(np.float64)).permute(2, 0, 1)[None]
    resized = F.interpolate(chw, size=(16, 24), mode="bilinear", antialias=True)  # shorter → 16
    ref = resized[0, :, :, 4:20].permute(1, 2, 0).numpy()  # centre crop of the 24 columns
    assert np.abs(ours - ref).max() <= 1.0


# --- image folders ---------------------------------------------------------------------------


def test_folder_labels_sorted_by_name_and_nested(tmp_path):
    solid(tmp_path / "zebra" / "a.png", (255, 0, 0))
    solid(tmp_path / "ant" / "deep" / "b.jpg", (0, 0, 255), size=(30, 30))
    solid(tmp_path / "ant" / "c.bmp", (0, 255, 0))
    solid(tmp_path / "moth" / "d.webp", (250, 250, 250))
    (tmp_path / "ant" / ".DS_Store").write_bytes(b"junk")
    ds = load(tmp_path)
    assert ds.class_names == ["ant", "moth", "zebra"] and ds.n_classes == 3
    assert ds.y.tolist() == [0, 0, 1, 2] and ds.x.shape == (4, 3, 16, 16)
    # files in sorted walk order: ant/c.bmp (green), ant/deep/b.jpg (blue), moth, zebra (red)
    assert ds.x[0, :, 8, 8].tolist() == [0, 255, 0]
    assert abs(int(ds.x[1, 2, 8, 8]) - 255) <= 3 and int(ds.x[1, 0, 8, 8]) <= 3
    assert ds.x[3, :, 8, 8].tolist() == [255, 0, 0]


@pytest.mark.parametrize("cache", [False, True])
def test_quiet_loading_draws_no_progress_bar(tmp_path, capsys, monkeypatch, cache):
    """``quiet`` (``--quiet`` of train, eval, analyze) reaches the folder decoding and the cache
    build: no bar on stderr; without it the bar is drawn (from 1 file here)."""
    for module in ("gankit.data.folder", "gankit.data.cache_build"):
        monkeypatch.setattr(f"{module}.PROGRESS_MIN_FILES", 1)
    for i in range(3):
        solid(tmp_path / "imgs" / f"{i}.png", (i * 80, 0, 0))
    for quiet in (True, False):
        out = tmp_path / f"c{quiet}.npy"
        cfg = DataConfig(path=str(tmp_path / "imgs"), cache=str(out) if cache else "")
        load_dataset(cfg, 16, 3, quiet=quiet)
        err = capsys.readouterr().err
        assert ("decoding imgs" in err or "caching" in err) is not quiet, err


def test_folder_unconditional_and_grey(tmp_path):
    for i in range(3):
        solid(tmp_path / f"{i}.png", (i * 100, i * 100, i * 100), size=(9 + i, 17))
    ds = load(tmp_path, resolution=8, channels=1)
    assert ds.n_classes == 1 and ds.y.tolist() == [0, 0, 0] and ds.x.shape == (3, 1, 8, 8)
    assert ds.x[:, 0, 4, 4].tolist() == [0, 100, 200]


def test_folder_mixed_modes(tmp_path):
    solid(tmp_path / "a.png", (10, 20, 30, 0), mode="RGBA")  # alpha dropped
    solid(tmp_path / "b.png", 77, mode="L")
    pal = Image.new("P", (12, 12), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.save(tmp_path / "c.png")
    Image.new("CMYK", (12, 12), (0, 0, 0, 0)).save(tmp_path / "d.jpg")  # CMYK white
    Image.fromarray(np.full((12, 12), 32896, dtype=np.uint16)).save(tmp_path / "e.png")  # 16-bit
    Image.new("1", (12, 12), 1).save(tmp_path / "f.png")
    ds = load(tmp_path, resolution=8)
    centre = ds.x[:, :, 4, 4].tolist()
    assert centre[0] == [10, 20, 30]
    assert centre[1] == [77, 77, 77]
    assert centre[2] == [200, 100, 50]
    assert all(abs(v - 255) <= 2 for v in centre[3])
    assert centre[4] == [128, 128, 128]  # 32896 / 257 = 128
    assert centre[5] == [255, 255, 255]


def test_rgb_to_grey_uses_luma(tmp_path):
    solid(tmp_path / "a.png", (200, 100, 50))
    ds = load(tmp_path, resolution=8, channels=1)
    assert ds.x[0, 0, 4, 4] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_folder_corrupt_file_named_or_skipped(tmp_path, caplog):
    solid(tmp_path / "cls" / "good.png", (1, 2, 3))
    (tmp_path / "cls" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(GankitError, match="bad.png"):
        load(tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = load(tmp_path, skip_bad=True)
    assert ds.skipped == 1 and len(ds) == 1
    assert "skipped 1" in caplog.text


def test_folder_truncated_jpeg_is_bad(tmp_path):
    solid(tmp_path / "ok.png", (1, 2, 3))
    solid(tmp_path / "t.jpg", (9, 9, 9), size=(64, 64))
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(GankitError, match="t.jpg"):
        load(tmp_path)


def test_folder_unsupported_file_type(tmp_path):
    solid(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(GankitError, match=r"notes\.txt.*unsupported file type"):
        load(tmp_path)
    assert load(tmp_path, skip_bad=True).skipped == 1


def test_class_folder_empty_after_skipping(tmp_path):
    solid(tmp_path / "a" / "x.png", (1, 2, 3))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "broken.png").write_bytes(b"nope")
    with pytest.raises(GankitError, match=r"[/\\]b: no readable images"):
        load(tmp_path, skip_bad=True)


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(GankitError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(GankitError, match="no files"):
        load(tmp_path)
    (tmp_path / "cls").mkdir()
    with pytest.raises(GankitError, match="cls: folder has no files"):
        load(tmp_path)
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(GankitError, match=r"data\.csv.*unsupported file type"):
        load(tmp_path / "data.csv")


def test_bad_resolution_and_channels():
    with pytest.raises(GankitError, match="model.resolution"):
        load_dataset(DataConfig(), 4, 3)
    with pytest.raises(GankitError, match="model.channels"):
        load_dataset(DataConfig(), 32, 2)
    with pytest.raises(GankitError, match="^resize: expected one of legacy, clean, got 'nearest'"):
        load_dataset(DataConfig(), 32, 3, resize="nearest")  # was ignored


# --- .npz / .npy / .h5 -----------------------------------------------------------------------


def random_images(n=6, c=3, s=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, s, s), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "nhw"])
def test_npz_layouts(tmp_path, layout):
    x = random_images(c=1 if layout == "nhw" else 3)
    stored = {"nchw": x, "nhwc": x.transpose(0, 2, 3, 1), "nhw": x[:, 0]}[layout]
    y = np.array([0, 1, 2, 0, 1, 2])
    np.savez(tmp_path / "d.npz", x=stored, y=y)
    ds = load(tmp_path / "d.npz", resolution=8, channels=x.shape[1])
    np.testing.assert_array_equal(ds.x, x)
    assert ds.y.dtype == np.int64 and ds.n_classes == 3


def test_npz_class_names_and_bad_inputs(tmp_path):
    x = random_images()
    np.savez(tmp_path / "ok.npz", x=x, y=np.arange(6) % 3, class_names=np.array(["a", "b", "c"]))
    ds = load(tmp_path / "ok.npz", resolution=8)
    assert ds.n_classes == 3 and ds.class_names == ["a", "b", "c"]
    with pytest.raises(GankitError, match=r"model.n_classes = 2.*\[0, 2\]"):
        load(tmp_path / "ok.npz", resolution=8, n_classes=2)
    cases = {
        "nokey.npz": ({"x": x}, "missing key"),
        "float.npz": ({"x": x.astype(np.float32), "y": np.zeros(6, int)}, "must be uint8"),
        "fy.npz": ({"x": x, "y": np.zeros(6)}, "must be integers"),
        "shape.npz": ({"x": np.zeros((6, 5, 8, 7), np.uint8), "y": np.zeros(6, int)}, "shape"),
        "count.npz": ({"x": x, "y": np.zeros(5, int)}, r"shape \(6,\)"),
        "neg.npz": ({"x": x, "y": -np.ones(6, int)}, "labels must be class indices >= 0, found -1"),
        "empty.npz": ({"x": x[:0], "y": np.zeros(0, int)}, "holds no images"),
        "huge.npz": (  # 2**40 classes would be a list of 10**12 names
            {"x": x, "y": np.full(6, 2**40)},
            "labels 'y' must be class indices below 100,000 .* found 1099511627776",
        ),
        "high.npz": (
            {"x": x, "y": np.full(6, 3), "class_names": np.array(["a", "b"])},
            r"\[0, 1\]",
        ),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(GankitError, match=message) as err:
            load(tmp_path / name, resolution=8)
        assert name in str(err.value)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(GankitError, match="junk.npz: not a readable .npz file .neither NumPy"):
        load(tmp_path / "junk.npz")


def test_npz_resized_to_model_resolution(tmp_path):
    x = np.zeros((2, 1, 20, 10), dtype=np.uint8)
    x[:, :, :10] = 255  # top half white; centre 10x10 crop = rows 5..15 → top half white
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    ds = load(tmp_path / "d.npz", resolution=8, channels=1)
    assert (ds.x[:, 0, :3] == 255).all() and (ds.x[:, 0, 5:] == 0).all()


def test_npy_memmap_with_label_siblings(tmp_path):
    x = random_images(n=4, s=16)
    np.save(tmp_path / "a.npy", x)
    ds = load(tmp_path / "a.npy")
    assert isinstance(ds.x, np.memmap) and ds.n_classes == 1 and (ds.y == 0).all()
    np.save(tmp_path / "a.labels.npy", np.array([1, 0, 1, 1]))
    assert load(tmp_path / "a.npy").y.tolist() == [1, 0, 1, 1]
    np.save(tmp_path / "b.npy", x)
    np.savez(tmp_path / "b.npz", y=np.array([0, 2, 1, 0]))
    ds = load(tmp_path / "b.npy")
    assert ds.n_classes == 3 and ds.y.tolist() == [0, 2, 1, 0]
    xb, yb = ds.batch(torch.tensor([3, 1]))
    assert xb.dtype == torch.uint8 and torch.equal(xb, torch.from_numpy(x[[3, 1]]))
    assert yb.tolist() == [0, 2]


def test_npy_cache_errors_name_the_unreadable_sibling(tmp_path):
    np.save(tmp_path / "a.npy", random_images(n=4, s=16))
    labels, meta = tmp_path / "a.labels.npy", tmp_path / "a.meta.json"
    np.save(labels, np.array([1, 0, 1, 1]))
    labels.write_bytes(labels.read_bytes()[:20])  # truncated
    with pytest.raises(GankitError, match=r"a\.labels\.npy: not a readable labels file of a\.npy"):
        load(tmp_path / "a.npy")
    labels.unlink()
    meta.write_text("{bad json")
    with pytest.raises(GankitError, match=r"a\.meta\.json: not a readable metadata file of a\.npy"):
        load(tmp_path / "a.npy")
    meta.write_text("[1, 2]")
    with pytest.raises(GankitError, match=r"a\.meta\.json: expected a JSON object"):
        load(tmp_path / "a.npy")
    (tmp_path / "a.npy").write_bytes(b"\x93NUMPY junk")
    with pytest.raises(GankitError, match=r"a\.npy: not a readable \.npy cache"):
        load(tmp_path / "a.npy")


def test_h5_source(tmp_path):
    h5py = pytest.importorskip("h5py")
    x = random_images(s=16)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, np.arange(6) % 3
    ds = load(tmp_path / "d.h5")
    np.testing.assert_array_equal(ds.x, x)
    assert ds.y.tolist() == [0, 1, 2, 0, 1, 2]
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["x"] = x
    with pytest.raises(GankitError, match=r"e\.h5: missing HDF5 dataset\(s\) y"):
        load(tmp_path / "e.h5")


# --- CIFAR -----------------------------------------------------------------------------------


def cifar_batch(n, seed, label_key=b"labels", n_classes=10):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return {b"data": data, label_key: [int(v) for v in rng.integers(0, n_classes, n)]}


def test_cifar10_batches(tmp_path):
    batches = [cifar_batch(3, i) for i in range(5)]
    for i, b in enumerate(batches, 1):
        (tmp_path / f"data_batch_{i}").write_bytes(pickle.dumps(b, protocol=2))
    names = [f"c{i}".encode() for i in range(10)]
    (tmp_path / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    ds = load(tmp_path, resolution=32)
    assert len(ds) == 15 and ds.n_classes == 10 and ds.class_names[3] == "c3"
    first = batches[0][b"data"][1]  # 1024 R, 1024 G, 1024 B, each row-major 32x32
    assert ds.x[1, 0, 2, 5] == first[2 * 32 + 5]
    assert ds.x[1, 1, 2, 5] == first[1024 + 2 * 32 + 5]
    assert ds.x[1, 2, 31, 31] == first[3071]
    assert ds.y.tolist() == sum((b[b"labels"] for b in batches), [])
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(GankitError, match="lacks data_batch_4"):
        load(tmp_path, resolution=32)


def test_cifar100_fine_labels(tmp_path):
    batch = cifar_batch(4, 0, label_key=b"fine_labels", n_classes=100)
    (tmp_path / "train").write_bytes(pickle.dumps(batch))  # default protocol: numpy's reduce_ex
    names = [f"n{i}".encode() for i in range(100)]
    (tmp_path / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}))
    ds = load(tmp_path, resolution=16, channels=1)
    assert ds.n_classes == 100 and ds.y.tolist() == batch[b"fine_labels"]
    assert ds.x.shape == (4, 1, 16, 16)


class _Evil:
    def __reduce__(self):
        return (os.mkdir, (str(_Evil.target),))


def test_malicious_pickle_refused(tmp_path):
    _Evil.target = tmp_path / "pwned"
    (tmp_path / "train").write_bytes(pickle.dumps({b"data": _Evil()}, protocol=2))
    (tmp_path / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"a"]}))
    with pytest.raises(GankitError, match=r"train: .*refusing to load 'posix.mkdir'"):
        load(tmp_path, resolution=32)
    assert not _Evil.target.exists()
    with open(tmp_path / "train", "rb") as f, pytest.raises(pickle.UnpicklingError):
        SafeUnpickler(f).load()


# --- cache -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_cache_round_trip_and_invalidation(tmp_path, suffix, caplog):
    if suffix == ".h5":
        pytest.importorskip("h5py")
    src = tmp_path / "imgs"
    solid(src / "a" / "1.png", (10, 20, 30))
    solid(src / "b" / "2.png", (40, 50, 60))
    cache = tmp_path / "cache" / f"c{suffix}"
    first = load(src, cache=str(cache))
    assert cache.is_file()
    (src / "a" / "1.png").unlink()  # a reused cache never reads the source again
    again = load(src, cache=str(cache))
    np.testing.assert_array_equal(again.x, first.x)
    assert again.class_names == ["a", "b"] and again.y.tolist() == [0, 1]
    assert again.source == str(src.resolve())
    if suffix == ".npy":
        assert isinstance(again.x, np.memmap)
    solid(src / "a" / "1.png", (10, 20, 30))
    with caplog.at_level(logging.INFO):
        bigger = load(src, resolution=8, channels=1, cache=str(cache))
    assert "rebuilding" in caplog.text and bigger.x.shape == (2, 1, 8, 8)
    assert load(src, resolution=8, channels=1, cache=str(cache)).x.shape == (2, 1, 8, 8)
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]


def test_cache_bad_suffix_and_stale_metadata(tmp_path):
    with pytest.raises(GankitError, match=r"data.cache.*\.npy, \.h5, \.hdf5"):
        load_dataset(DataConfig(cache=str(tmp_path / "c.zip")), 28, 1)
    cache, meta = tmp_path / "m.npy", tmp_path / "m.meta.json"
    load_dataset(DataConfig(cache=str(cache)), 28, 1)
    stale = {**json.loads(meta.read_text()), "resolution": 32}  # made for another request
    meta.write_text(json.dumps(stale))
    ds = load_dataset(DataConfig(cache=str(cache)), 28, 1)
    assert len(ds) == 5000 and json.loads(meta.read_text())["resolution"] == 28
    meta.unlink()  # never left by a build (written before the images): not taken for one
    with pytest.raises(GankitError, match=r"m\.npy: exists and is not a gankit data cache"):
        load_dataset(DataConfig(cache=str(cache)), 28, 1)


def test_cache_in_a_folder_it_cannot_write_names_the_cache(tmp_path, monkeypatch):
    from gankit.data import cache as cache_module

    def refuse(path, mode):
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(cache_module, "open", refuse, raising=False)
    cache = tmp_path / "m.npy"
    with pytest.raises(GankitError) as err:
        load_dataset(DataConfig(cache=str(cache)), 28, 1)
    assert str(err.value) == (
        f"{cache}: cannot write the cache there ({tmp_path / '.m.npy.lock'}: Operation not "
        "permitted)"
    )


# --- BatchSampler ----------------------------------------------------------------------------


def gen(seed):
    return torch.Generator().manual_seed(seed)


def take(sampler, k):
    return [next(sampler).tolist() for _ in range(k)]


def test_sampler_epochs_are_seeded_permutations():
    s = BatchSampler(24, 4, gen(1))
    assert len(s) == 6
    epochs = [sum(take(s, 6), []) for _ in range(3)]
    assert all(sorted(e) == list(range(24)) for e in epochs)
    assert epochs[0] != epochs[1]
    assert sum(take(BatchSampler(24, 4, gen(1)), 18), []) == sum(epochs, [])
    assert epochs[0] == torch.randperm(24, generator=gen(1)).tolist()  # independent reference


def test_sampler_resume_continues_same_sequence(tmp_path):
    straight = take(BatchSampler(26, 4, gen(7)), 20)  # 6 batches/epoch, 2 images cut per epoch
    for k in (0, 3, 6, 13):
        s = BatchSampler(26, 4, gen(7))
        head = take(s, k)
        torch.save(s.state_dict(), tmp_path / "s.pt")
        resumed = BatchSampler(26, 4, gen(999))
        resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
        assert head + take(resumed, 20 - k) == straight
    with pytest.raises(GankitError, match="written with train.batch_size = 4, this run has 2"):
        BatchSampler(26, 2, gen(0)).load_state_dict(s.state_dict())


def test_sampler_rank_shards_disjoint_union_is_epoch():
    world, b = 3, 2
    samplers = [
        BatchSampler(list(range(24)), b, gen(5), rank=r, world_size=world) for r in range(3)
    ]
    assert all(len(s) == 4 for s in samplers)
    perm = torch.randperm(24, generator=gen(5)).tolist()
    per_rank = [sum(take(s, 4), []) for s in samplers]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not set(per_rank[i]) & set(per_rank[j])
    assert sorted(sum(per_rank, [])) == list(range(24))
    for r in range(3):
        assert per_rank[r] == perm[r::world]  # DistributedSampler's interleaved shard


def test_sampler_too_small():
    with pytest.raises(GankitError, match="train.batch_size = 8"):
        BatchSampler(10, 8, gen(0), rank=0, world_size=2)
