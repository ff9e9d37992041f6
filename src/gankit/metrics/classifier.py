"""Offline metrics from a classifier that gankit trains itself: ``class_acc`` and ``cfid``.

No downloaded weights are needed, so these metrics work in CI and on air-gapped machines.
gankit trains a small CNN (:class:`SmallClassifier`) on the run's training data, with a fixed
held-out split (:func:`heldout_split`, 20 %, seed 0), and caches it under
``$GANKIT_CACHE/classifiers/<key>.safetensors`` keyed by data source, size, resolution and
channels (an entry that cannot be used is logged and retrained). On the embedded MNIST digits
(4,000 training images at 32×32) it trains in about 10 s on 2 CPU cores and reaches ~96.5 %
held-out accuracy.

* ``class_acc``: fraction of generated images classified as their conditioning class (the
  measure of class-conditional generation used e.g. by Odena et al. 2017, "Conditional image
  synthesis with auxiliary classifier GANs", §4.1, with their Inception network).
* ``cfid``: Fréchet distance (:func:`gankit.metrics.fid.frechet_distance`) in the classifier's
  penultimate (128-d) feature space.

Both live in a gankit-specific feature space: they are **not comparable** with Inception-FID
or with numbers from other code. Compare them only with the same numbers for the real held-out
images (the ceiling), which ``gankit eval`` reports next to them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn
from tqdm import tqdm

from gankit.errors import GankitError
from gankit.metrics.fid import fid_from_features
from gankit.metrics.registry import ExtractorSetup, Features, register_extractor, register_metric
from gankit.metrics.stats_cache import (
    cache_key,
    cache_root,
    data_digest,
    discard_entry,
    write_entry,
)

CLASSIFIER_VERSION = 1  # bump when the architecture or the training recipe changes
HELDOUT_FRACTION = 0.2
MAX_TRAIN_IMAGES = 20000
INFO_KEYS = ("key", "heldout_acc", "n_train", "n_heldout")


class SmallClassifier(nn.Module):
    """CNN ``uint8 (B, C, H, W) -> logits (B, n_classes)`` with 128-d penultimate features.

    Three stride-2 conv + ReLU stages (5×5 to ``width``, 3×3 to ``2·width``, 3×3 to
    ``4·width`` channels), adaptive average pooling to 4×4, ``Linear(64·width, 128) + ReLU``
    (the features), then ``Linear(128, n_classes)``. No batch norm: the features of a sample do
    not depend on its batch. Any resolution ≥ 8 works.
    """

    feature_dim = 128

    def __init__(self, channels: int, n_classes: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * width, self.feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(self.feature_dim, n_classes)

    def features(self, images: Tensor) -> Tensor:
        """uint8 ``(B, C, H, W)`` → float ``(B, 128)``."""
        return self.body(images.float() / 127.5 - 1.0)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def heldout_split(
    n: int, fraction: float = HELDOUT_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed sorted ``(train_idx, heldout_idx)`` of ``range(n)`` from a seeded permutation."""
    perm = np.random.RandomState(seed).permutation(n)
    n_held = int(round(n * fraction))
    return np.sort(perm[: n - n_held]), np.sort(perm[n - n_held :])


def _accuracy(model: SmallClassifier, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 500):
            xb = torch.as_tensor(np.asarray(x[start : start + 500]), device=device)
            pred = model(xb).argmax(dim=1).cpu().numpy()
            correct += int((pred == y[start : start + 500]).sum())
    return correct / max(len(x), 1)


