"""argparse helpers shared by the command modules."""

from __future__ import annotations

import argparse
from pathlib import Path

from gankit.config import (
    DEFAULT_PRESET,
    DEVICES,
    MAX_TRUNCATION,
    MIN_TRUNCATION,
    list_presets,
    truncation_allowed,
)
from gankit.errors import ParameterError

__all__ = [
    "add_device",
    "add_preset",
    "add_set",
    "check_truncation_flag",
    "data_path",
    "int_list",
    "refuse_double_settings",
]


def add_set(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.batch_size=32 (repeatable)",
    )


def add_device(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--device", choices=list(DEVICES), default=default)


def add_preset(p: argparse.ArgumentParser, default: str | None) -> None:
    presets = ", ".join(list_presets())
    shown = "" if default else f" (default {DEFAULT_PRESET})"
    p.add_argument("--preset", default=default, help=f"one of: {presets}{shown}")


def int_list(text: str) -> list[int]:
    """argparse type: ``"3,7"`` → ``[3, 7]`` (at least one integer)."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    return values


def data_path(value: str) -> str:
    """``--data`` as an absolute path (``~`` expanded) so that resume/eval work from any cwd;
    ``""`` (embedded MNIST) stays empty."""
    return str(Path(value).expanduser().resolve()) if value else value


def check_truncation_flag(value: float) -> float:
    """``value`` if :func:`~gankit.config.truncation_allowed`, else a ParameterError: a
    ``--truncation`` flag follows the config key ``eval.truncation`` and ``gankit serve`` (the
    library takes any tau >= 0)."""
    if not truncation_allowed(value):
        bounds = f"[{MIN_TRUNCATION}, {MAX_TRUNCATION}]"
        raise ParameterError("truncation", f"expected 0 (off) or a number in {bounds}, got {value}")
    return value


def refuse_double_settings(overrides: list[str], flags: dict[str, tuple[str, bool]]) -> None:
    """ParameterError naming ``--set`` if an override sets a key that a shortcut flag given
    too also sets (``flags``: config key → (its flag, whether the flag was given)): which one
    should win is a guess."""
    given = {key: flag for key, (flag, on) in flags.items() if on}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in given:
            raise ParameterError(
                "set", f"{item!r} sets {key}, as {given[key]} does; give only one of them"
            )
