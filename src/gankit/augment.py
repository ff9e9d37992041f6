"""Differentiable augmentation (DiffAugment, Zhao et al. 2020, "Differentiable augmentation for
data-efficient GAN training", §3): the same random transforms ``T`` are applied to real *and*
generated images before D, in the D step (``D(T(x))``, ``D(T(G(z)))``) and in the G step
(``D(T(G(z)))``), and every transform is differentiable, so G learns through ``T``.

A *policy* is a comma-separated list of transforms applied in its order (``train.diffaug``,
e.g. ``"color,translation,cutout"``; ``""`` = off). Every sample draws its own parameters from
the caller's ``torch.Generator`` (the trainer's latent RNG, so runs stay resumable), with the
paper's default ranges; images are ``x: (B, C, H, W)`` in ``[-1, 1]``:

* ``color``: three steps in this order,
  brightness ``x + (b - 0.5)``, ``b ~ U[0, 1)``;
  saturation ``(x - m_c) * 2s + m_c``, ``s ~ U[0, 1)``, ``m_c`` the per-pixel channel mean
  (a no-op on grey images);
  contrast ``(x - m) * (c + 0.5) + m``, ``c ~ U[0, 1)``, ``m`` the per-image mean.
* ``translation``: shift by integers ``(dy, dx)``, each uniform in ``{-s, ..., s}`` with
  ``s = int(side / 8 + 0.5)`` (4 pixels at 28), zero-filled (0 = mid-grey in ``[-1, 1]``):
  ``out[i, j] = x[i - dy, j - dx]``.
* ``cutout``: one square of side ``q = int(side / 2 + 0.5)`` set to 0; its rows are
  ``[r - q // 2, r - q // 2 + q)`` clipped to the image with ``r`` uniform in
  ``{0, ..., H - (q mod 2)}`` (so the square may be partly outside), columns likewise.

Consistency regularisation (:func:`gankit.regularizers.consistency_reg`) takes its transform
from the same functions (``train.cr_augment``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gankit.errors import GankitError

TRANSLATION_RATIO = 1 / 8  # max shift / side (paper default)
CUTOUT_RATIO = 1 / 2  # cutout side / image side (paper default)


def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """One ``U[0, 1)`` draw per sample, shaped ``(B, 1, 1, 1)`` like ``x``."""
    return torch.rand(
        (x.shape[0], 1, 1, 1), generator=generator, device=x.device, dtype=torch.float32
    ).to(x.dtype)


def color(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Brightness, saturation, contrast (module doc) of ``x: (B, C, H, W)``."""
    x = x + (_uniform(x, generator) - 0.5)
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * (2.0 * _uniform(x, generator)) + m
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * (_uniform(x, generator) + 0.5) + m


def _offsets(n: int, low: int, high: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` integers uniform in ``{low, ..., high}`` on ``x``'s device, shaped ``(n, 1)``."""
    return torch.randint(low, high + 1, (n, 1), generator=generator, device=x.device)


def translation(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Zero-filled integer shift of ``x: (B, C, H, W)`` by up to 1/8 of each side."""
    b, _, h, w = x.shape
    sy, sx = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy, dx = _offsets(b, -sy, sy, x, generator), _offsets(b, -sx, sx, x, generator)
    rows = torch.arange(h, device=x.device) - dy  # (B, H): source row of each output row
    cols = torch.arange(w, device=x.device) - dx  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None]
    src = x.permute(0, 2, 3, 1)  # (B, H, W, C): gather pixels, keep channels together
    out = src[batch, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
    return (out * inside[..., None].to(x.dtype)).permute(0, 3, 1, 2)


def cutout(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Zero one square of half the side of ``x: (B, C, H, W)`` per sample (module doc)."""
    b, _, h, w = x.shape
    qy, qx = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = _offsets(b, 0, h - qy % 2, x, generator) - qy // 2
    left = _offsets(b, 0, w - qx % 2, x, generator) - qx // 2
    rows = torch.arange(h, device=x.device) - top  # (B, H): row position inside the square
    cols = torch.arange(w, device=x.device) - left
    hole = ((rows >= 0) & (rows < qy))[:, :, None] & ((cols >= 0) & (cols < qx))[:, None, :]
    return x * (~hole)[:, None].to(x.dtype)


TRANSFORMS: dict[str, Callable[[Tensor, torch.Generator | None], Tensor]] = {
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


def parse_policy(policy: str, key: str = "train.diffaug") -> list[str]:
    """``"color,translation"`` → ``["color", "translation"]``; ``""`` → ``[]``.

    Raises:
        GankitError: an unknown transform name (the message names ``key``).
    """
    names = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [n for n in names if n not in TRANSFORMS]
    if bad:
        raise GankitError(
            f"{key}: unknown transform {bad[0]!r}; expected a comma-separated subset of "
            f"{', '.join(TRANSFORMS)} (or '' for none)"
        )
    return names


def diff_augment(x: Tensor, policy: str, generator: torch.Generator | None = None) -> Tensor:
    """Apply the transforms of ``policy`` in order to ``x: (B, C, H, W)``; ``""`` returns
    ``x`` itself and draws nothing from ``generator``."""
    for name in parse_policy(policy):
        x = TRANSFORMS[name](x, generator)
    return x


def d_input(
    first: Tensor,
    second: Tensor,
    y_first: Tensor,
    y_second: Tensor,
    policy: str,
    cr_policy: str = "",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """What D sees in one forward: ``cat(T(first), T(second))`` and, for consistency
    regularisation (``cr_policy`` non-empty), ``T'(T(first))`` appended; with their labels.

    The D step passes ``(real, fake)``, the G step ``(fake, real)`` (``real`` empty unless the
    loss pairs samples). ``T`` draws independent parameters for every image.

    Args:
        first: ``(B, C, H, W)``; second: ``(B', C, H, W)`` (cast to ``first``'s dtype; may be
            empty).
        y_first, y_second: ``(B,)``, ``(B',)`` labels.
        policy: DiffAugment policy ``T`` (``train.diffaug``), applied to both parts alike.
        cr_policy: the consistency transform ``T'`` (``train.cr_augment``; ``""``: no CR rows).
    Returns:
        images ``(B + B' [+ B], C, H, W)`` and labels ``(B + B' [+ B],)``.
    """
    if len(second):
        first, y_first = torch.cat([first, second.to(first.dtype)]), torch.cat([y_first, y_second])
    x = diff_augment(first, policy, generator)
    if not cr_policy:
        return x, y_first
    n = len(y_first) - len(y_second)
    return torch.cat([x, diff_augment(x[:n], cr_policy, generator)]), torch.cat(
        [y_first, y_first[:n]]
    )
