"""``gankit serve RUN``: a local web explorer of a trained run — a JSON API and one static page.

Routes (the page in ``static/`` uses only the API; scripts can call it too):

- ``GET /`` the page; ``GET /static/...`` its script and style sheet;
- ``GET /api/info``: run name, checkpoints, model shape, class names;
- ``GET /api/config``: the run's ``config.toml`` as JSON;
- ``GET /api/metrics``: training curves (:func:`gankit.serve.curves.training_curves`);
- ``POST /api/generate``: a grid (:class:`~gankit.serve.params.GenerateParams`);
- ``POST /api/interpolate``: a strip (:class:`~gankit.serve.params.InterpolateParams`).

``format`` picks the answer of the two POST routes: ``json`` (the PNG grid as a ``data:`` URL
plus labels), ``png`` (the grid) or ``npz`` (``x`` uint8 ``(N, H, W, C)``, ``y`` int64, as
``gankit sample``); their body must be sent as ``Content-Type: application/json`` (else 415).
Every error is ``{"error": "<one line>"}`` with a 4xx status for a bad request, 5xx when the run
on disk cannot answer (503 while it has no checkpoint, 500 for a broken file such as its
``config.toml``) or for a bug; the server keeps running. A server bound to a loopback address
answers only requests addressed to ``localhost``, ``127.0.0.1`` or ``[::1]`` (any port; else
403), so that a page of another site cannot read it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import ipaddress
import json
import math
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gankit.checkpoint import checkpoint_step
from gankit.errors import GankitError
from gankit.generation import grid_image, save_npz
from gankit.serve.explorer import RunExplorer, wait_for_first_checkpoint
from gankit.serve.params import (
    MAX_BODY_BYTES,
    check_body_size,
    check_content_type,
    generate_params,
    interpolate_params,
    parse_body,
    show,
)

STATIC = Path(__file__).parent / "static"
SHUTDOWN_S = 5
"""Seconds that requests still running get to finish after Ctrl+C / SIGTERM."""

__all__ = ["create_app", "serve"]


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """``{"error": <message's first line>}`` as ASCII JSON (so that any text encodes, even a
    lone surrogate)."""
    line = message.splitlines()[0] if message else "error"
    return Response(json.dumps({"error": line}), status, headers, "application/json")


def _host_name(header: str) -> str:
    """The host of a ``Host`` header in lower case, without its port or IPv6 brackets."""
    m = re.fullmatch(r"\[([^\]]*)\](?::\d*)?|([^:\[\]]*)(?::\d*)?", header)
    return (m.group(1) or m.group(2) or "").lower() if m else ""


class _LoopbackHostOnly:
    """ASGI middleware answering 403 to an HTTP request whose ``Host`` is not ``localhost`` or a
    loopback address: a page of another site whose name was re-pointed at 127.0.0.1 (DNS
    rebinding) sends its own name, so it cannot read a server bound to a loopback address."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            if not _is_loopback(_host_name(host)):
                message = f"Host {show(host)}: this server answers localhost, 127.0.0.1 or [::1]"
                await _error(message, 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object (``Content-Type: application/json`` only), reading at most
    ``MAX_BODY_BYTES + 1`` bytes (a declared ``Content-Length`` over the limit is refused before
    anything is read)."""
    check_content_type(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_body_size(int(declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            break
    return parse_body(bytes(body))


def _default_ncol(n: int, n_cycled: int) -> int:
    """One column per class like ``gankit sample``; a square grid for a single class."""
    return min(n_cycled, n) if n_cycled > 1 else math.ceil(math.sqrt(n))


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _images_response(
    images: torch.Tensor,
    labels: torch.Tensor,
    ncol: int,
    fmt: str,
    meta: dict[str, Any],
    stem: str,
    **extra: Any,
) -> Response:
    """Encode uint8 ``images (N, C, H, W)`` as the ``fmt`` answer (``json``, ``png``, ``npz``)."""
    if fmt == "npz":
        buf = io.BytesIO()
        save_npz(buf, images, labels, **{k: v.numpy() for k, v in extra.items()})
        headers = {"Content-Disposition": f'attachment; filename="{stem}.npz"'}
        return Response(buf.getvalue(), media_type="application/octet-stream", headers=headers)
    grid = grid_image(images, ncol)
    buf = io.BytesIO()
    grid.save(buf, format="PNG")
    png = buf.getvalue()
    if fmt == "png":
        headers = {"Content-Disposition": f'attachment; filename="{stem}.png"'}
        return Response(png, media_type="image/png", headers=headers)
    return JSONResponse(
        {
            "image": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            "width": grid.width,
            "height": grid.height,
            "ncol": ncol,
            "labels": labels.tolist(),
            **{k: v.tolist() for k, v in extra.items()},
            **meta,
        }
    )


def create_app(explorer: RunExplorer, check_host: bool = True) -> Starlette:
    """The Starlette app serving ``explorer``'s run (class names load in a background thread
    started with the app). ``check_host``: answer only requests addressed to a loopback name
    (for a server bound to a loopback address)."""
    run = _safe_name(explorer.run_dir.resolve().name)
    # G runs one request at a time (the explorer's lock); its requests queue on one thread of
    # their own, so that they never take all of Starlette's threads from the light routes
    forward = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generator")

    async def on_generator(work: Callable[[], Response]) -> Response:
        return await asyncio.get_running_loop().run_in_executor(forward, work)

    def checkpoint_meta(name: str) -> dict[str, Any]:
        step = checkpoint_step(Path(name))  # parses the name only; never a file path
        return {"checkpoint": name, "step": step if step >= 0 else None}

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(explorer.info))

    async def config(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(explorer.config))

    async def metrics(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(explorer.curves))

    async def generate(request: Request) -> Response:
        p = generate_params(await _read_json(request), explorer.n_classes)

        def work() -> Response:
            images, labels, name = explorer.generate(p)
            n_cycled = len(p.classes) if p.classes else explorer.n_classes
            meta = {**checkpoint_meta(name), "n": p.n, "seed": p.seed, "truncation": p.truncation}
            stem = f"{run}-{name}-seed{p.seed}"
            ncol = p.ncol or _default_ncol(p.n, n_cycled)
            return _images_response(images, labels, ncol, p.format, meta, stem)

        return await on_generator(work)

    async def interpolate(request: Request) -> Response:
        p = interpolate_params(await _read_json(request), explorer.n_classes)

        def work() -> Response:
            frames, t, name = explorer.interpolate(p)
            labels = torch.where(t < 0.5, p.classes[0], p.classes[1])  # the nearer end class
            meta = {**checkpoint_meta(name), "steps": p.steps, "truncation": p.truncation}
            (sa, sb), (ca, cb) = p.seeds, p.classes
            stem = f"{run}-{name}-seeds{sa}-{sb}-classes{ca}-{cb}"
            return _images_response(frames, labels, p.steps, p.format, meta, stem, t=t)

        return await on_generator(work)

    async def gankit_error(request: Request, err: Exception) -> Response:
        # a RequestError has its status; any other GankitError is about the run's own files
        return _error(str(err), getattr(err, "status", 500))

    async def http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        return _error(f"{show(request.url.path)}: {err.detail}", err.status_code, err.headers)

    async def server_error(request: Request, err: Exception) -> Response:
        return _error(f"internal error: {type(err).__name__}: {err}", 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        threading.Thread(target=explorer.load_class_names, name="class-names", daemon=True).start()
        try:
            yield
        finally:
            forward.shutdown(wait=False, cancel_futures=True)

    handlers: dict[Any, Callable] = {
        GankitError: gankit_error,
        HTTPException: http_error,
        Exception: server_error,
    }
    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/config", config),
        Route("/api/metrics", metrics),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/interpolate", interpolate, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(_LoopbackHostOnly)] if check_host else []
    return Starlette(
        routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan
    )


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), not listening yet: a busy port
    fails here, while nothing connects before the server can answer."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise GankitError(f"--host/--port: cannot listen on {host}:{port} ({err})") from None
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, device: str = "auto"
) -> None:
    """Serve the explorer of ``run_dir`` on ``http://host:port/`` until interrupted.

    Prints one line with the URL (the actual port when ``port`` is 0) once the socket is bound
    and the run has a checkpoint: a run whose training has not written its first one yet is
    waited for (:func:`~gankit.serve.explorer.wait_for_first_checkpoint`).

    Raises:
        GankitError: ``port`` outside 0..65535, the address cannot be bound, ``run_dir`` is
            not a run with checkpoints, or the training waited for ended without one.
    """
    if not 0 <= port <= 65535:
        raise GankitError(f"--port: expected 0..65535, got {port}")
    sock = _bind(host, port)  # first: a busy port fails before the wait and the generator
    try:
        wait_for_first_checkpoint(run_dir, say=lambda line: print(line, flush=True))
        explorer = RunExplorer(run_dir, device)
    except BaseException:
        sock.close()
        raise
    app = create_app(explorer, check_host=_is_loopback(host))
    sock.listen(128)  # connections queue from now on, so the URL can be printed before the loop
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/"
    print(
        f"gankit serve: {url} (run {explorer.run_dir}, checkpoint {explorer.checkpoint}, "
        f"device {explorer.device_name}); Ctrl+C stops",
        flush=True,
    )
    if not _is_loopback(host):
        print(f"gankit serve: warning: {host} is reachable from other machines", flush=True)
    # a client that never sends its body cannot hold the shutdown for longer than this
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_S)
    uvicorn.Server(config).run(sockets=[sock])
