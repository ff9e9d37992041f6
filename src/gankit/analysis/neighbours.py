"""Nearest training images of generated samples: a memorisation check with a number.

:func:`nearest` is an exact brute-force k-nearest-neighbour search in Euclidean distance
(``torch.cdist`` in float64 over every reference row, in chunks).

``gankit analyze neighbours`` splits the data with the offline metrics' fixed split
(:func:`gankit.metrics.heldout_split`, 20 % held out, seed 0) and compares, in two spaces —
pixels (uint8 / 255, so a distance is the L2 norm of a difference of [0, 1] images) and the
128-d features of gankit's own classifier (:mod:`gankit.metrics.classifier`) —

- ``d_s``: distance of each of ``n`` samples of the EMA generator (classes ``i mod K``) to its
  nearest image of the *training split* (any class), and
- ``d_h``: the same distance for every *held-out* real image, i.e. how far a fresh draw of the
  data lies from the training split.

The memorisation ratio of a sample of class ``c`` is ``d_s / median(d_h of the held-out images
of class c)``: about 1 and above for a generator that makes new images, much smaller than 1 for
copies of training images. The held-out images' own ratios ``d_h / median`` give the natural
spread to compare with. Caveat: ``gankit train`` trains G on every image of the data set, so a
copy of a *held-out* image scores like a new image here.

Writes ``DIR/neighbours.json`` (summaries: mean, quantiles 10/50/90), ``DIR/neighbours.png``
(two samples per class; each row: the sample, its ``k`` nearest training images in pixels, then
in classifier features) and ``DIR/neighbours_closest.png`` (the same rows for the samples with
the lowest pixel ratio).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from gankit.analysis.common import (
    check_positive,
    check_tensor,
    pixel_vectors,
    run_data,
    summarize,
    tiles,
    write_json,
)
from gankit.data import ImageDataset
from gankit.errors import GankitError, ParameterError, check_path
from gankit.generation import check_sample_count, sample_batches, save_grid
from gankit.metrics import (
    ClassifierExtractor,
    array_batches,
    extract,
    heldout_split,
    load_or_train_classifier,
)
from gankit.run import load_generator as load

__all__ = ["analyze_neighbours", "memorisation_ratios", "nearest", "nearest_images"]


@torch.no_grad()
def nearest(
    queries: torch.Tensor,
    reference: torch.Tensor | Iterable[torch.Tensor],
    k: int = 1,
    query_batch: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest reference rows of every query row in Euclidean distance.

    Args:
        queries: ``(Q, F)`` float.
        reference: ``(M, F)`` rows, or an iterable of ``(m_i, F)`` chunks (indices run on
            across chunks), e.g. read batch by batch from a memory-mapped data set.
        k: neighbours per query (``k <= M``).
        query_batch: queries per distance matrix.

    Returns:
        ``(distances float64 (Q, k), indices int64 (Q, k))``, nearest first, on ``queries``'
        device. Distances come from float64 ``torch.cdist``.
    """
    check_positive(k, "k")
    check_positive(query_batch, "query_batch")
    q = check_tensor(queries, "queries", "(Q, F)").detach().double().flatten(1)
    if len(q) == 0:
        raise ParameterError("queries", "expected at least one query row, got none")
    if isinstance(reference, torch.Tensor):
        chunks: Iterable[object] = [reference]
    elif isinstance(reference, Iterable):
        chunks = reference
    else:
        got = type(reference).__name__
        raise ParameterError("reference", f"expected a tensor (M, F) or chunks of one, got {got}")
    best_d = q.new_full((len(q), 0), float("inf"))
    best_i = torch.zeros((len(q), 0), dtype=torch.long, device=q.device)
    offset = 0
    for chunk in chunks:
        r = check_tensor(chunk, "reference", "(M, F)").detach().to(q.device, torch.float64)
        r = r.flatten(1)
        if r.shape[1] != q.shape[1]:
            want, got = q.shape[1], r.shape[1]
            raise ParameterError("reference", f"expected {want} features per row, got {got}")
        d = torch.cat(
            [torch.cdist(q[s : s + query_batch], r) for s in range(0, len(q), query_batch)]
        )
        idx = torch.arange(offset, offset + len(r), device=q.device).expand(len(q), -1)
        best_d, order = torch.cat([best_d, d], 1).topk(min(k, best_d.shape[1] + len(r)), 1, False)
        best_i = torch.cat([best_i, idx], 1).gather(1, order)
        offset += len(r)
    if offset < k:
        raise GankitError(f"k: {k} neighbours requested from {offset} reference rows")
    return best_d, best_i


