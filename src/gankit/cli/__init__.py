"""``gankit`` command line: one module per command, each ``add_parser(sub)`` + ``run(args)``.

A command module parses its flags, calls the library (one workflow: a function, or a loader
and a writer) and prints the result; heavy
modules are imported inside ``run`` so that ``gankit --help`` stays fast. :func:`main` turns
library errors into one line on stderr and exit status 2:

- :class:`~gankit.errors.ParameterError` → ``gankit: error: --param-name: message`` (the
  parameter's underscores become dashes; a command module may map parameters to other flags in
  its ``FLAG_NAMES``);
- any other :class:`~gankit.errors.GankitError` → ``gankit: error: message``;
- an ``OSError`` (an output path that is a directory, a read-only folder, a missing parent
  that is a file, ...) → ``gankit: error: PATH: reason``.

Stop signals: :func:`main` handles SIGINT (Ctrl-C) and SIGTERM where they have their default
handlers (in the main thread). While it starts (loading the command modules, parsing, importing
torch) they are blocked, so no import is cut midway; one that came meanwhile is acted on right
after. While the command runs, either prints ``gankit: interrupted`` / ``gankit: terminated``
and exits with 130 / 143 (training instead stops at a step boundary by itself, see
:mod:`gankit.training.stop`); the atomic writers remove their temp files on the way out. Once
the command has returned or raised, its line and exit status stand: the ``gankit`` program
(``main()`` without ``argv``) ignores a first later stop signal while it exits (a second ends
it at once, until its last exit callback; past it, while Python tears its modules down, every
one is ignored), and ``main(argv)`` hands a late one to the caller's handler when it returns.
``import gankit.cli`` loads nothing heavy (the command modules load in :func:`main`): only a
signal in the first few tens of milliseconds of the process, before :func:`main` runs, keeps
Python's default effect.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import signal
import sys
import threading
from types import FrameType, ModuleType
from typing import Any

from gankit.errors import GankitError, ParameterError

__all__ = ["COMMANDS", "build_parser", "flag_name", "main"]

_COMMAND_NAMES = "info train resume sample eval measure data inspect analyze bench serve".split()
_DEFAULT_HANDLERS = {  # main handles a stop signal that has its default handler (module doc)
    signal.SIGINT: signal.default_int_handler,
    signal.SIGTERM: signal.SIG_DFL,
}


def _commands() -> list[ModuleType]:
    """The command modules, in ``gankit --help`` order (loaded here, not on import)."""
    return [importlib.import_module(f"gankit.cli.{name}") for name in _COMMAND_NAMES]


def __getattr__(name: str) -> Any:
    if name == "COMMANDS":
        return _commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gankit", description="Train, sample, evaluate and inspect class-conditional GANs."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _commands():
        command.add_parser(sub)
    return parser


def flag_name(param: str, command: ModuleType | None = None) -> str:
    """The flag that sets library parameter ``param``: ``command.FLAG_NAMES[param]`` if the
    command module declares one, else ``--`` + ``param`` with dashes for underscores."""
    overrides = getattr(command, "FLAG_NAMES", {})
    return overrides.get(param, "--" + param.replace("_", "-"))


class _Terminated(BaseException):
    """SIGTERM while a command runs (a BaseException: no ``except Exception`` swallows it)."""


class _CommandSignals:
    """SIGINT/SIGTERM in :func:`main` (module doc): blocked until :meth:`started`, raised while the
    command runs, recorded once it has finished. ``program``: main is the whole process."""

    def __init__(self, program: bool) -> None:
        self.program = program
        self.running = False
        self.pending = 0  # a signal not acted on yet
        self.late = 0  # a signal while the process exits
        self._previous: dict[int, Any] = {}
        self._mask: set[int] | None = None

    def __enter__(self) -> _CommandSignals:
        if threading.current_thread() is threading.main_thread():
            own = [s for s, default in _DEFAULT_HANDLERS.items() if signal.getsignal(s) is default]
            if hasattr(signal, "pthread_sigmask"):
                self._mask = signal.pthread_sigmask(signal.SIG_BLOCK, own)
            self._previous = {s: signal.signal(s, self._handle) for s in own}
            if self.program:  # registered first, so it runs after every later exit callback
                atexit.register(self._ignore_from_now_on)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.pending = self.pending or signum
        if self.running:
            self._act()

    def _act(self) -> None:
        signum, self.pending = self.pending, 0
        raise KeyboardInterrupt if signum == signal.SIGINT else _Terminated

    def started(self) -> None:
        """Start-up is over: a signal that came during it, or comes from now on, is raised."""
        self.running = True
        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)  # a blocked one comes in
        if self.pending:
            self._act()

    def finished(self) -> None:
        """The command has returned or raised: its result stands."""
        self.running = False

    def _exiting(self, signum: int, frame: FrameType | None) -> None:
        """A stop signal while the program exits: the first is ignored (the command's line and
        status stand); a second ends the process at once (an exit stuck, e.g. on a thread)."""
        if self.late:
            os._exit(128 + signum)
        self.late = signum

    def _ignore_from_now_on(self) -> None:
        """The last exit callback: from here Python tears its modules down, after putting a
        handled signal back to its default effect (death, for a process that took seconds to
        exit with torch loaded), so a stop signal is ignored, in every thread, instead."""
        for s in self._previous:
            signal.signal(s, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, self._exiting if self.program else handler)
        if self._mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)
        if self.pending and not self.program:
            signal.raise_signal(self.pending)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: this process's; then main is the ``gankit``
    program, see the module doc on stop signals) and return its exit status."""
    with _CommandSignals(program=argv is None) as signals:
        args = build_parser().parse_args(argv)
        import torch  # noqa: F401  (loaded while the stop signals are blocked)

        return _run(args, signals)


def _run(args: argparse.Namespace, signals: _CommandSignals) -> int:
    """``args.func(args)``, its errors and stop signals turned into one line and a status."""
    command = sys.modules[args.func.__module__]
    try:
        try:
            signals.started()
            return args.func(args)
        finally:
            signals.finished()
    except ParameterError as err:
        _error_line(f"gankit: error: {flag_name(err.param, command)}: {err.message}")
        return 2
    except GankitError as err:
        code = getattr(err, "exit_code", 2)  # e.g. a graceful stop on SIGTERM: 143
        _error_line(f"gankit: {'error: ' if code == 2 else ''}{err}")
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
        _error_line(f"gankit: error: {where}{reason}")
        return 2


_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines splits at


def _error_line(text: str) -> None:
    """``text`` on stderr as one line: a line break inside it (a path that holds one) is
    written as its escape (``\\n``, ``\\u2028``, ...)."""
    print("".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in text), file=sys.stderr)
