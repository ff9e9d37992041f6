"""The FID Inception-v3 graph (``pt_inception-2015-12-05``) in plain torch.

This is the network behind TensorFlow's ``inception-2015-12-05.tgz`` that the original FID code
(Heusel et al. 2017) and the Inception Score code (Salimans et al. 2016) evaluate, in the
PyTorch port ``pt_inception-2015-12-05-6726825d.pth`` used by pytorch-fid and torch-fidelity.
Parameter names follow that file, so its state dict loads with ``strict=True``.

It differs from the ImageNet Inception-v3 of torchvision in ways that change the numbers:

* 1008 output logits (the TF graph has 8 unused classes on top of ImageNet's 1000);
* the average-pool branch of the ``Mixed_5*``, ``Mixed_6b-e`` and ``Mixed_7b`` blocks does not
  count zero padding (TF ``avg_pool`` with ``SAME`` padding);
* the pool branch of the last block (``Mixed_7c``) uses *max* pooling instead of average pooling;
* batch norm has ``eps = 1e-3``; the convolutions have no bias.

Input protocol (:meth:`FIDInceptionV3.forward`): uint8 images ``(N, 3, H, W)`` (grey images are
repeated to 3 channels) → TF-1.x ``resize_bilinear`` to 299×299 (:func:`tf1_resize_bilinear`;
``resize="clean"``: clean-fid's PIL bicubic float resize instead,
:func:`gankit.data.preprocess.resize_clean`) → ``(x - 128) / 128`` → pool3 features
``(N, 2048)`` and logits ``(N, 1008)``.

Weights are never downloaded: pass ``--inception-weights PATH`` or put the file at
``$GANKIT_CACHE/inception/pt_inception-2015-12-05-6726825d.pth`` (``GANKIT_CACHE`` defaults to
``~/.cache/gankit``). The file is the one released by pytorch-fid (``fid_weights`` release) and
torch-fidelity (``v0.2.0`` release, named ``weights-inception-2015-12-05-6726825d.pth``); both
have SHA-256 :data:`INCEPTION_SHA256` (95,628,359 bytes).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gankit.data.preprocess import resize_clean
from gankit.errors import GankitError
from gankit.metrics.registry import ExtractorSetup, register_extractor
from gankit.metrics.stats_cache import cache_root

INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_INPUT_SIZE = 299
INCEPTION_ID = "pt_inception-2015-12-05-6726825d/tf1-bilinear-299"
INCEPTION_IDS = {
    "legacy": INCEPTION_ID,
    "clean": "pt_inception-2015-12-05-6726825d/pil-bicubic-299",
}


def tf1_resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize exactly as TF 1.x ``tf.image.resize_bilinear(align_corners=False)``.

    Output pixel ``d`` samples the input at ``s = d · in / out`` (no half-pixel offset, unlike
    ``F.interpolate``), interpolating between ``floor(s)`` and ``min(floor(s) + 1, in - 1)``.
    The scale and source coordinates are computed in float32 as TF does. Written as two
    interpolation matrices: ``out = Wy · x · Wxᵀ``.

    Args:
        x: float ``(N, C, H, W)``.
        size: ``(out_h, out_w)``.
    Returns:
        ``(N, C, out_h, out_w)`` of the dtype of ``x``.
    """
    wy = _tf1_interp_matrix(x.shape[2], size[0], x.device, x.dtype)
    wx = _tf1_interp_matrix(x.shape[3], size[1], x.device, x.dtype)
    return torch.einsum("oh,nchw,pw->ncop", wy, x, wx)


def _tf1_interp_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(n_out, n_in)`` matrix of TF1 bilinear weights along one axis."""
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    src = torch.arange(n_out, dtype=torch.float32) * scale
    lo = src.floor().long().clamp_max(n_in - 1)
    hi = (lo + 1).clamp_max(n_in - 1)
    frac = src - lo.float()
    w = torch.zeros(n_out, n_in, dtype=torch.float32)
    rows = torch.arange(n_out)
    w.index_put_((rows, lo), 1.0 - frac, accumulate=True)
    w.index_put_((rows, hi), frac, accumulate=True)
    return w.to(device=device, dtype=dtype)


class ConvBN(nn.Module):
    """Conv (no bias) → BatchNorm(eps=1e-3) → ReLU; the unit every Inception branch is made of."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: Tensor) -> Tensor:
    """3×3 stride-1 average pool that ignores the zero padding (TF ``SAME`` avg_pool)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


class Mixed35(nn.Module):
    """35×35 block (``Mixed_5b/c/d``): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1."""

    def __init__(self, c_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1 = ConvBN(c_in, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool_tf(x)),
            ],
            1,
        )


class Reduce35to17(nn.Module):
    """Grid reduction 35→17 (``Mixed_6a``): 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class Mixed17(nn.Module):
    """17×17 block with factorised 7×7 convolutions (``Mixed_6b..e``)."""

    def __init__(self, c_in: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_tf(x))], 1)


