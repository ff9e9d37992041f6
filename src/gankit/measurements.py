"""AmbientGAN measurement models ``y = f_θ(x)`` (Bora, Price & Dimakis, ICLR 2018, Sec. 4).

AmbientGAN learns the distribution of clean images when only lossy measurements ``y = f_θ(x)``
of them exist: D tells real measurements from ``f_θ(G(z))`` with ``θ ~ p_θ`` drawn afresh for
every sample, so G is trained through the (known, differentiable) measurement. Each measurement
here is a callable ``f(x, generator) -> y`` on image batches ``x: (B, C, H, W)`` in ``[-1, 1]``;
it draws a new θ for every sample on every call (from ``generator``) and is differentiable in
``x``. :meth:`Measurement.measure` also returns the θ it drew.

**Pixel convention.** The paper defines the measurements on images in ``[0, 1]``, where a
"zeroed" pixel is black. gankit's images live in ``[-1, 1]``, so each measurement is applied to
``u = (x + 1) / 2`` exactly as the paper defines it, and an image-valued result is mapped back
with ``y = 2 f(u) - 1``: a zeroed pixel reads ``-1``, black, the same value black has in the
data. Outputs that are not images (projections) stay in ``u`` units.

=============================  =========================================  ====================
spec (defaults)                y                                          unmeasure inverse
=============================  =========================================  ====================
``block_pixels:p=0.5``         each pixel zeroed independently w.p. p     mean in-painting
``conv_noise:sigma=1,          Gaussian blur (std ``sigma`` px; 0: none)  Wiener deconvolution
noise=0.2``                    + i.i.d. ``N(0, noise²)`` per pixel
                               (both in [0, 100])
``block_patch:k=14``           one random ``k×k`` patch zeroed            mean in-painting
``keep_patch:k=14``            all but one random ``k×k`` patch zeroed    —
``extract_patch:k=14``         one random ``k×k`` patch, alone            —
``pad_rotate_project``         pad, rotate by θ ~ U[0, π), sum columns    —
``pad_rotate_project_theta``   the same, with (cos θ, sin θ) for D        —
``gaussian_projection:m=1``    ``m`` random Gaussian vectors θ and        —
                               their inner products with the image
=============================  =========================================  ====================

Specs are ``name`` or ``name:key=value,...`` (:func:`build_measurement`); ``noise`` is in
gankit's ``[-1, 1]`` units (``noise=0.2`` is a standard deviation of 0.1 on the paper's
``[0, 1]`` scale). The inverses are the paper's "unmeasure" baseline: they see the measurement
and the θ it was made with (which pixels are missing), never the clean image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gankit.errors import GankitError

__all__ = [
    "Measurement",
    "build_measurement",
    "gaussian_kernel",
    "inpaint",
    "invertible_measurements",
    "list_measurements",
    "wiener_deconvolve",
]


@dataclass(frozen=True)
class Param:
    """One numeric parameter of a measurement: type, default and allowed range."""

    kind: type  # int or float
    default: float
    ok: Callable[[float], bool]
    expected: str  # the allowed range in words, for the error message


class Measurement:
    """Base class: ``f(x (B, C, H, W) in [-1, 1], generator) -> y`` with a fresh θ per sample.

    Subclasses set ``name`` and ``PARAMS`` and implement :meth:`sample_theta` and :meth:`apply`
    (and :meth:`output_shape`, :meth:`inverse` where they differ from the defaults).

    Attributes:
        keeps_pixels: every output value is an input pixel value or ``-1``, so storing the
            measurements of uint8 images as uint8 is exact.
    """

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}
    keeps_pixels: ClassVar[bool] = False

    def __init__(self, **values: float):
        try:
            resolved = self.resolve(values)
        except GankitError as err:
            raise GankitError(f"measurement {self.name}: {err}") from None
        for key, value in resolved.items():
            setattr(self, key, value)

    @classmethod
    def resolve(cls, values: dict[str, object]) -> dict[str, float]:
        """``values`` with defaults filled in, converted and range-checked (short error)."""
        unknown = sorted(set(values) - set(cls.PARAMS))
        if unknown:
            valid = ", ".join(cls.PARAMS) or "none"
            raise GankitError(f"unknown parameter '{unknown[0]}' (valid for {cls.name}: {valid})")
        out: dict[str, float] = {}
        for key, param in cls.PARAMS.items():
            raw = values.get(key, param.default)
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise GankitError(f"{key} must be a number {param.expected}, got {raw}") from None
            if param.kind is int and not number.is_integer():
                raise GankitError(f"{key} must be {param.expected}, got {raw}")
            value = param.kind(number)
            if not math.isfinite(number) or not param.ok(value):
                raise GankitError(f"{key} must be {param.expected}, got {raw}")
            out[key] = value
        return out

    @property
    def spec(self) -> str:
        """Canonical spec: every parameter, in declaration order (``block_pixels:p=0.5``)."""
        if not self.PARAMS:
            return self.name
        return f"{self.name}:" + ",".join(f"{k}={getattr(self, k)!r}" for k in self.PARAMS)

    def __repr__(self) -> str:
        return f"Measurement({self.spec})"

    # -- what subclasses define -------------------------------------------------------------
    def check_image(self, image_shape: tuple[int, int, int]) -> None:
        """Raise a short :class:`GankitError` if images ``(C, H, W)`` cannot be measured."""

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        """Shape of one measurement of an image ``(C, H, W)`` (default: the same)."""
        return tuple(image_shape)

    def sample_theta(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """θ for every sample of ``x`` (on ``x.device``), first dimension ``B``."""
        raise NotImplementedError

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        """``f_θ(x)`` for given θ; differentiable in ``x``."""
        raise NotImplementedError

    @classmethod
    def invertible(cls) -> bool:
        """Whether it has an approximate inverse (:meth:`inverse`) for the unmeasure baseline."""
        return cls.inverse is not Measurement.inverse

    def inverse(self, y: Tensor, theta: Tensor) -> Tensor:
        """Approximate clean images ``(B, C, H, W)`` from measurements ``y`` and their θ."""
        raise GankitError(
            f"measurement {self.name} has no approximate inverse for the unmeasure baseline "
            f"(measurements with one: {', '.join(invertible_measurements())})"
        )

    # -- calling ------------------------------------------------------------------------------
    def image_output(self, image_shape: tuple[int, int, int]) -> bool:
        """Whether measurements of ``(C, H, W)`` images are images of that same shape."""
        return self.output_shape(image_shape) == tuple(image_shape)

    def measure(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(y, θ)``: the measurements of ``x: (B, C, H, W)`` and the θ drawn for them."""
        if x.dim() != 4:
            raise GankitError(
                f"measurement {self.spec}: expected images (B, C, H, W), got {tuple(x.shape)}"
            )
        try:
            self.check_image(tuple(x.shape[1:]))
        except GankitError as err:
            raise GankitError(f"measurement {self.spec}: {err}") from None
        theta = self.sample_theta(x, generator)
        return self.apply(x, theta), theta

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.measure(x, generator)[0]


