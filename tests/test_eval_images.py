"""``gankit eval --images``: samples of any generator, scored like a run's samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_fixtures import saved_run, tiny_cfg

from gankit.cli import main
from gankit.data import read_images
from gankit.data.preprocess import resize_clean
from gankit.errors import GankitError, ParameterError
from gankit.evaluation import evaluate_images

pytestmark = pytest.mark.usefixtures("one_thread")

RES, K = 32, 4
OFFLINE = "class_acc,cfid,swd,cprdc,ccoverage_class"


def _pattern(c: int, rng: np.random.RandomState) -> np.ndarray:
    """Class c: a bright 12×12 square in quadrant c, plus noise; uint8 (RES, RES)."""
    img = rng.randint(0, 40, (RES, RES))
    r, q = divmod(c, 2)
    img[16 * r + 2 : 16 * r + 14, 16 * q + 2 : 16 * q + 14] += 200
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A labelled toy reference, a saved run trained on it (4 classes) and its samples."""
    tmp = tmp_path_factory.mktemp("evimg")
    mp = pytest.MonkeyPatch()
    mp.setenv("GANKIT_CACHE", str(tmp / "cache"))
    rng = np.random.RandomState(0)
    y = np.arange(200) % K
    np.savez(tmp / "ref.npz", x=np.stack([_pattern(c, rng) for c in y]), y=y)
    run = saved_run(tmp / "run", tiny_cfg(tmp / "ref.npz", f"model.n_classes={K}"))
    yield tmp, run
    mp.undo()


def _cli_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_images_from_gankit_sample_score_like_the_run(setup, capsys):
    tmp, run = setup
    ref, samples = str(tmp / "ref.npz"), str(tmp / "s.npz")
    assert main(["sample", str(run), "--out", samples, "--n", "60", "--seed", "3"]) == 0
    log = run / "metrics.jsonl"
    rows = log.read_text().count("\n") if log.exists() else 0
    common = ["--metrics", OFFLINE, "--data", ref, "--device", "cpu", "--quiet"]
    of_run = _cli_json(capsys, ["eval", str(run), "--n", "60", "--seed", "3", *common])
    assert log.read_text().count("\n") == rows + 1
    of_images = _cli_json(capsys, ["eval", "--images", samples, *common])
    assert log.read_text().count("\n") == rows + 1  # nothing appended
    assert of_images["eval"] == of_run["eval"]  # the very same numbers
    assert set(of_images) == set(of_run)
    assert of_images["source"] == samples and of_images["step"] is None
    assert of_images["truncation"] is None and of_images["seed"] is None
    for result in (of_run, of_images):
        assert result["n"] == 60 and result["resize"] == "legacy"
        # min(n, 160) of the classifier's 80 % training split; its 40 held-out images
        assert (result["n_reference_offline"], result["n_real_heldout"]) == (60, 40)
        assert "classifier training split (80 %" in result["reference_split"]["offline"]


def test_png_folder_and_npz_of_the_same_images_agree(setup):
    tmp, _ = setup
    rng = np.random.RandomState(1)
    labels = np.arange(40) % K
    x = np.stack([_pattern(c, rng) for c in labels])
    np.savez(tmp / "same.npz", x=x[..., None], y=labels)
    for i, (img, c) in enumerate(zip(x, labels)):
        (tmp / "pngs" / str(c)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp / "pngs" / str(c) / f"{i:03d}.png")
    kw = dict(data=str(tmp / "ref.npz"), device="cpu", quiet=True)
    a = evaluate_images(tmp / "same.npz", OFFLINE.split(","), **kw)
    b = evaluate_images(tmp / "pngs", OFFLINE.split(","), **kw)
    # the folder lists class by class: the same set of images, in another order
    assert a["n"] == b["n"] == 40
    for key in ("class_acc", "cfid", "swd", "cprecision", "crecall", "ccoverage_class_mean"):
        assert a["eval"][key] == pytest.approx(b["eval"][key], rel=1e-5, abs=1e-6), key
    assert a["eval"]["class_acc"] > 0.9  # the real class patterns are recognised


