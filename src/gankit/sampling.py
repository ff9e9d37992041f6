"""Load a trained generator and write samples: grids (.png), arrays (.npz), interpolation strips.

``load(run_dir_or_checkpoint)`` returns the EMA generator in eval mode, with ``G.config`` holding
the run's :class:`~gankit.config.Config`; ``gankit.load`` is this function.
``load_discriminator(run_dir_or_checkpoint)`` returns the discriminator the same way.

Interpolation (``gankit sample --interpolate``) writes one strip of ``n`` frames:

- ``z``: linear interpolation ``z_t = (1 - t) z_a + t z_b`` between two random latents, with the
  class fixed (the first of ``--classes``, default 0);
- ``class``: z fixed, the class condition of the two ``--classes`` a, b mixed linearly. Every
  class-dependent vector of G is replaced by ``(1 - t) v(a) + t v(b)``: the shared class
  embedding (BigGAN; the linear CBN maps then mix gains and biases too) or the per-class CBN gain
  and bias rows (SAGAN/SNGAN) — the same as feeding G the one-hot mixture
  ``(1 - t) e_a + t e_b``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from gankit.config import Config, load_toml
from gankit.errors import GankitError
from gankit.models import build
from gankit.training import checkpoint as ckpt_io
from gankit.training.distributed import resolve_device

__all__ = ["generate", "load", "load_discriminator", "make_grid", "sample_command", "save_grid"]


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


def save_grid(images: torch.Tensor, path: str | Path, ncol: int) -> Path:
    """Write uint8 ``images (N, C, H, W)`` (C = 1 or 3) as one PNG grid of ``ncol`` columns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = make_grid(images, ncol)
    Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).save(path)
    return path


def _open(source: str | Path, device: str | torch.device) -> tuple[Path, Config, torch.device]:
    """``(checkpoint dir, its config, torch device)`` of a run or checkpoint ``source``."""
    ckpt = ckpt_io.find_checkpoint(source)
    dev = resolve_device(device) if device in ("auto", "cpu", "cuda") else torch.device(device)
    return ckpt, load_toml(ckpt / ckpt_io.CONFIG_FILE), dev


