"""Damaged or foreign data files: each is refused with one line naming the file and field,
skipped under ``skip_bad`` where it is one image, or (a ``data.cache``) rebuilt."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import signal
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gankit.config import DataConfig
from gankit.data import build_cache, load_dataset, read_images, read_measured, write_measured
from gankit.data.folder import list_image_folder
from gankit.data.measured import MeasuredDataset
from gankit.errors import GankitError


def load(path: Path, **kw):
    return load_dataset(DataConfig(path=str(path), **kw), 8, 1)


def make_folder(root: Path, counts=(2, 3)) -> Path:
    for c, n in enumerate(counts):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n):
            Image.new("L", (10, 9), 40 * i + c).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.fixture
def no_hang():
    """Fail (instead of blocking forever) if the test takes more than 20 s."""

    def expire(*_):
        raise TimeoutError("blocked reading a file")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# --- data.cache ------------------------------------------------------------------------------


def test_cache_whose_labels_file_is_lost_is_rebuilt(tmp_path, caplog):
    src, out = make_folder(tmp_path / "imgs"), tmp_path / "c.npy"
    build_cache(src, 8, 1, out, workers=1, quiet=True)
    (tmp_path / "c.labels.npy").unlink()
    with caplog.at_level(logging.WARNING):
        ds = build_cache(src, 8, 1, out, workers=1, quiet=True)
    assert "labels file c.labels.npy is missing" in caplog.text and "rebuilding" in caplog.text
    assert ds.y.tolist() == [0, 0, 1, 1, 1] and (tmp_path / "c.labels.npy").is_file()
    (tmp_path / "c.labels.npy").unlink()  # the same arrays as data.path: refused
    with pytest.raises(GankitError, match=r"c\.npy: labels file c\.labels\.npy is missing"):
        load(out)


def test_cache_with_labels_beyond_its_class_names_names_the_labels_file(tmp_path, caplog):
    src, out = make_folder(tmp_path / "imgs"), tmp_path / "c.npy"
    build_cache(src, 8, 1, out, workers=1, quiet=True)
    np.save(tmp_path / "c.labels.npy", np.array([0, 0, 1, 5, 1]))
    with caplog.at_level(logging.WARNING):
        ds = load(src, cache=str(out))
    assert re.search(r"c\.labels\.npy \(classes of c\.meta\.json\): labels must lie", caplog.text)
    assert ds.y.tolist() == [0, 0, 1, 1, 1]


def test_cache_that_is_a_folder_names_data_cache(tmp_path):
    (tmp_path / "c.npy").mkdir()
    with pytest.raises(GankitError, match=r"^data\.cache = .*c\.npy': is a folder"):
        load(make_folder(tmp_path / "imgs"), cache=str(tmp_path / "c.npy"))


def visible_tree(root: Path) -> list[str]:
    """Every visible file and folder under ``root`` (hidden ones, such as lock files, left out)."""
    return sorted(
        os.path.relpath(os.path.join(d, n), root)
        for d, dirs, files in os.walk(root)
        for n in dirs + files
        if not n.startswith(".")
    )


def test_cache_inside_the_image_folder_is_refused_before_anything_is_written(tmp_path):
    src = make_folder(tmp_path / "imgs")
    more = tmp_path / "more"
    more.mkdir()
    Image.new("L", (9, 9), 200).save(more / "m.png")
    (src / "c1" / "linked").symlink_to(more)  # read as part of class c1
    (tmp_path / "alias").symlink_to(src)
    before = visible_tree(tmp_path)
    inside = [src / "c0" / "c.npy", src / "new" / "c.npy", tmp_path / "alias" / "c.npy"]
    for out in inside:
        with pytest.raises(GankitError) as err:
            build_cache(src, 8, 1, out, workers=1, quiet=True)
        assert re.fullmatch(
            r"\S*c\.npy: its files would be read as images of \S*imgs \(it lies in \S*imgs\); "
            r"a data cache must lie outside the image folder it is built from",
            str(err.value),
        )
    with pytest.raises(GankitError, match=r"more[/\\]c\.npy: .* \(it lies in \S*more\)"):
        load(src, cache=str(more / "c.npy"))
    assert visible_tree(tmp_path) == before
    assert load(src).y.tolist() == [0, 0, 1, 1, 1, 1]
    for hidden in (src / ".cache" / "c.npy", src / "c0" / ".c.npy"):  # never read: allowed
        assert build_cache(src, 8, 1, hidden, workers=1, quiet=True).y.tolist() == [
            0,
            0,
            1,
            1,
            1,
            1,
        ]
    assert load(src).y.tolist() == [0, 0, 1, 1, 1, 1]


def test_only_a_file_gankit_wrote_is_replaced_at_the_cache_path(tmp_path, monkeypatch):
    src, out = make_folder(tmp_path / "imgs"), tmp_path / "c.npy"
    for foreign in (np.ones((5, 8, 8), np.float32), np.zeros((5, 1, 8, 8), np.uint8)):
        np.save(out, foreign)
        with pytest.raises(GankitError) as err:
            load(src, cache=str(out))
        assert re.fullmatch(
            r"\S*c\.npy: exists and is not a gankit data cache; choose another path or remove it",
            str(err.value),
        )
        assert np.array_equal(np.load(out), foreign)
        assert sorted(os.listdir(tmp_path)) == [".c.npy.lock", "c.npy", "imgs"]
    labels, meta = tmp_path / "c.labels.npy", tmp_path / "c.meta.json"  # a user's own layout
    np.save(labels, np.array([0, 1, 0, 1, 0]))
    meta.write_text('{"class_names": ["a", "b"]}')
    with pytest.raises(GankitError, match=r"c\.npy: exists and is not a gankit data cache"):
        load(src, cache=str(out))
    assert np.array_equal(np.load(out), foreign) and np.load(labels).tolist() == [0, 1, 0, 1, 0]
    for path in (out, labels, meta):
        path.unlink()
    arrays = tmp_path / "d.npz"
    np.savez(arrays, x=np.zeros((3, 8, 8), np.uint8), y=np.array([0, 1, 1]))
    replace, calls = os.replace, []

    def stop_after(steps: int, *args):  # a build killed after its labels, after its metadata
        replace(*args)
        calls.append(args)
        if len(calls) == steps:
            raise KeyboardInterrupt

    for steps in (1, 2):
        calls.clear()
        monkeypatch.setattr(os, "replace", lambda *args, n=steps: stop_after(n, *args))
        with pytest.raises(KeyboardInterrupt):
            build_cache(arrays, 8, 1, out, quiet=True)
        monkeypatch.undo()
        assert build_cache(arrays, 8, 1, out, quiet=True).y.tolist() == [0, 1, 1]
        out.unlink()  # the next step starts without a cache


def test_only_an_h5_file_gankit_wrote_is_replaced_at_the_cache_path(tmp_path):
    h5py = pytest.importorskip("h5py")
    src, out = make_folder(tmp_path / "imgs"), tmp_path / "c.h5"
    with h5py.File(out, "w") as f:
        f["x"], f["y"] = np.zeros((5, 1, 8, 8), np.uint8), np.array([0, 0, 1, 1, 1])
    with pytest.raises(GankitError, match=r"c\.h5: exists and is not a gankit data cache"):
        load(src, cache=str(out))
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["x", "y"] and dict(f.attrs) == {}
    out.unlink()
    build_cache(src, 8, 1, out, workers=1, quiet=True)
    ds = build_cache(src, 12, 1, out, workers=1, quiet=True)  # made for 8×8: rebuilt
    assert ds.x.shape == (5, 1, 12, 12)


# --- image folders ---------------------------------------------------------------------------


def test_non_utf8_file_name_is_cached(tmp_path):
    src = make_folder(tmp_path / "imgs")
    Image.new("L", (9, 9), 7).save(os.fsdecode(os.fsencode(src / "c0") + b"/bad\xff.png"))
    ds = build_cache(src, 8, 1, tmp_path / "c.npy", workers=1, quiet=True)
    assert len(ds) == 6


def test_fifo_in_image_folder_is_named_and_skipped(tmp_path, no_hang):
    src = make_folder(tmp_path / "imgs")
    os.mkfifo(src / "c1" / "0a.png")
    with pytest.raises(GankitError, match=r"c1[/\\]0a\.png: .*not a regular file.*--skip-bad"):
        build_cache(src, 8, 1, tmp_path / "a.npy", workers=1, quiet=True)
    ds = build_cache(src, 8, 1, tmp_path / "b.npy", skip_bad=True, workers=1, quiet=True)
    assert len(ds) == 5 and ds.skipped == 1
    os.mkfifo(src / "c0" / "00.png")  # the file read_images takes its size from
    with pytest.raises(GankitError, match=r"c0[/\\]00\.png: .*not a regular file"):
        read_images(src)


def test_class_folder_linking_to_the_root_is_refused(tmp_path):
    src = make_folder(tmp_path / "imgs")
    (src / "loop").symlink_to(".")
    with pytest.raises(GankitError, match=r"loop: folder links to \S*imgs, which holds it"):
        load(src)


def test_folder_links_inside_class_folders_are_followed_in_sorted_order(tmp_path):
    src, more = make_folder(tmp_path / "imgs"), tmp_path / "more"
    (more / "deeper").mkdir(parents=True)
    for name in ("b.png", "a.png", "deeper/c.png"):
        Image.new("L", (9, 9), 200).save(more / name)
    (src / "c0" / "sub").symlink_to(more)
    (src / "c0" / "0.png").unlink()
    (src / "c0" / "0.png").symlink_to(src / "c0" / "1.png")
    listing = list_image_folder(src)
    assert [listing.relative_name(i) for i in range(len(listing.files))] == [
        "c0/0.png", "c0/1.png", "c0/sub/a.png", "c0/sub/b.png", "c0/sub/deeper/c.png",
        "c1/0.png", "c1/1.png", "c1/2.png",
    ]  # fmt: skip
    ds = load(src)
    assert ds.y.tolist() == [0] * 5 + [1] * 3 and ds.x[2:5].min() == 200


@pytest.mark.parametrize(
    "link, target, named",
    [("c0/up", "..", "c0/up"), ("c0/self", ".", "c0/self"), ("c1/out", "../../ext", "c1/out/in")],
)
def test_folder_link_loops_inside_class_folders_are_named(tmp_path, link, target, named):
    src = make_folder(tmp_path / "imgs")
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "in").symlink_to(src / "c1")  # a loop through ext when c1/out links there
    (src / link).symlink_to(target)
    with pytest.raises(GankitError) as err:
        load(src)
    at = re.escape(named.replace("/", os.sep))
    assert re.fullmatch(
        rf"\S*{at}: folder links to \S*, which holds it \(expected a folder of images\)",
        str(err.value),
    )


def test_nan_float_image_is_a_bad_file(tmp_path):
    src = make_folder(tmp_path / "imgs")
    Image.fromarray(np.full((9, 9), np.nan, np.float32)).save(src / "c0" / "nan.tif")
    with pytest.raises(GankitError, match=r"nan\.tif: .*NaN pixel values"):
        load(src)
    assert load(src, skip_bad=True).skipped == 1


def test_float_image_scaled_to_unit_range_is_a_bad_file(tmp_path):
    """Float pixels are read on the 0..255 scale: an image scaled to [0, 1] would come out
    black (clipped, never rescaled), so it is named instead; one on 0..255 is read as it is."""
    src = make_folder(tmp_path / "imgs")
    ramp = np.linspace(0, 1, 81, dtype=np.float32).reshape(9, 9)
    Image.fromarray(ramp).save(src / "c0" / "unit.tif")
    with pytest.raises(GankitError, match=r"unit\.tif: .*float pixel values all in \[0, 1\]"):
        load(src)
    assert load(src, skip_bad=True).skipped == 1
    Image.fromarray(ramp * 255).save(src / "c0" / "unit.tif")
    assert load(src).skipped == 0


def test_decodable_images_print_no_pil_warnings(tmp_path, monkeypatch):
    src = make_folder(tmp_path / "imgs")
    jpeg = io.BytesIO()
    Image.new("RGB", (9, 9)).save(jpeg, "JPEG")
    b = jpeg.getvalue()
    bad_exif = b"\xff\xe1\x00\x10Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff"
    (src / "c0" / "exif.jpg").write_bytes(b[:2] + bad_exif + b[2:])
    Image.new("L", (100, 100)).save(src / "c1" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 10,000 px: a warning, not an error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(load(src)) == 7
    assert [str(w.message) for w in caught] == []


# --- arrays ----------------------------------------------------------------------------------


def _giant_npz(path: Path) -> None:
    """An .npz whose x.npy header claims 10**9 images of 28x28."""
    head = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)}
    np.lib.format.write_array_header_1_0(head, header)
    y = io.BytesIO()
    np.save(y, np.zeros(4, np.int64))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", head.getvalue() + bytes(4 * 784))
        z.writestr("y.npy", y.getvalue())


X = np.zeros((4, 8, 8), np.uint8)
Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "arrays, message",
    [
        (None, r"not a readable \.npz file \(Unable to allocate"),
        ({"x": X, "y": Y, "class_names": np.array("ab")}, "'class_names' must be a non-empty list"),
        ({"x": X, "y": Y, "class_names": np.array(["a", "a"])}, "'class_names' repeats 'a'"),
        ({"x": np.zeros((4, 0, 0), np.uint8), "y": Y}, "images 'x' have zero size"),
        (
            {"x": X, "y": np.array([0, 1, 0, 2**63 + 5], np.uint64)},
            r"labels 'y' must be class indices below 100,000 \(.*\), found 9223372036854775813$",
        ),
    ],
)
def test_bad_npz_is_named(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    _giant_npz(path) if arrays is None else np.savez(path, **arrays)
    with pytest.raises(GankitError, match=f"d\\.npz: {message}"):
        load(path)


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"skipped": "many"}, "'skipped' must be a count >= 0, got 'many'"),
        ({"class_names": "ab"}, "'class_names' must be a non-empty list of strings, got 'ab'"),
        ({"class_names": ["a", ["b"]]}, "'class_names' must be a non-empty list of strings"),
        ({"class_names": ["a"]}, r"d\.labels\.npy \(classes of d\.meta\.json\): labels must lie"),
    ],
)
def test_bad_npy_metadata_is_named(tmp_path, meta, message):
    np.save(tmp_path / "d.npy", X)
    np.save(tmp_path / "d.labels.npy", Y)
    (tmp_path / "d.meta.json").write_text(json.dumps(meta))
    with pytest.raises(GankitError, match=message) as err:
        load(tmp_path / "d.npy")
    assert "d.meta.json" in str(err.value)


def test_bad_h5_is_named(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "g.h5", "w") as f:
        f.create_group("x")
        f["y"] = Y
    with pytest.raises(GankitError, match=r"g\.h5: missing HDF5 dataset\(s\) x"):
        load(tmp_path / "g.h5")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["x"], f["y"] = X, Y
        f.attrs["skipped"] = '"x"'
    with pytest.raises(GankitError, match=r"s\.h5: 'skipped' must be a count >= 0, got 'x'"):
        load(tmp_path / "s.h5")


# --- CIFAR -----------------------------------------------------------------------------------


def _cifar(root: Path, labels: list, names: object = None) -> Path:
    """A CIFAR-100 folder of two images (``train`` + ``meta``)."""
    root.mkdir()
    data = np.zeros((2, 3072), np.uint8)
    (root / "train").write_bytes(pickle.dumps({b"data": data, b"fine_labels": labels}))
    names = [b"a", b"b"] if names is None else names
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": names}))
    return root


@pytest.mark.parametrize(
    "labels, names, message",
    [
        ([b"x", b"y"], None, r"train: labels 'fine_labels' must be integers, got \|S1"),
        ([10**30, 0], None, "train: labels 'fine_labels' must be integers, got object"),
        ([0.5, 1.0], None, "train: labels 'fine_labels' must be integers, got float64"),
        ([0, 1], 5, "meta: 'fine_label_names' must be a non-empty list of strings"),
        ([0, 1], b"ab", "meta: 'fine_label_names' must be a non-empty list of strings"),
    ],
)
def test_bad_cifar_is_named(tmp_path, labels, names, message):
    with pytest.raises(GankitError, match=message):
        load(_cifar(tmp_path / "cifar", labels, names))


# --- measured data sets ----------------------------------------------------------------------


def _measured(path: Path, **change) -> Path:
    x = np.zeros((2, 1, 8, 8), np.uint8)
    data = MeasuredDataset(x, np.array([0, 1]), np.zeros((2, 1, 8, 8), bool),
                           "block_pixels:p=0.5", (1, 8, 8), ["a", "b"], "s", "s")  # fmt: skip
    write_measured(path, data)
    with np.load(path) as f:
        arrays = {**f, **change}
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_shape": np.array(5)}, r"'image_shape' must be 3 positive integers"),
        ({"image_shape": np.array([1])}, r"'image_shape' must be 3 positive integers"),
        ({"x": np.zeros((2, 5), np.uint8)}, r"'x' holds measurements of shape \(5,\)"),
        ({"class_names": np.array("ab")}, "'class_names' must be a non-empty list"),
        ({"x": np.full((2, 1, 8, 8), np.nan, np.float32)}, "'x' holds NaN or infinite"),
    ],
)
def test_bad_measured_npz_is_named(tmp_path, change, message):
    assert len(read_measured(_measured(tmp_path / "ok.npz"))) == 2
    with pytest.raises(GankitError, match=f"m\\.npz: {message}"):
        read_measured(_measured(tmp_path / "m.npz", **change))


def test_a_data_path_that_is_a_fifo_is_one_line_not_a_hang(tmp_path):
    """Opening a FIFO would block until a writer comes: refused before anything reads it."""
    fifo = tmp_path / "x.npz"
    os.mkfifo(fifo)
    with pytest.raises(GankitError, match=r"x\.npz': not a regular file or a folder$"):
        load_dataset(DataConfig(path=str(fifo)), 28, 1)


def test_images_that_are_a_fifo_are_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "x.npz"
    os.mkfifo(fifo)
    with pytest.raises(GankitError, match=r"x\.npz': not a regular file or a folder$"):
        read_images(fifo)
