"""AmbientGAN measurements against their definitions (Bora et al. 2018), written independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gankit.errors import GankitError
from gankit.measurements import (
    build_measurement,
    inpaint,
    invertible_measurements,
    list_measurements,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ALL_SPECS = [
    "block_pixels:p=0.5",
    "conv_noise:sigma=1,noise=0.2",
    "block_patch:k=5",
    "keep_patch:k=5",
    "extract_patch:k=5",
    "pad_rotate_project",
    "pad_rotate_project_theta",
    "gaussian_projection:m=2",
]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 4, c: int = 1, h: int = 12, w: int = 12, seed: int = 0) -> torch.Tensor:
    """Random images in (-1, 1) (no pixel is exactly -1)."""
    return torch.rand(b, c, h, w, generator=gen(seed)) * 1.8 - 0.9


def test_registry_lists_every_family():
    assert list_measurements() == sorted(s.split(":")[0] for s in ALL_SPECS)
    assert invertible_measurements() == ["block_patch", "block_pixels", "conv_noise"]


def test_block_pixels_fraction_is_p_within_binomial_bound():
    x = images(b=16, c=3, h=32, w=32)
    for p in (0.1, 0.5, 0.9):
        y, theta = build_measurement(f"block_pixels:p={p}").measure(x, gen(1))
        blocked = (y == -1).all(dim=1)  # all channels of a pixel together
        assert torch.equal(blocked, theta[:, 0])
        assert torch.equal((y == -1).any(dim=1), blocked)
        n = blocked.numel()
        frac = blocked.float().mean().item()
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5 binomial standard deviations
        assert torch.equal(y[~theta.expand_as(y)], x[~theta.expand_as(x)])  # kept: unchanged
    assert torch.equal(build_measurement("block_pixels:p=0")(x, gen()), x)
    assert (build_measurement("block_pixels:p=1")(x, gen()) == -1).all()


def conv_reference(u: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-padded 2-D convolution of ``u (H, W)`` with the normalised Gaussian truncated at
    ``ceil(3 sigma)``, by explicit sums."""
    r = math.ceil(3 * sigma)
    k = np.array([[math.exp(-(a * a + b * b) / (2 * sigma**2)) for b in range(-r, r + 1)]
                  for a in range(-r, r + 1)])  # fmt: skip
    k /= k.sum()
    h, w = u.shape
    out = np.zeros_like(u)
    for i in range(h):
        for j in range(w):
            for a in range(-r, r + 1):
                for b in range(-r, r + 1):
                    if 0 <= i + a < h and 0 <= j + b < w:
                        out[i, j] += k[a + r, b + r] * u[i + a, j + b]
    return out


@pytest.mark.parametrize("sigma", [0.7, 1.5])
def test_conv_noise_is_gaussian_blur_plus_noise(sigma):
    x = images(b=2, c=2, h=10, w=9).double()
    blur = build_measurement(f"conv_noise:sigma={sigma},noise=0")
    y = blur(x, gen())
    for b in range(2):
        for c in range(2):
            u = ((x[b, c] + 1) / 2).numpy()
            want = 2 * conv_reference(u, sigma) - 1  # blur in [0, 1] units, back to [-1, 1]
            np.testing.assert_allclose(y[b, c].numpy(), want, atol=1e-6)
    noisy = build_measurement(f"conv_noise:sigma={sigma},noise=0.3")
    x = images(b=8, c=1, h=32, w=32)
    y, theta = noisy.measure(x, gen(2))
    torch.testing.assert_close(y - theta, blur(x, gen()), atol=1e-6, rtol=0)
    n = theta.numel()
    assert abs(theta.mean().item()) < 5 * 0.3 / math.sqrt(n)
    assert abs(theta.std().item() - 0.3) < 5 * 0.3 / math.sqrt(2 * n)