_REGISTRY: dict[str, type[Measurement]] = {}


def register(cls: type[Measurement]) -> type[Measurement]:
    """Class decorator: make ``cls`` buildable by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def list_measurements() -> list[str]:
    return sorted(_REGISTRY)


def invertible_measurements() -> list[str]:
    """Names of the measurements with an approximate inverse (the unmeasure baseline)."""
    return [name for name in list_measurements() if _REGISTRY[name].invertible()]


def build_measurement(
    spec: str,
    image_shape: tuple[int, int, int] | None = None,
    param: str = "measurement",
) -> Measurement:
    """The measurement named by ``spec`` (``"block_pixels:p=0.5"``; ``-`` may stand for ``_``).

    Args:
        spec: ``name`` or ``name:key=value,key=value``; missing parameters take their defaults.
        image_shape: ``(C, H, W)`` of the images it will measure, checked now if given
            (e.g. a patch larger than the image).
        param: the config key or flag the spec came from, for error messages.

    Raises:
        GankitError: one line naming ``param`` and the spec: an unknown name (lists the valid
            ones), an unknown or out-of-range parameter, or images it cannot measure.
    """
    where = f"{param} '{spec}'"
    name, _, rest = str(spec).strip().partition(":")
    name = name.strip().replace("-", "_")
    if name not in _REGISTRY:
        raise GankitError(
            f"{where}: unknown measurement '{name}'; valid: {', '.join(list_measurements())}"
        )
    values: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise GankitError(f"{where}: expected name:key=value,key=value, got '{item}'")
        if key.strip() in values:
            raise GankitError(f"{where}: parameter '{key.strip()}' given twice")
        values[key.strip()] = value.strip()
    cls = _REGISTRY[name]
    try:
        measurement = cls(**cls.resolve(values))
        if image_shape is not None:
            measurement.check_image(tuple(image_shape))
    except GankitError as err:
        raise GankitError(f"{where}: {err}") from None
    return measurement


def _to_u(x: Tensor) -> Tensor:
    """gankit pixels ``[-1, 1]`` → the paper's ``[0, 1]``."""
    return (x + 1) / 2


