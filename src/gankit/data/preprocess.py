"""Bring any image to the model's square resolution and channel count.

Geometry (every source): scale the shorter side to ``resolution`` and keep the centred square,
done in one resample of the centred square box (PIL's box: pixels just outside it feed the
filter's support). ``resize="legacy"`` (default, training data) is PIL's bilinear filter on the
8-bit image (its support widens when shrinking, so downscaling is antialiased);
``resize="clean"`` is clean-fid's resize (Parmar et al. 2022, "On Aliased Resizing and
Surprising Subtleties in GAN Evaluation"): each channel as a float32 PIL image, PIL's bicubic
filter (Keys a = -0.5, support widened when shrinking), clipped to ``[0, 255]``
(:func:`resize_clean`), here rounded back to uint8. Channels: grey is repeated to RGB; RGB is
reduced to grey with the ITU-R 601-2 luma weights ``L = 0.299 R + 0.587 G + 0.114 B`` (PIL's
``convert("L")``); an alpha channel is dropped.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from gankit.errors import GankitError, ParameterError

RESIZE_MODES = ("legacy", "clean")
MIN_RESOLUTION = 8
MAX_RESOLUTION = 1024
_LUMA = np.array([0.299, 0.587, 0.114])


def check_resize(resize: object) -> None:
    """ParameterError unless ``resize`` is one of :data:`RESIZE_MODES`."""
    if resize not in RESIZE_MODES:
        raise ParameterError("resize", f"expected one of {', '.join(RESIZE_MODES)}, got {resize!r}")


def check_request(resolution: int, channels: int, prefix: str = "model.") -> None:
    """The requested size must be an integer in ``MIN..MAX_RESOLUTION`` and channels 1 or 3;
    errors name ``{prefix}resolution`` / ``{prefix}channels``."""
    if not isinstance(resolution, int) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise GankitError(
            f"{prefix}resolution = {resolution!r}: data loading supports integer resolutions "
            f"{MIN_RESOLUTION}..{MAX_RESOLUTION}"
        )
    if channels not in (1, 3):
        raise GankitError(f"{prefix}channels = {channels!r}: expected 1 (grey) or 3 (RGB)")


def resize_clean(
    x: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """clean-fid's resize: ``x`` ``(N, C, H, W)`` (any real dtype, 0..255) → float32
    ``(N, C, out_h, out_w)``, each channel a float32 (mode ``F``) PIL image resized with PIL's
    bicubic filter (antialiased), optionally from the sub-rectangle ``box``, clipped to
    ``[0, 255]``; no quantisation."""
    n, c = x.shape[:2]
    out = np.empty((n, c, size[0], size[1]), dtype=np.float32)
    for i in range(n):
        for k in range(c):
            img = Image.fromarray(np.ascontiguousarray(x[i, k], dtype=np.float32))
            out[i, k] = np.asarray(
                img.resize((size[1], size[0]), Image.Resampling.BICUBIC, box=box)
            )
    return np.clip(out, 0.0, 255.0, out=out)


def fit_square(img: Image.Image, resolution: int, resize: str = "legacy") -> Image.Image:
    """Resize the centred ``min(W, H)`` square of ``img`` (mode ``L`` or ``RGB``) to
    ``resolution × resolution`` (``resize``: module docstring)."""
    w, h = img.size
    if (w, h) == (resolution, resolution):
        return img
    side = min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    box = (left, top, left + side, top + side)
    if resize == "legacy":
        return img.resize((resolution, resolution), Image.Resampling.BILINEAR, box=box)
    chw = resize_clean(pil_to_chw(img)[None], (resolution, resolution), box)[0]
    arr = np.rint(chw).astype(np.uint8)
    return Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))


def to_grey_or_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode → mode ``L`` (grey modes) or ``RGB`` (colour modes), 8 bits per channel.

    16-bit and 32-bit integer grey (``I;16*``, ``I``) are scaled from ``0..65535`` to ``0..255``;
    float grey (``F``) is clipped to ``0..255`` (``ValueError`` for NaN pixels, and for values
    all within ``[0, 1]``, not all 0: an image scaled to ``[0, 1]``, which would come out
    black); palette
    images go
    through RGBA so a transparency entry is honoured before the alpha is dropped; CMYK, YCbCr,
    LAB, HSV convert to RGB.
    """
    mode = img.mode
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if np.isnan(arr).any():
            raise ValueError("NaN pixel values")
        if mode == "F" and arr.size and arr.min() >= 0 and 0 < arr.max() <= 1:
            raise ValueError(
                "float pixel values all in [0, 1]; float images are read on the 0..255 scale "
                "(save it scaled to 0..255, or as an 8-bit image)"
            )
        arr = arr / 257.0 if mode.startswith("I") else arr
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if mode in ("L", "1", "LA", "La"):
        return img.convert("L")
    if mode == "P":
        img = img.convert("RGBA")
    return img if mode == "RGB" else img.convert("RGB")


def pil_to_chw(img: Image.Image) -> np.ndarray:
    """PIL image in mode ``L`` or ``RGB`` → uint8 ``(C, H, W)`` with ``C`` = 1 or 3."""
    arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 ``(N, C_in, H, W)``, ``C_in ∈ {1, 3, 4}`` → ``(N, channels, H, W)``, channels 1|3."""
    if x.shape[1] == 4:
        x = x[:, :3]
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return np.repeat(x, 3, axis=1)
    luma = np.einsum("nchw,c->nhw", x.astype(np.float64), _LUMA)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, None]


def fit_array(x: np.ndarray, resolution: int, channels: int, resize: str = "legacy") -> np.ndarray:
    """uint8 ``(N, C, H, W)`` → ``(N, channels, resolution, resolution)``; as is if it already fits.

    Each image goes through :func:`fit_square`, so array sources share the folder geometry.
    """
    x = convert_channels(x, channels)
    if x.shape[2:] == (resolution, resolution):
        return x
    out = np.empty((x.shape[0], channels, resolution, resolution), dtype=np.uint8)
    for i, img in enumerate(x):
        hwc = np.ascontiguousarray(img[0] if channels == 1 else img.transpose(1, 2, 0))
        out[i] = pil_to_chw(fit_square(Image.fromarray(hwc), resolution, resize))
    return out