def test_conv_noise_makes_its_kernel_once_per_device_and_dtype():
    """No host-to-device copy per call: a CUDA graph can capture the blur."""
    m = build_measurement("conv_noise")
    x = images(b=1, c=1, h=8, w=8)
    assert m._kernel(x) is m._kernel(x + 1)
    assert m._kernel(x.double()).dtype == torch.float64


def test_conv_noise_without_blur_is_noise_alone():
    x = images(b=4, c=1, h=12, w=12)
    y, theta = build_measurement("conv_noise:sigma=0,noise=0.4").measure(x, gen())
    torch.testing.assert_close(y, x + theta, atol=1e-6, rtol=0)
    assert abs(theta.std().item() - 0.4) < 5 * 0.4 / math.sqrt(2 * theta.numel())


def test_patches_follow_the_drawn_corner():
    x = images(b=6, c=2, h=11, w=9)
    k = 4
    block = build_measurement(f"block_patch:k={k}")
    theta = block.sample_theta(x, gen(3))
    assert ((theta[:, 0] >= 0) & (theta[:, 0] <= 11 - k)).all()
    assert ((theta[:, 1] >= 0) & (theta[:, 1] <= 9 - k)).all()
    y_block = block.apply(x, theta)
    y_keep = build_measurement(f"keep_patch:k={k}").apply(x, theta)
    y_extract = build_measurement(f"extract_patch:k={k}").apply(x, theta)
    assert y_extract.shape == (6, 2, k, k)
    for b in range(6):
        top, left = theta[b].tolist()
        inside = torch.zeros(11, 9, dtype=torch.bool)
        inside[top : top + k, left : left + k] = True
        assert (y_block[b][:, inside] == -1).all()
        assert torch.equal(y_block[b][:, ~inside], x[b][:, ~inside])
        assert (y_keep[b][:, ~inside] == -1).all()
        assert torch.equal(y_keep[b][:, inside], x[b][:, inside])
        assert torch.equal(y_extract[b], x[b, :, top : top + k, left : left + k])


def test_patch_corners_cover_every_position():
    x = torch.zeros(2000, 1, 6, 6)
    theta = build_measurement("block_patch:k=4").sample_theta(x, gen(4))
    counts = torch.bincount(theta[:, 0] * 3 + theta[:, 1], minlength=9)
    assert counts.min() > 2000 / 9 - 5 * math.sqrt(2000 / 9)  # each of the 3x3 corners


def rotate_reference(img: np.ndarray, theta: float) -> np.ndarray:
    """Bilinear rotation of a square ``img (P, P)`` about its centre, written out pixel by pixel:
    output (i, j) reads the input at column c + cos(t)(j - c) + sin(t)(i - c) and row
    c - sin(t)(j - c) + cos(t)(i - c), zero outside."""
    p = img.shape[0]
    c = (p - 1) / 2
    out = np.zeros_like(img)
    for i in range(p):
        for j in range(p):
            col = c + math.cos(theta) * (j - c) + math.sin(theta) * (i - c)
            row = c - math.sin(theta) * (j - c) + math.cos(theta) * (i - c)
            r0, c0 = math.floor(row), math.floor(col)
            for rr, wr in ((r0, 1 - (row - r0)), (r0 + 1, row - r0)):
                for cc, wc in ((c0, 1 - (col - c0)), (c0 + 1, col - c0)):
                    if 0 <= rr < p and 0 <= cc < p:
                        out[i, j] += wr * wc * img[rr, cc]
    return out