def test_labels_by_class_folder_name(setup):
    """Class folders named like the reference classes keep their class, whatever the order."""
    tmp, _ = setup
    rng = np.random.RandomState(2)
    for c in (3, 1):  # only two of the four classes, so sorted index != class
        (tmp / "two" / str(c)).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(_pattern(c, rng)).save(tmp / "two" / str(c) / f"{i}.png")
    out = evaluate_images(
        tmp / "two", ["class_acc"], data=str(tmp / "ref.npz"), device="cpu", quiet=True
    )
    assert out["eval"]["class_acc"] > 0.9


def test_unlabelled_images_take_label_free_metrics_only(setup):
    tmp, _ = setup
    rng = np.random.RandomState(3)
    np.savez(tmp / "nolab.npz", x=np.stack([_pattern(c % K, rng) for c in range(20)]))
    kw = dict(data=str(tmp / "ref.npz"), device="cpu", quiet=True)
    out = evaluate_images(tmp / "nolab.npz", ["swd", "cfid", "cprdc"], **kw)
    assert set(out["eval"]) >= {"swd", "cfid", "cprecision"}
    with pytest.raises(GankitError, match=r"have no labels.*class_acc, ccoverage_class need") as e:
        evaluate_images(tmp / "nolab.npz", ["swd", "class_acc", "ccoverage_class"], **kw)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_one_line_errors(setup, capsys):
    tmp, run = setup
    kw = dict(data=str(tmp / "ref.npz"), device="cpu", quiet=True)
    np.savez(tmp / "flat.npz", x=np.zeros((20, 5), np.uint8))
    np.savez(tmp / "far.npz", x=np.zeros((20, 32, 32), np.uint8), y=np.full(20, 7))
    np.savez(tmp / "few.npz", x=np.zeros((12, 32, 32), np.uint8), y=np.zeros(12, np.int64))
    np.savez(tmp / "five.npz", x=np.zeros((5, 32, 32), np.uint8), y=np.zeros(5, np.int64))
    np.savez(tmp / "tiny.npz", x=np.zeros((20, 2, 2), np.uint8), y=np.zeros(20, np.int64))
    cases = [
        (dict(images=tmp / "missing.npz"), GankitError, "does not exist"),
        (dict(images=tmp / "flat.npz"), GankitError, r"must be \(N, H, W\).*got shape \(20, 5\)"),
        (dict(images=tmp / "few.npz", n=50), ParameterError, r"^n: 50 images requested.*12"),
        (dict(images=tmp / "far.npz"), GankitError, r"labels must lie in \[0, 3\].*\[7, 7\]"),
        (dict(images=tmp / "few.npz", resize="cubic"), ParameterError, "^resize: expected"),
        (dict(images=tmp / "five.npz"), ParameterError, r"^images: .*five.npz holds 5; expected"),
        (dict(images=tmp / "tiny.npz"), GankitError, r"^images '.*tiny.npz': resolution = 2: "),
        (dict(images=tmp / "few.npz", batch_size=0), ParameterError, "^batch_size: expected a"),
    ]
    for extra, error, match in cases:
        with pytest.raises(error, match=match) as e:
            evaluate_images(metrics=["class_acc"], **{**kw, **extra})
        assert "\n" not in str(e.value)
    for argv, line in [
        (["eval", "--metrics", "swd"], "SOURCE: give a run directory/checkpoint or --images"),
        (["eval", str(run), "--images", str(tmp / "few.npz")], "SOURCE: give a run"),
        (["eval", "--images", str(tmp / "few.npz"), "--seed", "1"], "--seed: applies to a run"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert line in err and err.count("\n") == 1


def _keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys (1981) cubic convolution kernel."""
    t = np.abs(t)
    return np.where(
        t < 1,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        np.where(t < 2, a * (((t - 5) * t + 8) * t - 4), 0.0),
    )


def _cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Antialiased cubic resampling along one axis: output pixel j centred at (j + 0.5) s in
    input coordinates (s = n_in / n_out); when shrinking, the kernel is stretched by s; weights
    over the pixels inside the support, normalised to sum 1."""
    s = n_in / n_out
    stretch = max(s, 1.0)
    w = np.zeros((n_out, n_in))
    for j in range(n_out):
        centre = (j + 0.5) * s
        lo = max(int(centre - 2 * stretch + 0.5), 0)
        hi = min(int(centre + 2 * stretch + 0.5), n_in)
        i = np.arange(lo, hi)
        w[j, lo:hi] = _keys_cubic((i + 0.5 - centre) / stretch)
        w[j] /= w[j].sum()
    return w


@pytest.mark.parametrize("size_in,size_out", [((20, 24), (7, 9)), ((5, 6), (12, 11))])
def test_clean_resize_is_antialiased_bicubic(size_in, size_out):
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, *size_in))
    want = np.einsum("oh,nchw,pw->ncop", _cubic_matrix(size_in[0], size_out[0]), x,
                     _cubic_matrix(size_in[1], size_out[1])).clip(0, 255)  # fmt: skip
    got = resize_clean(x, size_out)
    assert got.dtype == np.float32 and got.shape == (2, 3, *size_out)
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_clean_resize_applies_when_images_are_fitted(setup):
    """A folder is read at its first image's size (32: kept as is); a larger image in it is
    fitted to that size with the chosen filter (legacy bilinear vs clean bicubic differ)."""
    tmp, _ = setup
    rng = np.random.default_rng(4)
    (tmp / "mixed").mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(tmp / "mixed/a.png")
    big = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(big).save(tmp / "mixed/b.png")
    legacy, labelled = read_images(tmp / "mixed")
    clean, _ = read_images(tmp / "mixed", resize="clean")
    assert not labelled and legacy.x.shape == clean.x.shape == (2, 1, 32, 32)
    assert np.array_equal(legacy.x[0], clean.x[0])
    want = np.rint(resize_clean(big[None, None].astype(np.float32), (32, 32)))[0]
    assert np.array_equal(clean.x[1], want.astype(np.uint8))
    assert not np.array_equal(legacy.x[1], clean.x[1])