def load(source: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> nn.Module:
    """The generator of a run directory (latest checkpoint) or of one checkpoint directory.

    Args:
        source: ``RUN`` or ``RUN/checkpoints/step_XXXXXXXX``.
        device: ``cpu``, ``cuda``, ``auto`` or a torch device.
        ema: the EMA weights (default) or the raw G weights.

    Returns:
        ``G`` in eval mode, ``G(z (B, dim_z), y (B,)) -> (B, C, H, W)`` in [-1, 1], with
        ``G.config`` the run's Config.
    """
    ckpt, cfg, dev = _open(source, device)
    G, _ = build(cfg.model, init=False)  # weights are loaded next
    G.load_state_dict(ckpt_io.load_weights(ckpt, "G_ema" if ema else "G"))
    G = G.to(dev).eval().requires_grad_(False)
    G.config = cfg
    return G


def load_discriminator(source: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The discriminator of a run directory (latest checkpoint) or of one checkpoint directory.

    Returns:
        ``D`` in eval mode (spectral norm uses its stored ``u``, ``v``), parameters frozen,
        ``D(x (B, C, H, W), y (B,)) -> (B,)`` logits, with ``D.config`` the run's Config.

    Raises:
        GankitError: ``source`` is missing, or its (latest) checkpoint has no ``D.safetensors``.
    """
    try:
        ckpt, cfg, dev = _open(source, device)
    except GankitError:
        source = Path(source)
        generator_only = [
            d
            for d in (source, *sorted(source.glob("checkpoints/step_*")))
            if (d / "G_ema.safetensors").is_file() and not (d / "D.safetensors").is_file()
        ]
        if generator_only:
            raise GankitError(
                f"{generator_only[-1]}: no D.safetensors (discriminator weights); expected a "
                "training checkpoint with G, D and G_ema"
            ) from None
        raise
    _, D = build(cfg.model, init=False)
    D.load_state_dict(ckpt_io.load_weights(ckpt, "D"))
    D = D.to(dev).eval().requires_grad_(False)
    D.config = cfg
    return D


def _class_list(classes: Sequence[int] | None, n_classes: int) -> list[int]:
    chosen = list(range(n_classes)) if not classes else list(classes)
    bad = [c for c in chosen if not 0 <= c < n_classes]
    if bad:
        raise GankitError(
            f"--classes: {', '.join(map(str, bad))} out of range; the model has classes "
            f"0..{n_classes - 1}"
        )
    return chosen


@contextlib.contextmanager
def _mixed_classes(G: nn.Module, y_b: torch.Tensor, t: torch.Tensor) -> Iterator[None]:
    """Inside, every class-dependent vector ``v(y)`` of G becomes ``(1-t) v(y) + t v(y_b)``
    (``t: (B,)``). Covers ``nn.Embedding`` (shared embedding) and per-class conditional BN."""
    from gankit.layers.cond_batchnorm import ConditionalBatchNorm2d

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
        raise GankitError("--interpolate class: this generator has no class embedding to mix")
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for m in patched:
            del m.gamma_beta


@torch.no_grad()
def generate(
    G: nn.Module,
    labels: torch.Tensor,
    batch_size: int = 100,
    truncation: float = 0.0,
    generator: torch.Generator | None = None,
    z: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(uint8 (B, C, H, W), labels (B,))`` batches of ``G(z, labels)``, at most
    ``batch_size`` samples per forward pass (images on G's device, labels as given).

    Args:
        labels: ``(n,)`` class of every sample, in output order.
        z: ``(n, dim_z)`` latents to use; if None each batch's ``z`` is drawn with
            :func:`~gankit.models.sample_z` from ``generator`` (on G's device) and ``truncation``.
    """
    from gankit.data import to_uint8
    from gankit.models import sample_z

    if batch_size < 1:
        raise GankitError(f"batch size: expected a positive number, got {batch_size}")
    device = next(G.parameters()).device
    for start in range(0, len(labels), batch_size):
        y = labels[start : start + batch_size]
        if z is None:
            zb = sample_z(len(y), G.dim_z, truncation, generator=generator, device=device)
        else:
            zb = z[start : start + batch_size].to(device)
        yield to_uint8(G(zb, y.to(device))), y


@torch.no_grad()
def sample_command(
    source: str | Path,
    n: int = 64,
    out: str | Path = "samples.png",
    truncation: float = 0.0,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    interpolate: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
) -> Path:
    """``gankit sample``: write ``out`` and return its path.

    - ``FILE.png``: a grid of ``n`` samples whose labels cycle through ``classes`` (default all),
      one column per class;
    - ``FILE.npz``: ``x`` uint8 ``(n, H, W, C)``, ``y`` int64 ``(n,)``;
    - with ``interpolate`` (``z`` or ``class``, PNG only): a strip of ``n`` frames (module doc).

    Grid and array samples are generated ``batch_size`` at a time (the same images for any
    ``batch_size``: all ``z`` are drawn up front) and gathered on the CPU.

    Raises:
        GankitError: missing source, unknown extension, class out of range, ``n < 1``,
            ``--interpolate class`` without exactly two classes, ``batch_size < 1``.
    """
    from gankit.data import to_uint8
    from gankit.models import sample_z

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".npz"):
        raise GankitError(f"--out {out}: unknown extension {suffix or '(none)'}; use .png or .npz")
    if interpolate is not None and suffix != ".png":
        raise GankitError(f"--out {out}: --interpolate writes a strip, use a .png file")
    if n < 1:
        raise GankitError(f"--n: expected a positive number of samples, got {n}")
    if batch_size < 1:
        raise GankitError(f"--batch-size: expected a positive number, got {batch_size}")
    G = load(source, device=device)
    dev = next(G.parameters()).device
    chosen = _class_list(classes, G.config.model.n_classes)
    gen = torch.Generator(dev).manual_seed(seed)

    if interpolate is None:
        z = sample_z(n, G.config.model.dim_z, truncation, generator=gen, device=dev)
        y = torch.tensor(chosen).repeat(-(-n // len(chosen)))[:n]
        images = torch.cat([b.cpu() for b, _ in generate(G, y, batch_size, z=z)])
    else:
        t = torch.linspace(0, 1, n, device=dev)
        ends = sample_z(2, G.config.model.dim_z, truncation, generator=gen, device=dev)
        y = torch.full((n,), chosen[0], dtype=torch.long, device=dev)
        if interpolate == "z":
            images = to_uint8(G(torch.lerp(ends[:1], ends[1:], t[:, None]), y))
        elif interpolate == "class":
            if len(chosen) != 2 or not classes:
                raise GankitError("--interpolate class needs exactly two --classes, e.g. 3,7")
            with _mixed_classes(G, torch.full_like(y, chosen[1]), t):
                images = to_uint8(G(ends[:1].expand(n, -1), y))
        else:
            raise GankitError(f"--interpolate: expected z or class, got {interpolate!r}")

    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npz":
        np.savez(out, x=images.permute(0, 2, 3, 1).cpu().numpy(), y=y.cpu().numpy())
        return out
    return save_grid(images, out, n if interpolate else min(len(chosen), n))