def test_pad_rotate_project_is_the_sum_after_rotation():
    h = w = 10
    side = math.ceil(math.hypot(h, w))  # 15
    m = build_measurement("pad_rotate_project")
    assert m.output_shape((1, h, w)) == (1, side)
    x = images(b=3, c=1, h=h, w=w, seed=5).double()
    theta = torch.tensor([0.3, 1.1, 2.9], dtype=torch.float64)
    y = m.apply(x, theta)
    top = (side - h) // 2
    for b in range(3):
        padded = np.zeros((side, side))
        padded[top : top + h, top : top + w] = ((x[b, 0] + 1) / 2).numpy()
        want = rotate_reference(padded, float(theta[b])).sum(axis=0) / h
        np.testing.assert_allclose(y[b, 0].numpy(), want, atol=1e-5)
    # closed forms: theta = 0 gives the column sums, theta = pi/2 the row sums reversed
    u = np.zeros((side, side))
    u[top : top + h, top : top + w] = ((x[0, 0] + 1) / 2).numpy()
    y0 = m.apply(x[:1], torch.tensor([0.0], dtype=torch.float64))[0, 0].numpy()
    y90 = m.apply(x[:1], torch.tensor([math.pi / 2], dtype=torch.float64))[0, 0].numpy()
    np.testing.assert_allclose(y0, u.sum(axis=0) / h, atol=1e-6)
    np.testing.assert_allclose(y90, u.sum(axis=1)[::-1] / h, atol=1e-6)


def test_pad_rotate_project_theta_gives_the_angle_to_D():
    x = images(b=5, c=2, h=8, w=8)
    m = build_measurement("pad_rotate_project_theta")
    y, theta = m.measure(x, gen(6))
    assert y.shape == (5, 4, m.output_shape((2, 8, 8))[1])
    assert ((theta >= 0) & (theta < math.pi)).all()
    torch.testing.assert_close(y[:, :2], build_measurement("pad_rotate_project").apply(x, theta))
    torch.testing.assert_close(y[:, 2], torch.cos(theta)[:, None].expand(-1, y.shape[-1]))
    torch.testing.assert_close(y[:, 3], torch.sin(theta)[:, None].expand(-1, y.shape[-1]))


def test_gaussian_projection_is_inner_products_with_the_drawn_vectors():
    x = images(b=3, c=2, h=4, w=5)
    n = 2 * 4 * 5
    y, theta = build_measurement("gaussian_projection:m=3").measure(x, gen(7))
    assert y.shape == (3, 3, n + 1) and theta.shape == (3, 3, n)
    assert torch.equal(y[:, :, :n], theta)
    u = ((x + 1) / 2).reshape(3, n).double().numpy()
    for b in range(3):
        for m in range(3):
            want = float(np.dot(theta[b, m].double().numpy(), u[b])) / math.sqrt(n)
            assert abs(y[b, m, n].item() - want) < 1e-5


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_gradients_flow_and_match_finite_differences(spec):
    m = build_measurement(spec)
    x = images(b=2, c=1, h=8, w=8, seed=8).double().requires_grad_(True)
    theta = m.sample_theta(x, gen(9))
    if spec.startswith("conv_noise"):
        theta = theta.double()
    assert torch.autograd.gradcheck(lambda v: m.apply(v, theta), (x,), eps=1e-6, atol=1e-5)
    y = m(x, gen(9))
    (grad,) = torch.autograd.grad(y.pow(2).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_fresh_theta_per_sample_and_per_call(spec):
    m = build_measurement(spec)
    x = images(b=8, c=1, h=8, w=8)
    g = gen(10)
    _, t1 = m.measure(x, g)
    _, t2 = m.measure(x, g)
    assert not torch.equal(t1, t2)  # a new theta on every call
    assert len({tuple(t.flatten().tolist()) for t in t1}) > 1  # and per sample
    _, again = m.measure(x, gen(10))
    assert torch.equal(again, t1)  # the generator alone fixes theta


@pytest.mark.parametrize(
    "spec, words",
    [
        ("blok_pixels", ["unknown measurement 'blok_pixels'", "block_pixels", "conv_noise"]),
        ("block_pixels:p=1.5", ["p must be in [0, 1]", "1.5"]),
        ("block_pixels:p=-0.1", ["p must be in [0, 1]"]),
        ("block_pixels:p=half", ["p must be a number"]),
        ("block_pixels:q=0.5", ["unknown parameter 'q'", "valid for block_pixels: p"]),
        ("block_pixels:p", ["expected name:key=value"]),
        ("block_pixels:p=0.5,p=0.2", ["parameter 'p' given twice"]),
        ("conv_noise:sigma=-1", ["sigma must be in [0, 100]"]),
        ("conv_noise:sigma=1e300", ["sigma must be in [0, 100], got 1e300"]),
        ("conv_noise:noise=-1", ["noise must be in [0, 100]"]),
        ("conv_noise:noise=1e300", ["noise must be in [0, 100]"]),
        ("block_patch:k=2.5", ["k must be an integer >= 1, got 2.5"]),
        ("gaussian_projection:m=145", ["m=145 projections exceed the 144 values"]),
        ("keep_patch:k=0", ["k must be an integer >= 1"]),
        ("extract_patch:k=13", ["patch size k=13 is larger than the 12x12 images"]),
        ("pad_rotate_project:k=3", ["unknown parameter 'k'", "none"]),
    ],
)
def test_bad_specs_fail_with_one_line_naming_the_spec(spec, words):
    with pytest.raises(GankitError) as err:
        build_measurement(spec, (1, 12, 12), param="train.measurement")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"train.measurement '{spec}'")
    for word in words:
        assert word in msg


