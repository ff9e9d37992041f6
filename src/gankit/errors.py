"""User-facing errors: the CLI prints their message as one line and exits with status 2."""

from __future__ import annotations


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
