"""FID Inception graph: protocol fidelity against torch-fidelity (golden), TF1 resize, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from golden import make_golden  # tests/ is on sys.path (pytest rootdir-relative import)

from gankit.errors import GankitError
from gankit.metrics.inception import (
    INCEPTION_FILENAME,
    INCEPTION_SHA256,
    FIDInceptionV3,
    default_weights_path,
    load_inception,
    tf1_resize_bilinear,
)

GOLDEN_DIR = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DIR / "inception_golden.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def random_net() -> FIDInceptionV3:
    net = FIDInceptionV3()
    net.load_state_dict(make_golden.random_inception_state(), strict=True)
    return net


def test_features_equal_torch_fidelity(golden, random_net):
    pool3, logits = random_net(make_golden.golden_images())
    assert pool3.shape == (4, 2048) and logits.shape == (4, 1008)
    scale = np.abs(golden["pool3"]).max()
    assert scale > 1.0  # the random weights keep activations alive
    np.testing.assert_allclose(pool3.numpy(), golden["pool3"], rtol=1e-5, atol=1e-5 * scale)
    lscale = np.abs(golden["logits_unbiased"]).max()
    np.testing.assert_allclose(logits.numpy(), golden["logits_unbiased"], atol=1e-5 * lscale)
    # the IS logits are the unbiased ones: adding the fc bias gives the peer's biased logits
    biased = logits + random_net.fc.bias.detach()
    np.testing.assert_allclose(biased.numpy(), golden["logits"], atol=1e-5 * lscale)


def test_grey_images_are_repeated_to_rgb(random_net):
    grey = make_golden.golden_images()[:2, :1, :32, :32]
    a, _ = random_net(grey)
    b, _ = random_net(grey.expand(-1, 3, -1, -1).contiguous())
    torch.testing.assert_close(a, b)


def _tf1_resize_numpy(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Independent loop version of TF1 resize_bilinear(align_corners=False) for (H, W)."""
    in_h, in_w = img.shape
    sy, sx = np.float32(in_h / out_h), np.float32(in_w / out_w)
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        fy = np.float32(i) * sy
        y0 = int(np.floor(fy))
        y1, dy = min(y0 + 1, in_h - 1), float(fy - y0)
        for j in range(out_w):
            fx = np.float32(j) * sx
            x0 = int(np.floor(fx))
            x1, dx = min(x0 + 1, in_w - 1), float(fx - x0)
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * dx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * dx
            out[i, j] = top + (bottom - top) * dy
    return out


@pytest.mark.parametrize(
    "shape,size", [((5, 7), (13, 17)), ((40, 30), (17, 23)), ((8, 8), (299, 299))]
)
def test_resize_matches_numpy_tf1_formula(shape, size):
    img = np.random.RandomState(0).rand(*shape) * 255
    ours = tf1_resize_bilinear(torch.tensor(img).view(1, 1, *shape), size)[0, 0].numpy()
    np.testing.assert_allclose(ours, _tf1_resize_numpy(img, *size), atol=1e-9)


def test_resize_differs_from_half_pixel_interpolate():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    half_pixel = torch.nn.functional.interpolate(x, size=(20, 20), mode="bilinear")
    assert (tf1_resize_bilinear(x, (20, 20)) - half_pixel).abs().max() > 1e-3


def test_resize_matches_torch_fidelity(golden):
    for name, size in (("small", (13, 17)), ("large", (17, 23))):
        x = torch.from_numpy(golden[f"resize_{name}_in"])
        np.testing.assert_allclose(
            tf1_resize_bilinear(x, size).numpy(), golden[f"resize_{name}_out"], atol=1e-4
        )


def test_rejects_non_uint8(random_net):
    with pytest.raises(GankitError, match="uint8"):
        random_net(torch.zeros(1, 3, 8, 8))


def test_missing_weights_error_names_path_and_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    assert default_weights_path() == tmp_path / "inception" / INCEPTION_FILENAME
    with pytest.raises(GankitError) as err:
        load_inception(None)
    msg = str(err.value)
    assert str(default_weights_path()) in msg and INCEPTION_SHA256 in msg and "\n" not in msg


def test_wrong_hash_is_rejected(tmp_path):
    path = tmp_path / INCEPTION_FILENAME
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(GankitError, match="expected " + INCEPTION_SHA256):
        load_inception(path)
