"""Request parameters of the ``gankit serve`` JSON API: parsing, defaults and bounds.

Every bad value raises :class:`RequestError` whose one-line message names the parameter and what
was expected; the app answers it with ``{"error": message}`` and the error's HTTP status (400,
404 for an unknown checkpoint, 413 for an oversized body, 415 for a body not sent as JSON).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from gankit.config import MAX_TRUNCATION, MIN_TRUNCATION, truncation_allowed
from gankit.errors import GankitError

MAX_N = 256  # images per grid
MAX_STEPS = 64  # frames per interpolation strip
MAX_API_SEED = 2**53 - 1  # exact in JavaScript numbers
MAX_BODY_BYTES = 64 * 1024
FORMATS = ("json", "png", "npz")


class RequestError(GankitError):
    """A bad request: ``param: message``, answered with HTTP ``status``."""

    def __init__(self, param: str, message: str, status: int = 400):
        super().__init__(f"{param}: {message}")
        self.status = status


@dataclass(frozen=True)
class GenerateParams:
    """``POST /api/generate``: ``n`` images whose labels cycle through ``classes`` (None: all)."""

    n: int = 16
    classes: tuple[int, ...] | None = None
    truncation: float = 0.0
    seed: int = 0
    ncol: int | None = None  # None: one column per class, or a square grid for one class
    checkpoint: str | None = None  # None: the latest
    format: str = "json"


@dataclass(frozen=True)
class InterpolateParams:
    """``POST /api/interpolate``: ``steps`` frames from (seeds[0], classes[0]) to (seeds[1],
    classes[1])."""

    seeds: tuple[int, int] = (0, 1)
    classes: tuple[int, int] = (0, 0)
    steps: int = 8
    truncation: float = 0.0
    checkpoint: str | None = None
    format: str = "json"


def check_body_size(size: int) -> None:
    """Refuse a request body of ``size`` bytes over :data:`MAX_BODY_BYTES` (HTTP 413)."""
    if size > MAX_BODY_BYTES:
        raise RequestError("request body", f"larger than {MAX_BODY_BYTES} bytes", status=413)


def check_content_type(value: str) -> None:
    """Refuse a request body whose ``Content-Type`` header ``value`` is not
    ``application/json`` (HTTP 415): a page of another site cannot send JSON here without a
    CORS preflight, which this server never grants."""
    if value.partition(";")[0].strip().lower() != "application/json":
        raise RequestError(
            "Content-Type", f"expected application/json, got {show(value)}", status=415
        )


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body (empty body: ``{}``)."""
    check_body_size(len(body))
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:  # bad JSON or UTF-8, numbers over 4,300 digits
        msg = str(err).splitlines()[0][:120]
        raise RequestError("request body", f"not valid JSON ({msg})") from None
    if not isinstance(data, dict):
        got = "null" if data is None else type(data).__name__
        raise RequestError("request body", f"expected a JSON object, got {got}")
    return data


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, so that an error message echoing a value,
    key or path stays one short line (``repr`` also escapes lone surrogates)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RequestError(
            show(unknown[0]), f"unknown parameter; expected one of {', '.join(allowed)}"
        )


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(name, f"expected an integer in {lo}..{hi}, got {show(value)}")
    return value


def _truncation(value: Any) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not truncation_allowed(value):
        raise RequestError(
            "truncation",
            f"expected 0 (off) or a number in [{MIN_TRUNCATION}, {MAX_TRUNCATION}], "
            f"got {show(value)}",
        )
    return float(value)


def _class_ids(name: str, value: Any, n_classes: int, length: int | None) -> tuple[int, ...]:
    """``length`` (None: 1..MAX_N) class indices, each in ``[0, n_classes)``."""
    sized = isinstance(value, list) and (
        len(value) == length if length else 1 <= len(value) <= MAX_N
    )
    if not sized:
        expected = f"{length} class indices" if length else f"a list of 1..{MAX_N} class indices"
        raise RequestError(name, f"expected {expected}, got {show(value)}")
    for c in value:
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n_classes:
            raise RequestError(
                name, f"unknown class {show(c)}; the model has classes 0..{n_classes - 1}"
            )
    return tuple(value)


def _checkpoint(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RequestError("checkpoint", f"expected a checkpoint name string, got {show(value)}")
    return value


def _format(value: Any) -> str:
    if value not in FORMATS:
        raise RequestError("format", f"expected one of {', '.join(FORMATS)}, got {show(value)}")
    return value


def generate_params(data: dict[str, Any], n_classes: int) -> GenerateParams:
    """Check a ``/api/generate`` body against the bounds and a model of ``n_classes``."""
    _check_keys(data, tuple(GenerateParams.__dataclass_fields__))
    d = GenerateParams()
    n = _int("n", data.get("n", d.n), 1, MAX_N)
    classes = data.get("classes")
    ncol = data.get("ncol")
    return GenerateParams(
        n=n,
        classes=None if classes is None else _class_ids("classes", classes, n_classes, None),
        truncation=_truncation(data.get("truncation", d.truncation)),
        seed=_int("seed", data.get("seed", d.seed), 0, MAX_API_SEED),
        ncol=None if ncol is None else _int("ncol", ncol, 1, n),
        checkpoint=_checkpoint(data.get("checkpoint")),
        format=_format(data.get("format", d.format)),
    )


def interpolate_params(data: dict[str, Any], n_classes: int) -> InterpolateParams:
    """Check a ``/api/interpolate`` body against the bounds and a model of ``n_classes``."""
    _check_keys(data, tuple(InterpolateParams.__dataclass_fields__))
    d = InterpolateParams()
    seeds = data.get("seeds", list(d.seeds))
    if not isinstance(seeds, list) or len(seeds) != 2:
        raise RequestError("seeds", f"expected two seeds [a, b], got {show(seeds)}")
    seed_a, seed_b = (_int("seeds", s, 0, MAX_API_SEED) for s in seeds)
    class_a, class_b = _class_ids("classes", data.get("classes", list(d.classes)), n_classes, 2)
    return InterpolateParams(
        seeds=(seed_a, seed_b),
        classes=(class_a, class_b),
        steps=_int("steps", data.get("steps", d.steps), 2, MAX_STEPS),
        truncation=_truncation(data.get("truncation", d.truncation)),
        checkpoint=_checkpoint(data.get("checkpoint")),
        format=_format(data.get("format", d.format)),
    )
