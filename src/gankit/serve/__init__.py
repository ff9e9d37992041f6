"""``gankit serve``: a local web explorer of a trained run (classes, truncation, interpolation,
training curves) — a Starlette JSON API plus one static page, no build step and no CDN."""

from gankit.serve.app import create_app, serve
from gankit.serve.explorer import RunExplorer

__all__ = ["RunExplorer", "create_app", "serve"]
