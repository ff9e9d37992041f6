"""``gankit`` command line: one module per command, each ``add_parser(sub)`` + ``run(args)``.

A command module parses its flags, calls ONE library function and prints the result; heavy
modules are imported inside ``run`` so that ``gankit --help`` stays fast. :func:`main` turns
library errors into one line on stderr and exit status 2:

- :class:`~gankit.errors.ParameterError` → ``gankit: error: --param-name: message`` (the
  parameter's underscores become dashes; a command module may map parameters to other flags in
  its ``FLAG_NAMES``);
- any other :class:`~gankit.errors.GankitError` → ``gankit: error: message``;
- an ``OSError`` (an output path that is a directory, a read-only folder, a missing parent
  that is a file, ...) → ``gankit: error: PATH: reason``.

Ctrl-C (SIGINT) or SIGTERM outside training (which stops at a step boundary by itself, see
:mod:`gankit.training.stop`), e.g. during start-up, prints ``gankit: interrupted`` or
``gankit: terminated`` and exits with 130 / 143; the atomic writers remove their temp files on
the way out. Only ``argparse`` and the command modules load before the ``try``: torch is
imported inside it, so a signal during that import is handled the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import ModuleType

from gankit.cli import (
    analyze,
    bench,
    data,
    eval,
    info,
    inspect,
    measure,
    resume,
    sample,
    serve,
    train,
)
from gankit.errors import GankitError, ParameterError

__all__ = ["COMMANDS", "build_parser", "flag_name", "main"]

COMMANDS: list[ModuleType] = [
    info,
    train,
    resume,
    sample,
    eval,
    measure,
    data,
    inspect,
    analyze,
    bench,
    serve,
]
"""Command modules, in ``gankit --help`` order."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gankit", description="Train, sample, evaluate and inspect class-conditional GANs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def flag_name(param: str, command: ModuleType | None = None) -> str:
    """The flag that sets library parameter ``param``: ``command.FLAG_NAMES[param]`` if the
    command module declares one, else ``--`` + ``param`` with dashes for underscores."""
    overrides = getattr(command, "FLAG_NAMES", {})
    return overrides.get(param, "--" + param.replace("_", "-"))


class _Terminated(BaseException):
    """SIGTERM outside training (a BaseException: no ``except Exception`` swallows it)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` (where it would kill the process silently: the
    default handler, in the main thread); the previous handler comes back afterwards."""
    installed = False
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # ValueError: not the main thread
            signal.signal(signal.SIGTERM, _raise_terminated)
            installed = True
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = sys.modules[args.func.__module__]
    try:
        with _sigterm_raises():
            return args.func(args)
    except ParameterError as err:
        print(f"gankit: error: {flag_name(err.param, command)}: {err.message}", file=sys.stderr)
        return 2
    except GankitError as err:
        code = getattr(err, "exit_code", 2)  # e.g. a graceful stop on SIGTERM: 143
        print(f"gankit: {'error: ' if code == 2 else ''}{err}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("gankit: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("gankit: terminated", file=sys.stderr)
        return 143
    except OSError as err:  # a file or folder the command could not read or write
        path = err.filename2 or err.filename  # a rename's destination, not its temp source
        where = f"{path}: " if path else ""
        reason = err.strerror or str(err)
        if isinstance(err, FileExistsError) and path and not os.path.isdir(path):  # a file
            reason = "exists and is not a directory"
        print(f"gankit: error: {where}{reason}", file=sys.stderr)
        return 2