def test_patch_larger_than_the_image_also_fails_when_called():
    m = build_measurement("block_patch:k=9")  # no image shape known yet
    with pytest.raises(GankitError, match=r"block_patch:k=9.*larger than the 8x8 images"):
        m(images(h=8, w=8), gen())


def test_canonical_spec_round_trips():
    m = build_measurement("conv-noise: noise=.5 ")
    assert m.spec == "conv_noise:sigma=1.0,noise=0.5"
    assert build_measurement(m.spec).spec == m.spec
    assert build_measurement("pad_rotate_project").spec == "pad_rotate_project"


def test_inpaint_fills_from_known_neighbours_only():
    x = torch.arange(25.0).reshape(1, 1, 5, 5) / 25
    known = torch.ones(1, 1, 5, 5, dtype=torch.bool)
    known[0, 0, 2, 2] = False
    out = inpaint(x, known)
    neighbours = [x[0, 0, 2 + a, 2 + b] for a in (-1, 0, 1) for b in (-1, 0, 1) if a or b]
    torch.testing.assert_close(out[0, 0, 2, 2], torch.stack(neighbours).mean())
    assert torch.equal(out[known], x[known])
    # a constant image is recovered exactly from any known pixel, however large the hole
    flat = torch.full((1, 2, 7, 7), 0.25)
    hole = torch.zeros(1, 1, 7, 7, dtype=torch.bool)
    hole[0, 0, 6, 0] = True
    assert torch.equal(inpaint(flat, hole), flat)
    assert (inpaint(flat, torch.zeros_like(hole)) == -1).all()


def test_wiener_inverts_noise_free_blur():
    x = torch.full((2, 1, 16, 16), -1.0)  # black border wider than the kernel radius (3)
    x[:, :, 4:12, 4:12] = images(b=2, c=1, h=8, w=8, seed=11)
    m = build_measurement("conv_noise:sigma=1,noise=0")
    y, theta = m.measure(x, gen())
    torch.testing.assert_close(m.inverse(y, theta), x, atol=1e-3, rtol=0)


def test_inverses_undo_missing_pixels_better_than_nothing():
    x = torch.zeros(4, 1, 16, 16)
    x[:, :, 4:12, :] = 0.8  # smooth images: in-painting is nearly exact
    for spec in ("block_pixels:p=0.3", "block_patch:k=3"):
        m = build_measurement(spec)
        y, theta = m.measure(x, gen(12))
        assert (m.inverse(y, theta) - x).abs().mean() < 0.1 * (y - x).abs().mean()


def test_no_inverse_is_a_one_line_error():
    m = build_measurement("keep_patch:k=3")
    with pytest.raises(GankitError, match="keep_patch has no approximate inverse.*block_pixels"):
        m.inverse(images(), torch.zeros(4, 2, dtype=torch.long))
