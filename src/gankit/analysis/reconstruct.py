"""GAN inversion: how well can G reconstruct real images it is given?

"Inference via optimisation" (as in the evaluation of Metz et al. 2017, "Unrolled generative
adversarial networks", arXiv:1611.02163): for a real image ``x`` of class ``y``, search the latent

    ``z* = argmin_z  mean((G(z, y) - x)^2) + w · mean((f(G(z, y)) - f(x))^2)``

with Adam (cosine-annealed learning rate) from ``restarts`` seeded starts ``z_0 ~ N(0, I)``, and
keep the start with the lowest objective seen at any step. ``f`` is an optional feature map
(``gankit analyze reconstruct`` uses gankit's offline classifier's 128-d features), ``w`` its
weight. With ``search_class`` every class is tried and the best is kept (the class is then part
of the search). The reported error of an image is the pixel mean squared error of its best
reconstruction with pixels in [0, 1] (uint8 / 255), averaged over ``C·H·W``.

Everything is batched: all candidates (targets × classes × restarts) of a batch are optimised
together; G is in eval mode (batch norm uses its running statistics), so candidates do not
interact and a target whose optimisation fails (non-finite image, diverged loss) does not disturb
the others: its error is ``NaN`` and its reason is reported.

Baseline ("the training set as a generator"): the same pixel MSE between each held-out image and
its nearest image of the training split — among the images of its own class (``baseline``, the
counterpart of inverting with the true class) and among all images (``baseline_any_class``). A
generator that reconstructs held-out images better than this baseline generalises beyond copies
of its training images. Held-out images are the offline metrics' fixed split
(:func:`gankit.metrics.heldout_split`, 20 %, seed 0). Caveat: ``gankit train`` trains G on every
image of the data set, the held-out split included.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from gankit.analysis.common import (
    check_eval,
    check_images,
    check_positive,
    run_data,
    subset,
    summarize,
    tiles,
    write_json,
)
from gankit.analysis.neighbours import nearest_images
from gankit.data import to_float, to_uint8
from gankit.errors import (
    GankitError,
    ParameterError,
    check_bool,
    check_int,
    check_path,
    check_seed,
)
from gankit.generation import save_grid
from gankit.metrics import heldout_split, load_or_train_classifier
from gankit.models import ConditionalGenerator
from gankit.run import load_generator as load

__all__ = ["Inversion", "analyze_reconstruct", "invert"]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]

MAX_STEPS = 100_000
"""Most Adam steps per start: 500x the default 200 (hours on a GPU for a full batch)."""
MAX_RESTARTS = 1000
"""Most starts per target and class; all starts are drawn up front."""
MAX_LR = 10.0
"""Largest learning rate: latents are N(0, I); a step of 10 already throws them far off."""
MAX_FEATURE_WEIGHT = 1000.0
"""Largest weight of the feature term (the feature MSE then outweighs pixels by far)."""


@dataclass
class Inversion:
    """Result of :func:`invert` for ``N`` targets (all on G's device).

    Attributes:
        z: ``(N, dim_z)`` best latent of each target.
        labels: ``(N,)`` class fed to G (the true class unless ``search_class``).
        images: ``(N, C, H, W)`` ``G(z, labels)`` in [-1, 1].
        error: ``(N,)`` pixel MSE in [0, 1] units; ``NaN`` where the inversion failed.
        failed: ``{target index: reason}`` of the failed targets.
    """

    z: torch.Tensor
    labels: torch.Tensor
    images: torch.Tensor
    error: torch.Tensor
    failed: dict[int, str] = field(default_factory=dict)


def _objective(
    img: torch.Tensor, target: torch.Tensor, feats: FeatureFn | None, w: float, f_target
) -> torch.Tensor:
    """``(B,)`` pixel MSE in [-1, 1] units plus ``w`` times the feature MSE."""
    loss = (img - target).square().flatten(1).mean(1)
    if feats is not None and w > 0:
        loss = loss + w * (feats(img) - f_target).square().flatten(1).mean(1)
    return loss


def _check_options(
    steps: int,
    restarts: int,
    lr: float,
    search_class: bool,
    feature_weight: float,
    batch_size: int,
    seed: int,
) -> None:
    """The options of :func:`invert`: a :class:`ParameterError` naming the first bad one."""
    check_int("steps", steps, 1, MAX_STEPS, f"a number of Adam steps in 1..{MAX_STEPS:,}")
    check_int("restarts", restarts, 1, MAX_RESTARTS, f"a number of starts in 1..{MAX_RESTARTS}")
    check_positive(batch_size, "batch_size")
    check_bool("search_class", search_class)
    check_seed(seed)
    # a bool is no number here; NaN fails the comparisons
    if isinstance(lr, bool) or not (isinstance(lr, numbers.Real) and 0 < lr <= MAX_LR):
        raise ParameterError("lr", f"expected a learning rate in (0, {MAX_LR:g}], got {lr!r}")
    w, w_max = feature_weight, MAX_FEATURE_WEIGHT
    if isinstance(w, bool) or not (isinstance(w, numbers.Real) and 0 <= w <= w_max):
        raise ParameterError("feature_weight", f"expected a number in [0, {w_max:g}], got {w!r}")


def _invert_batch(
    G: nn.Module,
    target: torch.Tensor,
    labels: torch.Tensor,
    z: torch.Tensor,
    steps: int,
    lr: float,
    feats: FeatureFn | None,
    w: float,
    bar: tqdm,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise every candidate ``z: (M, dim_z)`` towards ``target: (M, C, H, W)``; returns the
    best ``z`` and the best objective (``inf`` where it never was finite) per candidate."""
    z = z.clone().requires_grad_()
    opt = torch.optim.Adam([z], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    with torch.no_grad():
        f_target = feats(target) if feats is not None and w > 0 else None
    best_loss = torch.full((len(z),), math.inf, device=z.device)
    best_z = z.detach().clone()
    for step in range(steps + 1):  # the last pass only scores the final z
        with torch.enable_grad():
            loss = _objective(G(z, labels), target, feats, w, f_target)
        with torch.no_grad():
            better = torch.isfinite(loss) & (loss < best_loss)
            best_loss = torch.where(better, loss, best_loss)
            best_z[better] = z[better]
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # candidates are independent: each gets its own gradient
        opt.step()
        sched.step()
        bar.update(1)
    return best_z, best_loss


def invert(
    G: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 200,
    restarts: int = 4,
    lr: float = 0.1,
    search_class: bool = False,
    features: FeatureFn | None = None,
    feature_weight: float = 0.0,
    batch_size: int = 512,
    seed: int = 0,
    quiet: bool = True,
) -> Inversion:
    """Reconstruct ``x`` with G (module doc).

    Args:
        G: generator in eval mode, ``G(z (B, dim_z), y (B,)) -> (B, C, H, W)`` in [-1, 1].
        x: ``(N, C, H, W)`` float targets in [-1, 1] (non-finite targets are reported failed).
        y: ``(N,)`` their classes.
        steps: Adam steps per start (at most :data:`MAX_STEPS`); restarts: seeded starts per
            target and class (at most :data:`MAX_RESTARTS`).
        lr: Adam's initial learning rate in ``(0, MAX_LR]`` (cosine-annealed to 0 over
            ``steps``).
        search_class: try every class of G and keep the best.
        features: differentiable ``(B, C, H, W) in [-1, 1] -> (B, F)``; with ``feature_weight
            > 0`` its mean squared difference joins the objective.
        batch_size: candidate latents optimised together (targets × classes × restarts; at
            least one target per batch). Results do not depend on it: every start is drawn up
            front from ``seed``.

    Raises:
        GankitError: a bad shape or parameter, naming it.
    """
    check_eval(G, "G", ConditionalGenerator, "a generator (gankit.load(RUN))")
    # targets outside G's range are reported (their error), not refused
    check_images(x, y, G.resolution, G.channels, G.n_classes, "x", in_range=False)
    _check_options(steps, restarts, lr, search_class, feature_weight, batch_size, seed)
    check_bool("quiet", quiet)
    if features is not None and not callable(features):
        got = type(features).__name__
        raise ParameterError("features", f"expected a function (B, C, H, W) -> (B, F), got {got}")
    if feature_weight > 0 and features is None:
        raise GankitError("feature_weight: > 0 needs a feature map (features=...)")
    device = next(G.parameters()).device
    n, dim_z = len(x), G.dim_z
    n_cls = G.n_classes if search_class else 1
    per_target = n_cls * restarts
    starts = torch.randn(n, per_target, dim_z, generator=torch.Generator().manual_seed(seed))
    finite = torch.isfinite(x).flatten(1).all(1)
    x = torch.where(finite[:, None, None, None], x, torch.zeros_like(x)).to(device)
    y = y.to(device)
    chunk = max(1, batch_size // per_target)
    best_z, best_label = torch.empty(n, dim_z, device=device), y.clone()
    best_loss = torch.empty(n, device=device)
    with tqdm(total=-(-n // chunk) * steps, desc="inversion", unit="step", disable=quiet) as bar:
        for s in range(0, n, chunk):
            xb, yb = x[s : s + chunk], y[s : s + chunk]
            b = len(xb)
            if search_class:
                cand = torch.arange(n_cls, device=device).repeat_interleave(restarts).repeat(b)
            else:
                cand = yb.repeat_interleave(restarts)
            z, loss = _invert_batch(
                G, xb.repeat_interleave(per_target, 0), cand,
                starts[s : s + b].reshape(-1, dim_z).to(device), steps, lr, features,
                feature_weight, bar,
            )  # fmt: skip
            pick = loss.view(b, per_target).argmin(1)
            rows = torch.arange(b, device=device) * per_target + pick
            best_z[s : s + b], best_label[s : s + b] = z[rows], cand[rows]
            best_loss[s : s + b] = loss[rows]
    with torch.no_grad():
        images = torch.cat([G(best_z[s : s + chunk], best_label[s : s + chunk])
                            for s in range(0, n, chunk)])  # fmt: skip
    error = (images - x).square().flatten(1).mean(1) / 4  # [-1, 1] → [0, 1] units
    failed = {int(i): "non-finite target image" for i in (~finite).nonzero().flatten()}
    for i in (finite.to(device) & ~torch.isfinite(best_loss)).nonzero().flatten().tolist():
        failed[i] = "the objective never was finite (diverged)"
    if failed:
        error[list(failed)] = math.nan
    return Inversion(best_z, best_label, images, error, dict(sorted(failed.items())))


def _grid(order: torch.Tensor, x8: torch.Tensor, inv: Inversion, nn8: torch.Tensor) -> torch.Tensor:
    """Rows: targets, reconstructions, nearest training images, for the images ``order``."""
    return tiles([x8[order], to_uint8(inv.images[order]).cpu(), nn8[order]], x8.shape[1])


def analyze_reconstruct(
    source: str | Path,
    out: str | Path,
    data: str | None = None,
    n: int = 100,
    steps: int = 200,
    restarts: int = 4,
    lr: float = 0.1,
    search_class: bool = False,
    feature_weight: float = 0.0,
    batch_size: int = 512,
    seed: int = 0,
    device: str = "auto",
    quiet: bool = True,
) -> dict:
    """``gankit analyze reconstruct``: invert ``n`` held-out real images with the EMA generator.

    Writes ``DIR/reconstruct.json`` (error and baseline summaries: mean, quantiles 10/50/90),
    ``DIR/reconstruct_best.png`` and ``DIR/reconstruct_worst.png`` (up to 8 images each; rows:
    the real image, its reconstruction, its nearest training image of the same class).

    Args:
        source: run directory or checkpoint; data: data set (default: the run's data).
        n: held-out images (a seeded choice of the held-out split).
        steps, restarts, lr, search_class, batch_size, seed: see :func:`invert`.
        feature_weight: weight of the classifier-feature term, ``0..MAX_FEATURE_WEIGHT``
            (0: pixels only). All options are checked before anything is loaded.

    Returns:
        The JSON written to ``reconstruct.json``.
    """
    _check_options(steps, restarts, lr, search_class, feature_weight, batch_size, seed)
    check_positive(n, "n")
    check_bool("quiet", quiet)
    out = check_path(out, "out", "an output folder")
    G = load(source, device)
    dev = next(G.parameters()).device
    cfg = G.config
    ds = run_data(cfg, data, quiet)
    train_idx, held_idx = heldout_split(len(ds))
    idx = subset(held_idx, n, seed, "n", f"the held-out split of {ds.source}")
    x8, y = ds.batch(idx)
    # the baseline before the inversion: it is cheap and may fail (a class without training data)
    y_train = np.asarray(ds.y)[train_idx]
    base_any = nearest_images(x8, ds, train_idx)[0][:, 0]
    base_same = torch.empty(len(idx), dtype=torch.float64)
    nn_same = torch.empty(len(idx), dtype=torch.long)
    for c in y.unique().tolist():
        mine, pool = (y == c).nonzero().flatten(), train_idx[y_train == c]
        if len(pool) == 0:
            raise GankitError(f"data: class {c} has no image in the training split")
        d, i = nearest_images(x8[mine], ds, pool)
        base_same[mine], nn_same[mine] = d[:, 0].cpu(), i[:, 0].cpu()
    dim = x8[0].numel()
    baseline, baseline_any = base_same.square() / dim, base_any.cpu().square() / dim

    features = None
    if feature_weight > 0:
        clf, _ = load_or_train_classifier(ds.x, ds.y, ds.n_classes, ds.source, dev, quiet)
        clf.requires_grad_(False)

        def features(img: torch.Tensor) -> torch.Tensor:
            return clf.features((img + 1) * 127.5)  # the classifier reads the uint8 scale

    inv = invert(
        G, to_float(x8), y, steps, restarts, lr, search_class, features, feature_weight,
        batch_size, seed, quiet,
    )  # fmt: skip
    error = inv.error.cpu()

    order = torch.as_tensor(np.argsort(np.nan_to_num(error.numpy(), nan=np.inf), kind="stable"))
    order = order[: int(torch.isfinite(error).sum())]
    k = min(8, len(order))
    nn8 = ds.batch(nn_same.numpy())[0]
    paths = [out / "reconstruct_best.png", out / "reconstruct_worst.png", out / "reconstruct.json"]
    if k:
        save_grid(_grid(order[:k], x8, inv, nn8), paths[0], k)
        save_grid(_grid(order[-k:].flip(0), x8, inv, nn8), paths[1], k)
    ok = torch.isfinite(error)
    result = {
        "source": str(source),
        "data": ds.source,
        "split": "held-out 20% of the data (gankit.metrics.heldout_split, seed 0)",
        "n": n,
        "steps": steps,
        "restarts": restarts,
        "lr": lr,
        "search_class": search_class,
        "feature_weight": feature_weight,
        "seed": seed,
        "indices": idx.tolist(),
        "error": summarize(error),
        "baseline": summarize(baseline),
        "baseline_any_class": summarize(baseline_any),
        "frac_better_than_baseline": float((error[ok] < baseline[ok]).double().mean())
        if ok.any()
        else None,
        "z_rms": summarize(inv.z.square().mean(1).sqrt()),
        "failed": [{"index": int(idx[i]), "reason": r} for i, r in inv.failed.items()],
        "notes": (
            "error: per-image pixel MSE (pixels in [0,1]) of G's best reconstruction; baseline: "
            "the same MSE to the nearest image of the same class in the training split (80%) "
            "- the training set used as a generator; baseline_any_class: nearest of any class; "
            "z_rms: root-mean-square of the found z (about 1 under the N(0, I) prior)"
        ),
        "files": [str(p) for p in (paths if k else paths[2:])],
    }
    if search_class:
        result["class_match"] = float((inv.labels.cpu() == y).double().mean())
    write_json(paths[2], result)
    return result
