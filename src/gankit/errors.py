"""User-facing errors: the CLI prints their message as one line and exits with status 2."""

from __future__ import annotations

import numbers
import os
from pathlib import Path


class GankitError(Exception):
    """Bad input (file, key, value) whose message names it and says what was expected."""


class ParameterError(GankitError, ValueError):
    """A bad value of one parameter of a library function (``n``, ``batch_size``, ...).

    The message is worded in the function's terms; ``str(err)`` is ``"param: message"``. The
    CLI shows it under the matching flag (``--param``) instead.
    """

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param, self.message = param, message


def check_int(
    param: str,
    value: object,
    lo: int | None = None,
    hi: int | None = None,
    expected: str = "an integer",
) -> int:
    """``value`` as an ``int`` when it is an integer (a ``bool`` is not) within ``lo..hi``
    (``None``: unbounded); else a :class:`ParameterError` naming ``param``:
    ``"expected <expected>, got <value>"``."""
    whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not whole or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ParameterError(param, f"expected {expected}, got {value!r}")
    return int(value)


def check_bool(param: str, value: object) -> bool:
    """``value`` when it is a ``bool``, else a :class:`ParameterError` (a string such as
    ``"no"`` would otherwise count as true)."""
    if not isinstance(value, bool):
        raise ParameterError(param, f"expected True or False, got {value!r}")
    return value


def check_path(value: object, param: str, expected: str) -> Path:
    """``value`` (a non-empty ``str`` or ``os.PathLike``) as a Path; a :class:`ParameterError`
    naming ``param`` and saying ``expected`` for anything else (``""``, ``None``, a number, a
    loaded network)."""
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return Path(value)
    what = "an empty path" if isinstance(value, (str, os.PathLike)) else type(value).__name__
    raise ParameterError(param, f"expected {expected}, got {what}")


MAX_SEED = 2**63 - 1
"""Largest seed of a library call (``torch.Generator.manual_seed`` takes 64-bit integers)."""


def check_seed(value: object, param: str = "seed") -> int:
    """``value`` as an ``int`` seed in ``0..MAX_SEED``, else a :class:`ParameterError`."""
    return check_int(param, value, 0, MAX_SEED, f"an integer in 0..{MAX_SEED}")


def first_names(names: list[str], limit: int = 3) -> str:
    """The first ``limit`` of ``names``, comma-separated, then ``, ... (N in all)`` if there are
    more: a list that keeps a one-line error message short."""
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