def test_inception_score_alone_extracts_no_reference(setup, monkeypatch):
    """IS reads no real images: asked alone it pushes none through Inception (the whole
    reference, by default up to 50,000 images, was extracted for nothing)."""
    import gankit.evaluation as evaluation
    import gankit.metrics.inception as inception

    def random_inception(weights=None, device="cpu"):
        torch.manual_seed(0)
        return inception.FIDInceptionV3().to(device).eval()

    subsets = []
    real_features = evaluation._real_features
    monkeypatch.setattr(inception, "load_inception", random_inception)
    monkeypatch.setattr(
        evaluation,
        "_real_features",
        lambda ds, source, content, idx, ext, subset, quiet: (
            subsets.append(subset) or real_features(ds, source, content, idx, ext, subset, quiet)
        ),
    )
    tmp, run = setup
    kw = dict(n=10, data=str(tmp / "ref.npz"), device="cpu", quiet=True)
    alone = evaluation.evaluate(run, ["is"], **kw)
    assert subsets == [] and "n_reference" not in alone
    with_fid = evaluation.evaluate(run, ["is", "fid"], **kw)
    assert subsets == ["all"] and with_fid["eval"]["is_mean"] == alone["eval"]["is_mean"]


@pytest.mark.slow
@pytest.mark.parametrize("resize", ["legacy", "clean"])
def test_inception_metrics_of_images_equal_the_run(setup, monkeypatch, resize):
    """fid/kid/is/prdc/intra_fid with a random-weight Inception (no download): images saved
    by ``gankit sample`` give the run's numbers, in both resize modes."""
    import gankit.metrics.inception as inception
    from gankit.evaluation import evaluate

    def random_inception(weights=None, device="cpu"):
        torch.manual_seed(0)
        return inception.FIDInceptionV3().to(device).eval()

    monkeypatch.setattr(inception, "load_inception", random_inception)
    tmp, run = setup
    assert main(["sample", str(run), "--out", str(tmp / "i.npz"), "--n", "20"]) == 0
    names = ["fid", "kid", "is", "prdc", "intra_fid"]
    kw = dict(data=str(tmp / "ref.npz"), device="cpu", quiet=True, resize=resize)
    a = evaluate(run, names, n=20, **kw)
    b = evaluate_images(Path(tmp / "i.npz"), names, **kw)
    assert a["eval"] == b["eval"] and a["resize"] == b["resize"] == resize
    assert "whole data set" in b["reference_split"]["inception"]
