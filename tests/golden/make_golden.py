"""Generate ``inception_golden.npz`` with the peer implementation (torch-fidelity 0.4.0).

Run once, outside CI, in a separate venv that has torch-fidelity (it imports torchvision, which
is only stubbed for import)::

    python3 -m venv /tmp/peer-venv
    echo "$(.venv/bin/python -c 'import site; print(site.getsitepackages()[0])')" \\
        > /tmp/peer-venv/lib/python3.11/site-packages/gankit_venv.pth   # reuse torch + gankit
    /tmp/peer-venv/bin/pip install --no-deps torch-fidelity==0.4.0
    PYTHONPATH=/work/shared/anchor/stubs:src /tmp/peer-venv/bin/python tests/golden/make_golden.py

Nothing big is stored: the Inception weights are random, regenerated from ``WEIGHT_SEED`` by
:func:`random_inception_state` (also used by ``tests/test_inception.py``), and the images come
from ``IMAGE_SEED``. The file holds the peer's outputs on them.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

WEIGHT_SEED = 1234
IMAGE_SEED = 99
GOLDEN = Path(__file__).with_name("inception_golden.npz")


def random_inception_state(seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """A random state dict for ``FIDInceptionV3`` whose activations neither vanish nor explode.

    He-normal conv weights, batch-norm affine/statistics drawn around identity, small fc.
    """
    from gankit.metrics.inception import FIDInceptionV3

    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, ref in sorted(FIDInceptionV3().state_dict().items()):
        if name.endswith("num_batches_tracked"):
            state[name] = ref.clone()
        elif ref.dim() == 4:  # conv weight
            fan_in = ref[0].numel()
            state[name] = torch.randn(ref.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name.endswith("running_var") or name.endswith("bn.weight"):
            state[name] = 0.5 + torch.rand(ref.shape, generator=g)
        elif name == "fc.weight":
            state[name] = torch.randn(ref.shape, generator=g) / ref.shape[1] ** 0.5
        else:  # bn running_mean / bias, fc bias
            state[name] = 0.1 * torch.randn(ref.shape, generator=g)
    return state


def golden_images(seed: int = IMAGE_SEED) -> torch.Tensor:
    """uint8 ``(4, 3, 64, 64)``: two noise images and two smooth gradients with noise."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (2, 3, 64, 64), generator=g, dtype=torch.uint8)
    ramp = torch.linspace(0, 255, 64).view(1, 1, 1, 64).expand(2, 3, 64, 64)
    smooth = (ramp + 20 * torch.randn(2, 3, 64, 64, generator=g)).clamp(0, 255).to(torch.uint8)
    return torch.cat([noise, smooth])


def golden_features(seed: int = IMAGE_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random feature sets (fake ``(120, 16)``, real ``(100, 16)``) and logits ``(200, 12)``."""
    rng = np.random.RandomState(seed)
    fake = rng.randn(120, 16).astype(np.float32)
    real = (rng.randn(100, 16) * 1.3 + 0.2).astype(np.float32)
    logits = (rng.randn(200, 12) * 3).astype(np.float32)
    return fake, real, logits


def main() -> None:
    sys.modules["torchvision.transforms.functional"] = types.ModuleType("functional")
    import torch_fidelity
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x as tf_resize,
    )
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_features_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    out: dict[str, np.ndarray] = {"peer_version": np.array(torch_fidelity.__version__)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random_inception.pth"
        torch.save(random_inception_state(), path)
        net = FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased", "logits"], str(path)
        )
        pool3, logits_unbiased, logits = net(golden_images())
    out["pool3"], out["logits_unbiased"], out["logits"] = (
        t.numpy() for t in (pool3, logits_unbiased, logits)
    )

    g = torch.Generator().manual_seed(IMAGE_SEED)
    small = torch.rand(2, 3, 5, 7, generator=g) * 255
    large = torch.rand(1, 2, 40, 30, generator=g) * 255
    out["resize_small_in"], out["resize_large_in"] = small.numpy(), large.numpy()
    out["resize_small_out"] = tf_resize(small, size=(13, 17), align_corners=False).numpy()
    out["resize_large_out"] = tf_resize(large, size=(17, 23), align_corners=False).numpy()

    fake, real, isc_logits = golden_features()
    stats = [fid_features_to_statistics(torch.from_numpy(f)) for f in (fake, real)]
    out["fid"] = np.array(
        fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    )
    isc = isc_features_to_metric(
        torch.from_numpy(isc_logits), splits=10, shuffle=True, rng_seed=2020
    )
    out["is_mean"], out["is_std"] = (
        np.array(isc["inception_score_mean"]),
        np.array(isc["inception_score_std"]),
    )
    kid = kid_features_to_metric(
        torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=10, kid_subset_size=50,
        kid_degree=3, kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1, rng_seed=2020, verbose=False,
    )  # fmt: skip
    out["kid_mean"] = np.array(kid["kernel_inception_distance_mean"])
    out["kid_std"] = np.array(kid["kernel_inception_distance_std"])
    precision, recall = calculate_precision_recall_full(
        torch.from_numpy(fake), torch.from_numpy(real), neighborhood=5
    )
    out["precision_k5"], out["recall_k5"] = np.array(precision), np.array(recall)
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
