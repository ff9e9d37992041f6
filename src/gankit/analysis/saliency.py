"""Saliency maps of the discriminator: which pixels D's score depends on.

Image-specific class saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional
networks: visualising image classification models and saliency maps", arXiv:1312.6034, Sec. 3.1):
for an image ``x: (C, H, W)`` and an unnormalised score ``S(x)``, ``w = dS/dx`` at ``x`` and the
saliency map is the magnitude maximised over colour channels,

    ``M[i, j] = max_c |w[c, i, j]|``.

Scores of gankit's projection discriminator ``D(x, y) = psi(h) + <embed(y), h>``, ``h = phi(x)``:

- ``head="adv"``: ``S(x) = D(x, y)``, D's logit for the conditioning class ``y``;
- ``head="aux"``: ``S(x) = aux(h)[y]``, the auxiliary classifier's logit of class ``y``
  (only with ``model.aux_classifier``).

``gankit analyze saliency`` writes ``DIR/saliency.png``: for each class three rows (two without
an aux head) of the same columns: the images, D's maps, the aux head's maps; every map is scaled
by its own maximum to 0..255 (white = most salient). ``DIR/saliency.npz`` holds the raw values:
``x`` uint8 ``(N, H, W, C)``, ``y`` ``(N,)``, ``adv`` (and ``aux``) float32 ``(N, H, W)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from gankit.analysis.common import check_eval, check_images, check_positive, run_data, tiles
from gankit.config import Config
from gankit.data import to_float
from gankit.errors import GankitError, check_bool, check_path, check_seed
from gankit.generation import check_sample_count, sample, save_grid, save_npz
from gankit.io_utils import atomic_write
from gankit.models import ProjectionDiscriminator
from gankit.run import load_discriminator
from gankit.run import load_generator as load

__all__ = ["HEADS", "analyze_saliency", "saliency_maps"]

HEADS = ("adv", "aux")


def _score(D: nn.Module, x: torch.Tensor, y: torch.Tensor, head: str) -> torch.Tensor:
    """``(B,)`` score of each image (module doc)."""
    if head == "adv":
        return D(x, y)
    if head == "aux":
        if getattr(D, "aux", None) is None:
            raise GankitError("head: 'aux' needs a discriminator with model.aux_classifier=true")
        _, class_logits = D(x, y, return_aux=True)
        return class_logits.gather(1, y[:, None]).squeeze(1)
    raise GankitError(f"head: expected one of {', '.join(HEADS)}, got {head!r}")


def saliency_maps(
    D: nn.Module, x: torch.Tensor, y: torch.Tensor, head: str = "adv", batch_size: int = 64
) -> torch.Tensor:
    """``M = max_c |dS/dx|`` of every image (module doc).

    Args:
        D: discriminator in eval mode (spectral norm then uses its stored vectors). gankit's
            discriminators have no batch norm, so each image's score depends on that image
            only and one backward pass of the summed scores gives every image's gradient.
        x: ``(N, C, H, W)`` float in [-1, 1] at D's resolution and channels.
        y: ``(N,)`` conditioning classes.
        head: ``"adv"`` or ``"aux"``.
        batch_size: images per backward pass.

    Returns:
        ``(N, H, W)`` in D's dtype, on ``x``'s device.
    """
    check_eval(D, "D", ProjectionDiscriminator, "a discriminator (gankit.run.load_discriminator)")
    check_images(x, y, D.resolution, D.channels, D.n_classes, "x")
    check_positive(batch_size, "batch_size")
    param = next(D.parameters())
    maps = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].detach().to(param.device, param.dtype).requires_grad_()
        yb = y[start : start + batch_size].to(param.device)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(_score(D, xb, yb, head).sum(), xb)
        maps.append(grad.abs().amax(dim=1))
    return torch.cat(maps).to(x.device)


def _as_tiles(maps: torch.Tensor) -> torch.Tensor:
    """float ``(N, H, W)`` >= 0 → uint8 ``(N, 1, H, W)``, each map scaled by its own maximum."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-30)[:, None, None]
    return (maps / peak * 255).round().to(torch.uint8)[:, None]