def train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    quiet: bool = True,
) -> SmallClassifier:
    """Train :class:`SmallClassifier` with Adam and a one-cycle schedule (peak ``lr``).

    Runs with one intra-op thread: these convolutions are too small to gain from more, and on a
    busy machine extra threads make training many times slower.

    Args:
        x: uint8 ``(N, C, H, W)`` training images; y: int64 ``(N,)`` labels.
    Returns:
        The model in eval mode on ``device``.
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallClassifier(x.shape[1], n_classes).to(device)
    xt = torch.as_tensor(np.asarray(x))
    yt = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    steps_per_epoch = max(len(xt) // batch_size, 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in tqdm(range(epochs), desc="classifier", unit="epoch", disable=quiet):
            perm = torch.randperm(len(xt), generator=g)
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                loss = F.cross_entropy(model(xt[idx].to(device)), yt[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def load_or_train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    source: str,
    device: str | torch.device = "cpu",
    quiet: bool = True,
) -> tuple[SmallClassifier, dict]:
    """The cached classifier for this data, training (and caching) it on first use.

    Args:
        x: uint8 ``(N, C, H, W)`` — the *whole* dataset; the split is made here.
        y: int64 ``(N,)``; n_classes: number of classes (≥ 2); source: the data source string.
    Returns:
        ``(model, info)``, info = ``{"key", "heldout_acc", "n_train", "n_heldout"}``.
    """
    if n_classes < 2:
        raise GankitError(
            "gankit's own classifier (class_acc, cfid, cprdc, ccoverage_class, analyze "
            f"neighbours and reconstruct's features) needs labelled data with >= 2 classes; "
            f"{source} has {n_classes}"
        )
    n, c, h, w = x.shape
    key = cache_key(
        source=source,
        content=data_digest(x, y, source),
        classes=n_classes,
        version=CLASSIFIER_VERSION,
    )  # the digest covers the shape (n, channels, height, width)
    path = cache_root() / "classifiers" / f"{key}.safetensors"
    model = SmallClassifier(c, n_classes)
    info = _load_cached(path, key, model)
    if info is not None:
        return model.to(device).eval(), info
    train_idx, held_idx = heldout_split(n)
    train_idx = train_idx[:MAX_TRAIN_IMAGES]
    y = np.asarray(y)
    model = train_classifier(x[train_idx], y[train_idx], n_classes, device=device, quiet=quiet)
    info = {
        "key": key,
        "heldout_acc": _accuracy(model, x[held_idx], y[held_idx], torch.device(device)),
        "n_train": len(train_idx),
        "n_heldout": len(held_idx),
    }
    _save(model, path, info)
    return model, info


def _load_cached(path: Path, key: str, model: SmallClassifier) -> dict | None:
    """The info of the classifier cached at ``path``, its weights loaded into ``model``;
    ``None`` if there is none, or (logged) if it cannot be used: unreadable, without its info,
    weights of another shape or not finite."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            info = json.loads((f.metadata() or {}).get("info", "null"))
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (OSError, ValueError, SafetensorError) as err:
        return discard_entry(path, f"unreadable ({type(err).__name__}: {err})")
    if not (isinstance(info, dict) and all(k in info for k in INFO_KEYS) and info["key"] == key):
        return discard_entry(path, f"no info of classifier {key} in its metadata")
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    if {k: v.shape for k, v in state.items()} != shapes:
        return discard_entry(path, "weights of another shape")
    if not all(v.isfinite().all() for v in state.values()):
        return discard_entry(path, "non-finite weights")
    model.load_state_dict(state)
    return info


def _save(model: nn.Module, path: Path, info: dict) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = save_safetensors(state, metadata={"info": json.dumps(info)})
    write_entry(path, lambda f: f.write(blob))


class ClassifierExtractor:
    """Extractor ``uint8 (B, C, H, W) -> {"clf_features": (B, 128), "clf_logits": (B, K)}``."""

    def __init__(self, model: SmallClassifier, key: str) -> None:
        self.model = model
        self.id = f"gankit-classifier-v{CLASSIFIER_VERSION}/{key}"

    @torch.no_grad()
    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        feats = self.model.features(images.to(self.model.head.weight.device))
        return {"clf_features": feats, "clf_logits": self.model.head(feats)}


@register_extractor("classifier", outputs=("clf_features", "clf_logits"), offline=True)
def _classifier_extractor(setup: ExtractorSetup) -> tuple[ClassifierExtractor, dict]:
    """gankit's classifier of the reference data (trained once, cached)."""
    model, info = load_or_train_classifier(
        setup.x, setup.y, setup.n_classes, setup.source, device=setup.device, quiet=setup.quiet
    )
    return ClassifierExtractor(model, info["key"]), {"classifier_heldout_acc": info["heldout_acc"]}


@register_metric("class_acc", extractor="classifier", needs_real=False, needs_labels=True)
def _class_acc(fake: Features, real: Features | None) -> dict[str, float]:
    return {"class_acc": float((fake["clf_logits"].argmax(axis=1) == fake["labels"]).mean())}


@register_metric("cfid", extractor="classifier")
def _cfid(fake: Features, real: Features | None) -> dict[str, float]:
    return {"cfid": fid_from_features(fake["clf_features"], real["clf_features"])}