class Reduce17to8(nn.Module):
    """Grid reduction 17→8 (``Mixed_7a``): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool/2."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(c_in, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat(
            [self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1
        )


class Mixed8(nn.Module):
    """8×8 block with expanded 1×3/3×1 branches (``Mixed_7b``, ``Mixed_7c``).

    ``pool`` is the pooling of the pool branch: padding-excluding average for ``Mixed_7b``,
    max for ``Mixed_7c`` (a quirk of the 2015-12-05 TF graph).
    """

    def __init__(self, c_in: int, pool: str) -> None:
        super().__init__()
        self.pool = _avg_pool_tf if pool == "avg" else _max_pool_same
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(self.pool(x)),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """Inception-v3 of the TF ``2015-12-05`` graph, up to pool3 and the 1008 logits.

    Build it with random weights (tests) or through :func:`load_inception` (real weights).
    Always used in eval mode (batch norm with running statistics); no gradients are needed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = Mixed35(192, pool_features=32)
        self.Mixed_5c = Mixed35(256, pool_features=64)
        self.Mixed_5d = Mixed35(288, pool_features=64)
        self.Mixed_6a = Reduce35to17(288)
        self.Mixed_6b = Mixed17(768, c7=128)
        self.Mixed_6c = Mixed17(768, c7=160)
        self.Mixed_6d = Mixed17(768, c7=160)
        self.Mixed_6e = Mixed17(768, c7=192)
        self.Mixed_7a = Reduce17to8(768)
        self.Mixed_7b = Mixed8(1280, pool="avg")
        self.Mixed_7c = Mixed8(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)
        self.eval()

    def preprocess(self, images: Tensor, resize: str = "legacy") -> Tensor:
        """uint8 ``(N, 1|3, H, W)`` → float ``(N, 3, 299, 299)`` in ``[-1, 1]``, resized with
        TF1 bilinear (``legacy``) or clean-fid's PIL bicubic (``clean``)."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise GankitError(
                "Inception input must be uint8 images (N, 1|3, H, W), got "
                f"{images.dtype} {tuple(images.shape)}"
            )
        size = (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE)
        if resize == "clean":
            x = torch.from_numpy(resize_clean(images.cpu().numpy(), size))
            x = x.to(self.fc.weight.device).expand(-1, 3, -1, -1)
        else:
            x = images.to(self.fc.weight.device, torch.float32).expand(-1, 3, -1, -1)
            x = tf1_resize_bilinear(x, size)
        return (x - 128.0) / 128.0

    @torch.no_grad()
    def forward(self, images: Tensor, resize: str = "legacy") -> tuple[Tensor, Tensor]:
        """Pool3 features and IS logits of uint8 images.

        Args:
            images: uint8 ``(N, 3, H, W)`` or ``(N, 1, H, W)`` (grey, repeated to RGB).
            resize: ``legacy`` (TF1 bilinear) or ``clean`` (:meth:`preprocess`).
        Returns:
            ``pool3`` float32 ``(N, 2048)`` (FID/KID/PRDC features) and ``logits`` float32
            ``(N, 1008)`` = ``pool3 @ fc.weight.T`` *without* the fc bias, the tensor the
            original Inception Score code takes the softmax of (torch-fidelity's
            ``logits_unbiased``).
        """
        x = self.preprocess(images, resize)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        pool3 = x.mean(dim=(2, 3))
        return pool3, pool3 @ self.fc.weight.T


def default_weights_path() -> Path:
    """``$GANKIT_CACHE/inception/pt_inception-2015-12-05-6726825d.pth``."""
    return cache_root() / "inception" / INCEPTION_FILENAME


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checked_weights_path(weights: str | Path | None = None) -> Path:
    """The Inception weights file to use, after checking it exists and has the right SHA-256.

    Args:
        weights: path of the ``.pth`` file; ``None``/``""`` means :func:`default_weights_path`.
    Raises:
        GankitError: the file is missing or its SHA-256 is not :data:`INCEPTION_SHA256`.
    """
    path = Path(weights) if weights else default_weights_path()
    where = (
        f"name it (gankit eval --inception-weights PATH; in training eval.inception_weights) "
        f"or put it at {default_weights_path()} (set GANKIT_CACHE to move the cache)"
    )
    if not path.is_file():
        raise GankitError(
            f"Inception weights not found: {path}; download {INCEPTION_FILENAME} "
            f"(pytorch-fid 'fid_weights' release, SHA-256 {INCEPTION_SHA256}) and {where}"
        )
    digest = sha256_of(path)
    if digest != INCEPTION_SHA256:
        raise GankitError(
            f"Inception weights {path} have SHA-256 {digest}, expected {INCEPTION_SHA256} "
            f"({INCEPTION_FILENAME}); {where}"
        )
    return path


def load_inception(
    weights: str | Path | None = None, device: str | torch.device = "cpu"
) -> FIDInceptionV3:
    """The FID Inception with the real ``pt_inception-2015-12-05`` weights, in eval mode
    (``weights`` as in :func:`checked_weights_path`, which raises for a missing/wrong file)."""
    path = checked_weights_path(weights)
    net = FIDInceptionV3()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return net.to(device).eval().requires_grad_(False)


class InceptionExtractor:
    """Feature extractor ``uint8 (B, C, H, W) -> {"pool3": (B, 2048), "logits": (B, 1008)}``
    (``resize``: the 299×299 resize, :meth:`FIDInceptionV3.preprocess`)."""

    def __init__(self, net: FIDInceptionV3, resize: str = "legacy") -> None:
        self.net, self.resize = net, resize
        self.id = INCEPTION_IDS[resize]

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        pool3, logits = self.net(images, self.resize)
        return {"pool3": pool3, "logits": logits}


@register_extractor("inception", outputs=("pool3", "logits"), offline=False)
def _inception_extractor(setup: ExtractorSetup) -> tuple[InceptionExtractor, dict]:
    """The FID Inception with the checked ``pt_inception-2015-12-05`` weights."""
    net = load_inception(setup.inception_weights, setup.device)
    return InceptionExtractor(net, setup.resize), {}
