"""Helpers of the ``gankit serve`` tests: a tiny trained run and the server as a subprocess."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from training_fixtures import single_thread, tiny_cfg

import gankit
from gankit.evaluation import evaluate
from gankit.training import train

CLASS_NAMES = ["cat", "dog", "owl"]


def train_tiny_run(tmp: Path) -> Path:
    """4 G steps of the tiny SAGAN config on random 32×32 images of 3 named classes, then one
    ``gankit eval`` (swd) row: checkpoints step 2 and 4, a 4-point log, one eval point."""
    rng = np.random.default_rng(0)
    data = tmp / "named.npz"
    x = rng.integers(0, 256, size=(60, 32, 32), dtype=np.uint8)  # eval holds out 12 of them
    np.savez(data, x=x, y=np.arange(60) % 3, class_names=np.array(CLASS_NAMES))
    with single_thread(), mock.patch.dict(os.environ, {"GANKIT_CACHE": str(tmp / "cache")}):
        run = train(tiny_cfg(data), tmp / "run", quiet=True)
        evaluate(str(run), metrics=["swd"], n=48, device="cpu", quiet=True)
    return run


def start_server(
    run: Path, on_line: Callable[[str], Any] | None = None
) -> tuple[subprocess.Popen, str]:
    """``gankit serve RUN --port 0`` in a subprocess; returns it and the URL it printed, after
    calling ``on_line`` with each line printed before the URL.

    Single-threaded torch, like the tests (``one_thread``), so that images match bit for bit."""
    src = str(Path(gankit.__file__).resolve().parents[1])
    path = os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}  # as the tests' one_thread
    cmd = [sys.executable, "-m", "gankit.cli", "serve", str(run), "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=120)
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"gankit serve printed no URL: {''.join(seen)}") from None
        seen.append(line)
        if line.startswith("gankit serve: http://"):
            return proc, line.split()[2]
        if on_line is not None:
            on_line(line)
        if proc.poll() is not None:
            raise RuntimeError(f"gankit serve exited: {''.join(seen)}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request(
    url: str,
    body: bytes | dict[str, Any] | None = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of one HTTP request (dict bodies are sent as JSON) with
    ``Content-Type: application/json`` and ``headers`` (which may replace it, or set ``Host``)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, res.headers.get("Content-Type", ""), res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()
