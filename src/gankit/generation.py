"""Generation from a generator ``G``: batched no-grad samples, grids (.png), arrays (.npz) and
interpolation strips. Loading ``G`` from a run is :func:`gankit.run.load_generator`.

Interpolation (:func:`interpolation_strip`) gives one strip of ``n`` frames:

- ``z``: linear interpolation ``z_t = (1 - t) z_a + t z_b`` between two random latents, with the
  class fixed (the first of ``classes``, default 0);
- ``class``: z fixed, the class condition of the two ``classes`` a, b mixed linearly. Every
  class-dependent vector of G is replaced by ``(1 - t) v(a) + t v(b)``: the shared class
  embedding (BigGAN; the linear CBN maps then mix gains and biases too) or the per-class CBN gain
  and bias rows (SAGAN/SNGAN) — the same as feeding G the one-hot mixture
  ``(1 - t) e_a + t e_b``.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import nn

from gankit.data import to_uint8
from gankit.errors import GankitError, ParameterError, check_int, check_path, check_seed
from gankit.io_utils import atomic_write
from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d
from gankit.models import sample_z
from gankit.models.latent import check_truncation

__all__ = [
    "INTERPOLATIONS",
    "OUTPUT_SUFFIXES",
    "eval_mode",
    "generate",
    "grid_image",
    "interpolate_images",
    "interpolation_strip",
    "make_grid",
    "sample",
    "sample_batches",
    "save_grid",
    "save_npz",
    "write_samples",
]

OUTPUT_SUFFIXES = (".png", ".npz")
INTERPOLATIONS = ("z", "class")


def make_grid(images: torch.Tensor, ncol: int, pad: int = 2) -> np.ndarray:
    """Tile uint8 ``images (N, C, H, W)`` row-major into ``ncol`` columns with ``pad`` black
    pixels between tiles → ``(rows*(H+pad)+pad, ncol*(W+pad)+pad, C)`` uint8."""
    n, c, h, w = images.shape
    ncol = max(1, min(ncol, n))
    rows = -(-n // ncol)
    grid = np.zeros((rows * (h + pad) + pad, ncol * (w + pad) + pad, c), dtype=np.uint8)
    arr = images.cpu().numpy().transpose(0, 2, 3, 1)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top : top + h, left : left + w] = arr[i]
    return grid


def grid_image(images: torch.Tensor, ncol: int) -> Image.Image:
    """uint8 ``images (N, C, H, W)`` (C = 1 or 3) as one grid of ``ncol`` columns: a PIL image
    of mode ``L`` or ``RGB``."""
    grid = make_grid(images, ncol)
    return Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)


def save_npz(
    file: str | Path | BinaryIO, images: torch.Tensor, labels: torch.Tensor, **extra: np.ndarray
) -> None:
    """Write samples as ``.npz``: ``x`` uint8 ``(N, H, W, C)`` from ``images (N, C, H, W)``,
    ``y`` int64 ``(N,)`` from ``labels``, plus any ``extra`` arrays."""
    x = images.permute(0, 2, 3, 1).cpu().numpy()
    np.savez(file, x=x, y=labels.cpu().numpy().astype(np.int64), **extra)


def save_grid(images: torch.Tensor, path: str | Path, ncol: int) -> Path:
    """Write uint8 ``images (N, C, H, W)`` (C = 1 or 3) as one PNG grid of ``ncol`` columns
    (atomically: a kill leaves the previous file or none, never a truncated one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = grid_image(images, ncol)
    return atomic_write(path, lambda f: grid.save(f, format="PNG"))


def _class_list(classes: Sequence[int] | None, n_classes: int) -> list[int]:
    """``classes`` (a sequence of class indices, a 1-D integer array or tensor; ``None`` or
    empty: all) as a list of ints in ``0..n_classes-1``, else a ParameterError."""
    if isinstance(classes, (torch.Tensor, np.ndarray)):
        classes = classes.tolist()
    if classes is not None and (
        isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__")
    ):
        raise ParameterError(
            "classes", f"expected a list of class indices, got {type(classes).__name__}"
        )
    chosen = list(range(n_classes)) if not classes else list(classes)
    if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in chosen):
        raise ParameterError("classes", f"expected integer class indices, got {chosen!r:.80}")
    chosen = [int(c) for c in chosen]
    bad = [c for c in chosen if not 0 <= c < n_classes]
    if bad:
        raise ParameterError(
            "classes",
            f"{', '.join(map(str, bad))} out of range; the model has classes 0..{n_classes - 1}",
        )
    return chosen


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Inside, ``module`` is in eval mode; every submodule's own mode is restored on exit."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def _mixed_classes(G: nn.Module, y_b: torch.Tensor, t: torch.Tensor) -> Iterator[None]:
    """Inside, every class-dependent vector ``v(y)`` of G becomes ``(1-t) v(y) + t v(y_b)``
    (``t: (B,)``). Covers ``nn.Embedding`` (shared embedding) and per-class conditional BN."""
    w = t[:, None]
    handles, patched = [], []

    def mix_embedding(module: nn.Embedding, inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        return torch.lerp(out, module.forward(y_b), w)

    for m in G.modules():
        if isinstance(m, nn.Embedding):
            handles.append(m.register_forward_hook(mix_embedding))
        elif isinstance(m, ConditionalBatchNorm2d) and not m.shared:

            def gamma_beta(cond: torch.Tensor, m: ConditionalBatchNorm2d = m):
                (ga, ba), (gb, bb) = type(m).gamma_beta(m, cond), type(m).gamma_beta(m, y_b)
                return torch.lerp(ga, gb, w), torch.lerp(ba, bb, w)

            m.gamma_beta = gamma_beta
            patched.append(m)
    if not handles and not patched:
        raise GankitError("class interpolation: this generator has no class embedding to mix")
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m in patched:
            del m.gamma_beta


def generate(
    G: nn.Module,
    labels: torch.Tensor,
    batch_size: int = 100,
    truncation: float = 0.0,
    generator: torch.Generator | None = None,
    z: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An iterator of ``(uint8 (B, C, H, W), labels (B,))`` batches of ``G(z, labels)``, at
    most ``batch_size`` samples per forward pass (images on G's device, labels as given).

    Args:
        labels: ``(n,)`` class of every sample, in output order.
        z: ``(n, dim_z)`` latents, used as given (cast to G's dtype); if None each batch's
            ``z`` is drawn with :func:`~gankit.models.sample_z` from ``generator`` (a
            ``torch.Generator`` on G's device, or None) and ``truncation``, in G's dtype.

    Raises:
        ParameterError: a bad argument, or ``truncation``/``generator`` given with ``z`` (at
            the call, not at the first batch).
    """
    _check_batch_size(batch_size)
    _check_generator(G)
    _check_labels(labels, G.n_classes)
    check_truncation(truncation)
    param = next(G.parameters())
    _check_rng(generator, param.device)
    if z is not None:
        _check_z(z, len(labels), G.dim_z)
        if truncation or generator is not None:
            raise ParameterError(
                "truncation" if truncation else "generator",
                "applies only to drawn latents; a given z is used as is (leave out one of them)",
            )
    return _batches(G, labels, batch_size, truncation, generator, z)


@torch.no_grad()
def _batches(
    G: nn.Module,
    labels: torch.Tensor,
    batch_size: int,
    truncation: float,
    generator: torch.Generator | None,
    z: torch.Tensor | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of :func:`generate`, whose arguments are checked."""
    param = next(G.parameters())
    for start in range(0, len(labels), batch_size):
        y = labels[start : start + batch_size]
        if z is None:
            zb = sample_z(len(y), G.dim_z, truncation, generator=generator, device=param.device)
        else:
            zb = z[start : start + batch_size]
        yield to_uint8(G(zb.to(param.device, param.dtype), y.to(param.device, torch.long))), y


MAX_SAMPLES = 1_000_000
"""Most samples one call draws: all their latents are drawn up front (1M x 128 floats: 0.5 GB)."""
INT_TYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)
MAX_STRIP = 1024
"""Most frames of one interpolation strip (one forward pass, one row of the image)."""


def _check_batch_size(batch_size: int) -> None:
    expected = f"a number of samples per pass in 1..{MAX_SAMPLES}"
    check_int("batch_size", batch_size, 1, MAX_SAMPLES, expected)


def check_sample_count(n: int, seed: int = 0, param: str = "n") -> None:
    """ParameterError unless ``n`` (named ``param``) is in ``1..MAX_SAMPLES`` and ``seed`` a
    valid seed: what sampling checks, for callers that check before loading anything."""
    check_int(param, n, 1, MAX_SAMPLES, f"a number of samples in 1..{MAX_SAMPLES}")
    check_seed(seed)


def _check_generator(G: object) -> None:
    """``G``: a gankit generator (``gankit.load`` returns one) in eval mode, not a path or
    another module. In training mode its batch norms would use (and update) the statistics of
    each batch, and its spectral norms would advance their vectors."""
    if not (isinstance(G, nn.Module) and hasattr(G, "n_classes") and hasattr(G, "dim_z")):
        raise ParameterError(
            "G", f"expected a generator (e.g. gankit.load(RUN)), got {type(G).__name__}"
        )
    if G.training:
        raise ParameterError("G", "expected a generator in eval mode (call G.eval() first)")


def _check_rng(generator: object, device: torch.device) -> None:
    """``generator``: None or a ``torch.Generator`` on ``device`` (G's)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        got = type(generator).__name__
        raise ParameterError("generator", f"expected a torch.Generator or None, got {got}")
    if generator is not None and generator.device.type != device.type:
        raise ParameterError(
            "generator",
            f"expected a torch.Generator on G's device {device}, got {generator.device}",
        )


def _check_z(z: object, n: int, dim_z: int) -> None:
    """``z``: a finite float tensor ``(n, dim_z)``, one latent per label."""
    ok = isinstance(z, torch.Tensor) and z.dtype.is_floating_point and tuple(z.shape) == (n, dim_z)
    if not ok:
        got = f"{z.dtype} {tuple(z.shape)}" if isinstance(z, torch.Tensor) else type(z).__name__
        raise ParameterError("z", f"expected a float tensor ({n}, {dim_z}), got {got}")
    if not bool(torch.isfinite(z).all()):
        raise ParameterError("z", "expected finite latents, found NaN or Inf")


def _check_labels(labels: object, n_classes: int) -> None:
    """``labels``: a 1-D integer tensor of classes in ``0..n_classes-1``."""
    if not (isinstance(labels, torch.Tensor) and labels.dim() == 1 and labels.dtype in INT_TYPES):
        got = (
            f"a {labels.dtype} tensor of shape {tuple(labels.shape)}"
            if isinstance(labels, torch.Tensor)
            else type(labels).__name__
        )
        raise ParameterError("labels", f"expected a 1-D integer tensor of classes, got {got}")
    if len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < n_classes):
        low, high = int(labels.min()), int(labels.max())
        raise ParameterError("labels", f"classes must lie in 0..{n_classes - 1}, got {low}..{high}")


@torch.no_grad()
def sample_batches(
    G: nn.Module,
    n: int,
    classes: Sequence[int] | None = None,
    truncation: float = 0.0,
    seed: int = 0,
    batch_size: int = 256,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(uint8 (B, C, H, W), labels (B,))`` batches of ``n`` samples whose labels cycle
    through ``classes`` (default all: ``i mod K``), on G's device.

    All ``z`` are drawn up front from a generator seeded with ``seed`` (on G's device), so the
    images do not depend on ``batch_size`` (samples per forward pass). ``gankit sample`` and
    ``gankit eval`` both draw their samples here.

    Raises:
        ParameterError: ``n < 1``, ``batch_size < 1``, a class out of range.
    """
    _check_generator(G)
    check_sample_count(n, seed)
    _check_batch_size(batch_size)
    dev = next(G.parameters()).device
    chosen = _class_list(classes, G.n_classes)
    gen = torch.Generator(dev).manual_seed(seed)
    z = sample_z(n, G.dim_z, truncation, generator=gen, device=dev)
    y = torch.tensor(chosen).repeat(-(-n // len(chosen)))[:n]
    yield from generate(G, y, batch_size, z=z)


@torch.no_grad()
def sample(
    G: nn.Module,
    n: int,
    classes: Sequence[int] | None = None,
    truncation: float = 0.0,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_batches` gathered on the CPU: ``(uint8 (n, C, H, W), labels (n,))``."""
    parts = list(sample_batches(G, n, classes, truncation, seed, batch_size))
    return torch.cat([b.cpu() for b, _ in parts]), torch.cat([y for _, y in parts])


@torch.no_grad()
def interpolation_strip(
    G: nn.Module,
    n: int,
    mode: str,
    classes: Sequence[int] | None = None,
    truncation: float = 0.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` frames ``(uint8 (n, C, H, W), labels (n,))`` interpolating ``z`` or the class
    (``mode``; module docstring), in one forward pass.

    Raises:
        ParameterError: ``n`` outside ``2..MAX_STRIP``, unknown ``mode``, a class out of
            range, ``mode="class"`` without exactly two classes, ``mode="z"`` with more than
            one.
    """
    n = check_int("n", n, 2, MAX_STRIP, f"2..{MAX_STRIP} frames for a strip")
    check_seed(seed)
    _check_generator(G)
    if mode not in INTERPOLATIONS:
        raise ParameterError("interpolate", f"expected z or class, got {mode!r}")
    dev = next(G.parameters()).device
    chosen = _class_list(classes, G.n_classes)
    if mode == "class" and (len(chosen) != 2 or classes is None):
        raise ParameterError("classes", "class interpolation needs exactly two classes, e.g. 3,7")
    if mode == "z" and classes is not None and len(chosen) > 1:
        raise ParameterError("classes", f"z interpolation keeps one class, got {len(chosen)}")
    gen = torch.Generator(dev).manual_seed(seed)
    ends = sample_z(2, G.dim_z, truncation, generator=gen, device=dev)
    z_b, y_b = (ends[1], chosen[0]) if mode == "z" else (ends[0], chosen[1])
    images = interpolate_images(G, ends[0], z_b, chosen[0], y_b, n)
    return images.cpu(), torch.full((n,), chosen[0], dtype=torch.long)


@torch.no_grad()
def interpolate_images(
    G: nn.Module, z_a: torch.Tensor, z_b: torch.Tensor, y_a: int, y_b: int, n: int
) -> torch.Tensor:
    """A strip of ``n`` frames ``G(z_t, (1 - t) e(y_a) + t e(y_b))`` with
    ``z_t = (1 - t) z_a + t z_b``, ``t = i / (n - 1)`` (class mixing as in the module doc; with
    ``y_a == y_b`` the class is fixed and G is not patched).

    Args:
        z_a, z_b: ``(dim_z,)`` end latents.

    Returns:
        uint8 ``(n, C, H, W)`` on G's device.
    """
    param = next(G.parameters())
    dev = param.device
    t = torch.linspace(0, 1, n, device=dev, dtype=param.dtype)
    z = torch.lerp(z_a.to(t)[None], z_b.to(t)[None], t[:, None])
    y = torch.full((n,), y_a, dtype=torch.long, device=dev)
    if y_a == y_b:
        return to_uint8(G(z, y))
    with _mixed_classes(G, torch.full_like(y, y_b), t):
        return to_uint8(G(z, y))


def write_samples(
    G: nn.Module,
    out: str | Path,
    n: int = 64,
    truncation: float = 0.0,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    interpolate: str | None = None,
    batch_size: int = 256,
) -> Path:
    """Write samples of ``G`` to ``out`` and return its path (``gankit sample``).

    - ``FILE.png``: a grid of :func:`sample` (``n`` samples, labels cycling through
      ``classes``), one column per class;
    - ``FILE.npz``: ``x`` uint8 ``(n, H, W, C)``, ``y`` int64 ``(n,)``;
    - with ``interpolate`` (``z`` or ``class``, PNG only): :func:`interpolation_strip`.

    Raises:
        ParameterError: unknown extension, an interpolation into ``.npz``, and the errors of
            :func:`sample` / :func:`interpolation_strip`.
    """
    out = check_path(out, "out", "a .png or .npz file path")
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ParameterError(
            "out", f"{out}: unknown extension {suffix or '(none)'}; use .png or .npz"
        )
    if interpolate is not None and suffix != ".png":
        raise ParameterError("out", f"{out}: an interpolation strip is an image, use a .png file")
    if interpolate is None:
        images, y = sample(G, n, classes, truncation, seed, batch_size)
        ncol = min(len(_class_list(classes, G.n_classes)), n)
    else:
        images, y = interpolation_strip(G, n, interpolate, classes, truncation, seed)
        ncol = n
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        return atomic_write(out, lambda f: save_npz(f, images, y))
    return save_grid(images, out, ncol)