def _grid(
    images: torch.Tensor, labels: torch.Tensor, maps: list[torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """Tiles and column count: per class (ascending) a row of images, then one row per map kind;
    classes with fewer images are padded with black tiles to the widest class."""
    classes = labels.unique().tolist()
    width = max(int((labels == c).sum()) for c in classes)
    rows = []
    for c in classes:
        idx = (labels == c).nonzero().squeeze(1)
        for row in [images[idx]] + [_as_tiles(m[idx]) for m in maps]:
            pad = row.new_zeros((width - len(row), *row.shape[1:]))
            rows.append(torch.cat([row, pad]))
    return tiles(rows, images.shape[1]), width


def _real_images(
    data: str | None, cfg: Config, per_class: int, seed: int, quiet: bool
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """uint8 images, labels and source of ``per_class`` seeded images of every class of ``data``
    (all images of a smaller class)."""
    ds = run_data(cfg, data, quiet)
    y = np.asarray(ds.y)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in range(ds.n_classes)]
    idx = np.concatenate(
        [np.sort(rng.choice(m, min(per_class, len(m)), replace=False)) for m in members if len(m)]
    )
    x, labels = ds.batch(idx)
    return x, labels, f"{len(idx)} images of {ds.source} (seed {seed})"


def analyze_saliency(
    source: str | Path,
    out: str | Path,
    samples: int | None = None,
    data: str | None = None,
    per_class: int = 8,
    truncation: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 64,
    quiet: bool = False,
) -> dict:
    """``gankit analyze saliency``: D's saliency maps of real or generated images.

    Args:
        source: run directory or checkpoint (needs ``D.safetensors``).
        out: output folder (``saliency.png``, ``saliency.npz``).
        samples: this many samples (1..``MAX_SAMPLES``) of the EMA generator, classes
            ``i mod n_classes``; ``None``: real images instead, ``per_class`` seeded images of
            each class of ``data``.
        data: a data source (folder, .npz, ...; e.g. ``gankit sample --out x.npz``), fitted to
            the model's resolution and channels like training data; ``None``: the run's data.
        truncation, seed: of the samples' latents (``seed`` also picks the real images).
        quiet: no progress bar while the real images are loaded.

    Returns:
        ``{"source", "n", "classes", "heads", "images" (what was analysed), "files"}``.

    Raises:
        GankitError: ``samples`` outside 1..MAX_SAMPLES, ``per_class`` < 1, no D weights,
            labels outside the model's classes.
    """
    check_seed(seed)
    check_bool("quiet", quiet)
    check_positive(per_class, "per_class")
    if samples is not None:
        check_sample_count(samples, seed, "samples")
    out = check_path(out, "out", "an output folder")
    D = load_discriminator(source, device)
    cfg = D.config
    if samples is None:
        x, y, what = _real_images(data, cfg, per_class, seed, quiet)
    else:
        G = load(D.checkpoint, device)  # the same checkpoint as D, even if a newer one came
        x, y = sample(G, samples, None, truncation, seed, batch_size)  # as `gankit sample`
        what = f"{samples} samples of the EMA generator (seed {seed}, truncation {truncation})"
    heads = [h for h in HEADS if h == "adv" or D.aux is not None]
    maps = {h: saliency_maps(D, to_float(x), y, h, batch_size).cpu() for h in heads}
    out.mkdir(parents=True, exist_ok=True)
    grid, columns = _grid(x, y, list(maps.values()))
    png = save_grid(grid, out / "saliency.png", columns)
    arrays = {h: m.numpy().astype(np.float32) for h, m in maps.items()}
    npz = atomic_write(  # a kill leaves the previous file or none
        out / "saliency.npz",
        lambda f: save_npz(f, x, y, **arrays),
    )
    return {
        "source": str(source),
        "n": len(x),
        "classes": y.unique().tolist(),
        "heads": heads,
        "images": what,
        "files": [str(png), str(npz)],
    }