def _from_u(u: Tensor) -> Tensor:
    return u * 2 - 1


# -- missing pixels ---------------------------------------------------------------------------
@register
class BlockPixels(Measurement):
    """Block-Pixels: each pixel is set to zero independently with probability ``p``.

    θ: ``(B, 1, H, W)`` bool, True where the pixel is blocked (all channels of a pixel
    together). ``y = x`` where kept, ``-1`` (black) where blocked.
    """

    name = "block_pixels"
    PARAMS = {"p": Param(float, 0.5, lambda v: 0 <= v <= 1, "in [0, 1]")}
    keeps_pixels = True

    def sample_theta(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        return torch.rand(b, 1, h, w, generator=generator, device=x.device) < self.p

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return x.masked_fill(theta, -1.0)

    def inverse(self, y: Tensor, theta: Tensor) -> Tensor:
        """Mean in-painting of the blocked pixels (:func:`inpaint`)."""
        return inpaint(y, ~theta)


class _Patch(Measurement):
    """Shared by the patch measurements: θ is the top-left corner ``(B, 2)`` (row, column) of a
    ``k×k`` patch, uniform over the ``(H - k + 1)(W - k + 1)`` positions inside the image."""

    PARAMS = {"k": Param(int, 14, lambda v: v >= 1, "an integer >= 1")}
    keeps_pixels = True

    def check_image(self, image_shape: tuple[int, int, int]) -> None:
        _, h, w = image_shape
        if self.k > min(h, w):
            raise GankitError(f"patch size k={self.k} is larger than the {h}x{w} images")

    def sample_theta(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        b, _, h, w = x.shape
        top = torch.randint(h - self.k + 1, (b,), generator=generator, device=x.device)
        left = torch.randint(w - self.k + 1, (b,), generator=generator, device=x.device)
        return torch.stack([top, left], dim=1)

    def patch_mask(self, x: Tensor, theta: Tensor) -> Tensor:
        """``(B, 1, H, W)`` bool, True inside each sample's patch."""
        rows = torch.arange(x.shape[2], device=x.device)
        cols = torch.arange(x.shape[3], device=x.device)
        top, left = theta[:, :1], theta[:, 1:]
        in_rows = (rows >= top) & (rows < top + self.k)  # (B, H)
        in_cols = (cols >= left) & (cols < left + self.k)  # (B, W)
        return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


@register
class BlockPatch(_Patch):
    """Block-Patch: a random ``k×k`` patch is set to zero (``-1``); the rest is kept."""

    name = "block_patch"

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return x.masked_fill(self.patch_mask(x, theta), -1.0)

    def inverse(self, y: Tensor, theta: Tensor) -> Tensor:
        """Mean in-painting of the blocked patch (:func:`inpaint`)."""
        return inpaint(y, ~self.patch_mask(y, theta))


@register
class KeepPatch(_Patch):
    """Keep-Patch: everything outside a random ``k×k`` patch is set to zero (``-1``)."""

    name = "keep_patch"

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        return x.masked_fill(~self.patch_mask(x, theta), -1.0)


@register
class ExtractPatch(_Patch):
    """Extract-Patch: a random ``k×k`` patch is returned alone, ``y: (B, C, k, k)``."""

    name = "extract_patch"

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        return (image_shape[0], self.k, self.k)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        b, c, _, w = x.shape
        offsets = torch.arange(self.k, device=x.device)
        rows = (theta[:, 0, None] + offsets)[:, None, :, None].expand(b, c, self.k, w)
        cols = (theta[:, 1, None] + offsets)[:, None, None, :].expand(b, c, self.k, self.k)
        return x.gather(2, rows).gather(3, cols)


# -- blur + noise -----------------------------------------------------------------------------
def gaussian_kernel(sigma: float) -> Tensor:
    """Normalised 2-D Gaussian ``(K, K)``, ``K = 2⌈3σ⌉ + 1``: ``exp(-(i² + j²) / 2σ²) / Σ``;
    ``σ = 0``: the ``(1, 1)`` identity kernel (no blur)."""
    if sigma == 0:
        return torch.ones(1, 1)
    radius = math.ceil(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = torch.outer(g, g)
    return (kernel / kernel.sum()).float()


def wiener_deconvolve(y: Tensor, kernel: Tensor, noise_std: float) -> Tensor:
    """Wiener deconvolution of ``y = k * x + n`` with a constant noise-to-signal ratio.

    ``X̂(ω) = conj(K(ω)) Y(ω) / (|K(ω)|² + σ_n² / σ_x²)`` on images ``y: (B, C, H, W)`` in the
    paper's ``[0, 1]`` units, computed with FFTs on the images zero-padded by the kernel radius
    (zero, black, outside the image, as the blur assumes), with the signal variance
    ``σ_x² = var(y) - σ_n²`` estimated over all of ``y``.
    """
    radius = kernel.shape[-1] // 2
    _, _, h, w = y.shape
    padded = F.pad(y.double(), (radius,) * 4)
    k = torch.zeros(padded.shape[-2:], dtype=torch.float64, device=y.device)
    k[: kernel.shape[0], : kernel.shape[1]] = kernel.double()
    K = torch.fft.fft2(torch.roll(k, shifts=(-radius, -radius), dims=(0, 1)))  # centre at (0, 0)
    nsr = noise_std**2 / max(float(y.double().var()) - noise_std**2, 1e-12)
    X = torch.fft.fft2(padded) * K.conj() / (K.abs() ** 2 + nsr)
    return torch.fft.ifft2(X).real[..., radius : radius + h, radius : radius + w].float()


@register
class ConvNoise(Measurement):
    """Convolve+Noise: ``y = k * x + θ`` with ``k`` a normalised Gaussian kernel of standard
    deviation ``sigma`` pixels (:func:`gaussian_kernel`, zero padding: black outside the image)
    and ``θ ~ N(0, noise²)`` i.i.d. per pixel and channel (``θ: (B, C, H, W)``); ``sigma=0``
    is noise alone (instance noise)."""

    name = "conv_noise"
    PARAMS = {
        # beyond 100 px the blur of any image is its mean, and noise of std 100 on [-1, 1]
        # pixels leaves no image
        "sigma": Param(float, 1.0, lambda v: 0 <= v <= 100, "in [0, 100]"),
        "noise": Param(float, 0.2, lambda v: 0 <= v <= 100, "in [0, 100]"),
    }

    def __init__(self, **values: float):
        super().__init__(**values)
        self._kernels: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def sample_theta(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return z * self.noise

    def _kernel(self, x: Tensor) -> Tensor:
        """The blur kernel on ``x``'s device and dtype, made once (no host-to-device copy per
        call, so a CUDA graph can capture the blur)."""
        key = (x.device, x.dtype)
        if key not in self._kernels:
            self._kernels[key] = gaussian_kernel(self.sigma).to(device=x.device, dtype=x.dtype)
        return self._kernels[key]

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        kernel = self._kernel(x)
        c, r = x.shape[1], kernel.shape[-1] // 2
        blurred = F.conv2d(_to_u(x), kernel.expand(c, 1, -1, -1), padding=r, groups=c)
        return _from_u(blurred) + theta

    def inverse(self, y: Tensor, theta: Tensor) -> Tensor:
        """Wiener deconvolution (:func:`wiener_deconvolve`); θ is not used, only its std."""
        u = wiener_deconvolve(_to_u(y), gaussian_kernel(self.sigma), self.noise / 2)
        return _from_u(u).clamp(-1, 1)


# -- projections ------------------------------------------------------------------------------
def rotation_grid(theta: Tensor, side: int) -> Tensor:
    """``grid_sample`` grid ``(B, P, P, 2)`` (align_corners=True) rotating a ``P×P`` image.

    Output pixel (row i, column j) reads the input at column ``c + cos θ (j - c) + sin θ (i - c)``
    and row ``c - sin θ (j - c) + cos θ (i - c)``, ``c = (P - 1) / 2``: a rotation by θ about the
    image centre, clockwise as displayed (rows grow downwards).
    """
    c = (side - 1) / 2
    t = torch.arange(side, device=theta.device, dtype=torch.float32) - c
    di, dj = torch.meshgrid(t, t, indexing="ij")  # row and column offsets from the centre
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    col = c + cos * dj + sin * di
    row = c - sin * dj + cos * di
    return torch.stack([col, row], dim=-1) / (side - 1) * 2 - 1


@register
class PadRotateProject(Measurement):
    """Pad-Rotate-Project: zero-pad the image to ``P×P`` (``P = ⌈√(H² + W²)⌉``, so no rotation
    crops it), rotate by ``θ ~ U[0, π)`` (bilinear, :func:`rotation_grid`) and sum along the
    vertical axis: ``y[c, j] = (1/H) Σ_i R_θ(pad(u))[c, i, j]``, a 1-D signal ``(B, C, P)`` in
    ``u`` units (the sum is divided by the image height ``H`` to keep D's input O(1))."""

    name = "pad_rotate_project"

    @staticmethod
    def side(h: int, w: int) -> int:
        return math.ceil(math.hypot(h, w))

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        c, h, w = image_shape
        return (c, self.side(h, w))

    def sample_theta(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.rand(x.shape[0], generator=generator, device=x.device) * math.pi

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        _, _, h, w = x.shape
        side = self.side(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        u = F.pad(_to_u(x), (left, side - w - left, top, side - h - top))
        grid = rotation_grid(theta, side).to(u.dtype)
        rotated = F.grid_sample(u, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return rotated.sum(dim=2) / h


@register
class PadRotateProjectTheta(PadRotateProject):
    """Pad-Rotate-Project-θ: :class:`PadRotateProject` with θ given to D, as two extra constant
    channels ``cos θ``, ``sin θ``: ``y: (B, C + 2, P)``."""

    name = "pad_rotate_project_theta"

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        c, h, w = image_shape
        return (c + 2, self.side(h, w))

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        y = super().apply(x, theta)
        angle = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1).to(y.dtype)
        return torch.cat([y, angle[:, :, None].expand(-1, -1, y.shape[-1])], dim=1)


@register
class GaussianProjection(Measurement):
    """Gaussian-Projection: ``m`` random vectors ``θ_l ~ N(0, I_n)``, ``n = C·H·W``, and the inner
    products ``⟨θ_l, u⟩ / √n``; D sees both: ``y: (B, m, n + 1)``, row ``l = [θ_l, ⟨θ_l, u⟩/√n]``
    (the fixed ``1/√n`` keeps the products O(1))."""

    name = "gaussian_projection"
    PARAMS = {"m": Param(int, 1, lambda v: v >= 1, "an integer >= 1")}

    def check_image(self, image_shape: tuple[int, int, int]) -> None:
        n = math.prod(image_shape)
        if self.m > n:  # more projections than pixels add no information, only memory
            raise GankitError(
                f"m={self.m} projections exceed the {n} values of a {image_shape} image"
            )

    def output_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, ...]:
        return (self.m, math.prod(image_shape) + 1)

    def sample_theta(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        n = math.prod(x.shape[1:])
        return torch.randn(x.shape[0], self.m, n, generator=generator, device=x.device)

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        u = _to_u(x).flatten(1)
        theta = theta.to(u.dtype)
        products = torch.einsum("bmn,bn->bm", theta, u) / math.sqrt(u.shape[1])
        return torch.cat([theta, products[:, :, None]], dim=2)


# -- in-painting ------------------------------------------------------------------------------
def inpaint(x: Tensor, known: Tensor) -> Tensor:
    """Mean in-painting ("onion peel"): ``x: (B, C, H, W)``, ``known: (B, 1, H, W)`` bool.

    Repeatedly, every unknown pixel with at least one known pixel among its 8 neighbours takes
    the mean of those, and becomes known; until no unknown pixel is left (an image without any
    known pixel stays ``-1``). Known pixels are returned unchanged.
    """
    c = x.shape[1]
    box = torch.ones(c, 1, 3, 3, device=x.device, dtype=x.dtype)
    weight = known.to(x.dtype)
    value = x * weight
    while True:
        total = F.conv2d(value, box, padding=1, groups=c)
        count = F.conv2d(weight, box[:1], padding=1)
        fill = (weight == 0) & (count > 0)
        if not bool(fill.any()):
            break
        value = torch.where(fill, total / count.clamp_min(1), value)
        weight = torch.where(fill, torch.ones_like(weight), weight)
    return torch.where(weight > 0, value, torch.full_like(value, -1.0))
