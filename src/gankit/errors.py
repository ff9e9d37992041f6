"""User-facing errors: the CLI prints their message as one line and exits with status 2."""


class GankitError(Exception):
    """Bad input (file, key, value) whose message names it and says what was expected."""
