"""DiffAugment transforms against brute force (every allowed shift / square is tried), closed
forms for colour, ``gradcheck`` for differentiability, and the D-input assembly."""

from __future__ import annotations

import itertools

import pytest
import torch

from gankit import augment
from gankit.errors import GankitError


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Brute force: out[i, j] = x[i - dy, j - dx], zero outside (x: (C, H, W))."""
    out = torch.zeros_like(x)
    _, h, w = x.shape
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_translation_is_a_zero_filled_shift_covering_the_paper_range():
    x = torch.rand(300, 2, 28, 28) + 0.5  # no zeros, so every shift is unique
    out = augment.translation(x, _gen())
    s = int(28 / 8 + 0.5)  # 4 pixels
    assert s == 4
    # brute force on a few samples: exactly one shift in the allowed range reproduces it
    for k in range(6):
        hits = [
            (dy, dx)
            for dy, dx in itertools.product(range(-s, s + 1), repeat=2)
            if torch.equal(_shift(x[k], dy, dx), out[k])
        ]
        assert len(hits) == 1
    # all samples: the zero border tells the shift; every value in {-4..4} occurs on both axes
    rows_zero = (out[:, 0] == 0).all(dim=2)  # (B, H) fully zero rows
    dy = torch.where(rows_zero[:, 0], rows_zero.sum(1), -rows_zero.sum(1))
    assert set(dy.tolist()) == set(range(-s, s + 1))
    cols_zero = (out[:, 0] == 0).all(dim=1)
    dx = torch.where(cols_zero[:, 0], cols_zero.sum(1), -cols_zero.sum(1))
    assert set(dx.tolist()) == set(range(-s, s + 1))


def test_cutout_zeroes_one_clipped_half_side_square():
    x = torch.rand(400, 1, 28, 28) + 0.5
    out = augment.cutout(x, _gen(1))
    q = int(28 / 2 + 0.5)  # 14
    hole = out == 0
    assert torch.equal(out[~hole], x[~hole])
    rows, cols = hole[:, 0].any(dim=2), hole[:, 0].any(dim=1)  # (B, H), (B, W)
    centres = set()
    for k in range(len(x)):
        r, c = rows[k].nonzero().flatten(), cols[k].nonzero().flatten()
        expected = torch.zeros(28, 28, dtype=torch.bool)
        expected[r.min() : r.max() + 1, c.min() : c.max() + 1] = True
        assert torch.equal(hole[k, 0], expected)  # one axis-aligned rectangle
        # rows [centre - 7, centre + 7) clipped to [0, 28): recover the centre
        centre = r.max().item() + 1 - q + q // 2 if r.min() == 0 else r.min().item() + q // 2
        centres.add(centre)
        assert len(r) == min(centre - q // 2 + q, 28) - max(centre - q // 2, 0)
    assert centres == set(range(0, 28 + 1))  # centre uniform in {0, ..., H - (q mod 2)}


def test_color_closed_form():
    x = torch.rand(5, 3, 4, 4) * 2 - 1
    out = augment.color(x, _gen(2))
    g = _gen(2)
    b, s, c = (torch.rand(5, 1, 1, 1, generator=g) for _ in range(3))
    y = x + (b - 0.5)  # brightness in [-0.5, 0.5)
    m = y.mean(dim=1, keepdim=True)
    y = (y - m) * (2 * s) + m  # saturation factor in [0, 2)
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - m) * (c + 0.5) + m  # contrast factor in [0.5, 1.5)
    torch.testing.assert_close(out, y)
    grey = torch.rand(5, 1, 4, 4)  # saturation is a no-op on one channel
    g = _gen(3)
    b, _, c = (torch.rand(5, 1, 1, 1, generator=g) for _ in range(3))
    y = grey + (b - 0.5)
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(augment.color(grey, _gen(3)), (y - m) * (c + 0.5) + m)


@pytest.mark.parametrize("name", ["color", "translation", "cutout"])
def test_transforms_are_differentiable(name):
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    fn = augment.TRANSFORMS[name]
    assert torch.autograd.gradcheck(lambda t: fn(t, _gen(5)), (x,))


def test_policy_order_empty_policy_and_bad_names():
    x = torch.randn(3, 1, 8, 8)
    g = _gen(7)
    state = g.get_state()
    assert augment.diff_augment(x, "", g) is x
    assert torch.equal(g.get_state(), state)  # "" draws nothing
    both = augment.diff_augment(x, "translation, cutout", _gen(8))
    g = _gen(8)
    torch.testing.assert_close(both, augment.cutout(augment.translation(x, g), g))
    with pytest.raises(GankitError, match="train.diffaug: unknown transform 'flip'"):
        augment.diff_augment(x, "color,flip")
    with pytest.raises(GankitError, match="train.cr_augment"):
        augment.parse_policy("zoom", "train.cr_augment")


def test_d_input_concatenates_augments_and_appends_cr_rows():
    real, fake = torch.rand(4, 1, 8, 8) + 1, -torch.rand(3, 1, 8, 8) - 1
    y_real, y_fake = torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7])
    images, labels = augment.d_input(real, fake, y_real, y_fake, "translation", "cutout", _gen(9))
    g = _gen(9)
    t = augment.translation(torch.cat([real, fake]), g)  # one draw per image, reals and fakes
    expected = torch.cat([t, augment.cutout(t[:4], g)])
    torch.testing.assert_close(images, expected)
    assert labels.tolist() == [0, 1, 2, 3, 5, 6, 7, 0, 1, 2, 3]
    # the G step: fakes first, no reals, no CR rows; the policy still applies
    images, labels = augment.d_input(fake, real[:0], y_fake, y_real[:0], "cutout", "", _gen(1))
    torch.testing.assert_close(images, augment.cutout(fake, _gen(1)))
    assert labels.tolist() == [5, 6, 7]