def nearest_images(
    queries: torch.Tensor, ds: ImageDataset, indices: np.ndarray, k: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest images of ``ds.x[indices]`` to uint8 ``queries (Q, C, H, W)`` in
    pixel L2 (images in [0, 1]), reading the data set in batches.

    Returns:
        ``(distances float64 (Q, k), data set indices int64 (Q, k))``.
    """
    chunks = (pixel_vectors(x) for x, _ in array_batches(ds.x, ds.y, 1024, indices))
    d, i = nearest(pixel_vectors(queries), chunks, k)
    return d, torch.as_tensor(np.asarray(indices), device=i.device)[i]


def memorisation_ratios(
    d_samples: torch.Tensor,
    y_samples: torch.Tensor,
    d_heldout: torch.Tensor,
    y_heldout: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``d / median(d_heldout of the same class)`` for samples and held-out images (module doc).

    A class without held-out images uses the median over all held-out images. Medians of an
    even count are the mean of the two middle values.

    Args:
        d_samples, y_samples: ``(S,)`` nearest-training distances of the samples, their classes.
        d_heldout, y_heldout: ``(H,)`` the same for the held-out real images.

    Returns:
        ``(ratios of the samples (S,), ratios of the held-out images (H,))``.
    """
    overall = d_heldout.quantile(0.5)

    def scale(labels: torch.Tensor) -> torch.Tensor:
        med = {c: d_heldout[y_heldout == c].quantile(0.5) for c in y_heldout.unique().tolist()}
        return torch.stack([med.get(c, overall) for c in labels.tolist()])

    return d_samples / scale(y_samples), d_heldout / scale(y_heldout)


def _report(d_s, y_s, d_h, y_h) -> dict:
    r_s, r_h = memorisation_ratios(d_s, y_s, d_h, y_h)
    return {
        "sample_to_train": summarize(d_s),
        "heldout_to_train": summarize(d_h),
        "ratio": summarize(r_s),
        "heldout_ratio": summarize(r_h),
        "frac_ratio_below_half": float((r_s < 0.5).double().mean()),
        "heldout_frac_ratio_below_half": float((r_h < 0.5).double().mean()),
    }, r_s


def analyze_neighbours(
    source: str | Path,
    out: str | Path,
    n: int = 1000,
    data: str | None = None,
    k: int = 3,
    truncation: float = 0.0,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 256,
    quiet: bool = True,
) -> dict:
    """``gankit analyze neighbours``: nearest training images of ``n`` samples (module doc).

    Args:
        source: run directory or checkpoint.
        out: output folder.
        n: number of samples (1..``MAX_SAMPLES``); data: the data set (default: the run's
            ``data.path``).
        k: neighbours shown per sample and space.
        truncation, seed: of the samples' latents.

    Returns:
        The JSON written to ``DIR/neighbours.json``: ``pixel`` and ``features`` summaries
        (``sample_to_train``, ``heldout_to_train``, ``ratio``, ``heldout_ratio``, fractions of
        ratios below 0.5) plus counts and files.
    """
    check_sample_count(n, seed)
    check_positive(k, "k")
    out = check_path(out, "out", "an output folder")
    G = load(source, device)
    dev = next(G.parameters()).device
    cfg = G.config
    ds = run_data(cfg, data, quiet)
    train_idx, held_idx = heldout_split(len(ds))
    if len(held_idx) == 0:  # the report's scale: held-out reals' distances to the training set
        raise GankitError(f"data: {ds.source} holds {len(ds)} images, too few for a held-out split")
    if k > len(train_idx):
        raise ParameterError("k", f"{k} exceeds the {len(train_idx)} images of the training split")
    classes = range(min(ds.n_classes, cfg.model.n_classes))  # labels i mod K, as `gankit eval`
    batches = [(x.cpu(), y) for x, y in sample_batches(G, n, classes, truncation, seed, batch_size)]
    x_s, y_s = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    model, info = load_or_train_classifier(ds.x, ds.y, ds.n_classes, ds.source, dev, quiet)
    feats = [ClassifierExtractor(model, info["key"])]
    f_s = torch.as_tensor(extract(batches, feats)["clf_features"])
    real = {
        name: extract(array_batches(ds.x, ds.y, batch_size, idx), feats)
        for name, idx in (("train", train_idx), ("heldout", held_idx))
    }
    y_h = torch.as_tensor(real["heldout"]["labels"])
    x_h = torch.as_tensor(np.asarray(ds.x[held_idx]))

    f_train = torch.as_tensor(real["train"]["clf_features"])
    d_px, i_px = nearest_images(x_s, ds, train_idx, k)
    d_ft, i_ft = nearest(f_s, f_train, k)
    i_ft = torch.as_tensor(train_idx)[i_ft.cpu()]
    d_h_px = nearest_images(x_h, ds, train_idx)[0][:, 0]
    d_h_ft = nearest(torch.as_tensor(real["heldout"]["clf_features"]), f_train)[0][:, 0]
    pixel, ratio_px = _report(d_px[:, 0], y_s, d_h_px, y_h)
    features, _ = _report(d_ft[:, 0], y_s, d_h_ft, y_h)

    def rows(order: torch.Tensor) -> torch.Tensor:
        """Per sample: itself, its k pixel neighbours, its k feature neighbours."""
        return torch.cat(
            [
                tiles([x_s[i : i + 1], ds.batch(i_px[i].cpu())[0], ds.batch(i_ft[i])[0]],
                      cfg.model.channels)
                for i in order.tolist()
            ]
        )  # fmt: skip

    first = torch.arange(min(n, 2 * int(y_s.max() + 1)))  # two samples per class
    paths = [out / "neighbours.png", out / "neighbours_closest.png", out / "neighbours.json"]
    save_grid(rows(first[y_s[first].argsort(stable=True)]), paths[0], 2 * k + 1)
    save_grid(rows(ratio_px.argsort()[: len(first)]), paths[1], 2 * k + 1)
    result = {
        "source": str(source),
        "data": ds.source,
        "n_samples": n,
        "n_train": len(train_idx),
        "n_heldout": len(held_idx),
        "k": k,
        "truncation": truncation,
        "seed": seed,
        "pixel": pixel,
        "features": features,
        "classifier_heldout_acc": info["heldout_acc"],
        "notes": (
            "distances to the nearest image of the training split (80%, metrics.heldout_split); "
            "ratio = d(sample) / median d(held-out real image) of its class: << 1 means copies "
            "of training images; pixel distances are L2 on [0,1] images, features are gankit's "
            "offline classifier's (not Inception)"
        ),
        "files": [str(p) for p in paths],
    }
    write_json(paths[2], result)
    return result
