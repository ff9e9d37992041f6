"""``gankit serve`` JSON API against a live server: images equal ``gankit sample`` and the
interpolation formula, every bad-parameter class gives a one-line 4xx JSON error, 20 concurrent
requests give the sequential results, the curves/config/info routes, and the Host and
Content-Type checks."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import uvicorn
from PIL import Image
from safetensors.torch import save_file
from serve_fixtures import CLASS_NAMES, request, start_server, stop_server
from starlette.applications import Starlette

import gankit
from gankit.cli import main
from gankit.config import load_toml, save_toml, to_dict
from gankit.errors import GankitError
from gankit.generation import make_grid, write_samples
from gankit.models import build, sample_z
from gankit.run import RunDir, load_generator
from gankit.serve import app as app_module
from gankit.serve.curves import training_curves
from gankit.serve.explorer import RunExplorer, wait_for_first_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _post(url: str, body: dict) -> bytes:
    status, _, data = request(url, body)
    assert status == 200, data
    return data


def _npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as f:
        return {k: f[k] for k in f.files}


@contextlib.contextmanager
def _serving(app: Starlette) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free port of 127.0.0.1; yields its URL."""
    sock = app_module._bind("127.0.0.1", 0)
    sock.listen()  # as serve() does before it prints the URL
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_generate_equals_gankit_sample(serve_url, serve_run, tmp_path):
    body = {"n": 7, "classes": [2, 0], "seed": 5, "truncation": 0.7}
    got = _npz(_post(f"{serve_url}/api/generate", {**body, "format": "npz"}))
    G = load_generator(serve_run)
    ref = np.load(write_samples(G, tmp_path / "s.npz", **body))
    assert got["x"].dtype == np.uint8 and got["x"].shape == (7, 32, 32, 1)
    assert got["y"].dtype == np.int64 and got["y"].tolist() == [2, 0, 2, 0, 2, 0, 2]
    assert np.array_equal(got["x"], ref["x"]) and np.array_equal(got["y"], ref["y"])

    # PNG: the same samples tiled with 2 px padding, one column per class (2 columns, 4 rows).
    png_bytes = _post(f"{serve_url}/api/generate", {**body, "format": "png"})
    png = Image.open(io.BytesIO(png_bytes))
    assert png.size == (2 * 34 + 2, 4 * 34 + 2) and png.mode == "L"
    tiles = torch.from_numpy(got["x"]).permute(0, 3, 1, 2)
    assert np.array_equal(np.asarray(png), make_grid(tiles, 2)[..., 0])

    # JSON: the same PNG as a data URL, plus labels and the checkpoint.
    meta = json.loads(_post(f"{serve_url}/api/generate", body))
    assert base64.b64decode(meta["image"].split(",", 1)[1]) == png_bytes
    assert meta["labels"] == got["y"].tolist()
    assert (meta["checkpoint"], meta["step"], meta["ncol"]) == ("step_00000004", 4, 2)


def test_single_class_grid_is_square(serve_url):
    meta = json.loads(_post(f"{serve_url}/api/generate", {"n": 9, "classes": [1]}))
    assert meta["ncol"] == 3 and (meta["width"], meta["height"]) == (3 * 34 + 2, 3 * 34 + 2)


def test_interpolation_follows_the_formula(serve_url, serve_run):
    """Frame i = G(lerp(z_a, z_b, t_i), y), t_i = i/(steps-1), z_s = sample_z(1) from seed s;
    a class strip starts at class a and ends at class b."""
    G = gankit.load(serve_run / "checkpoints" / "step_00000002", device="cpu")

    def z_of(seed: int) -> torch.Tensor:
        return sample_z(1, G.dim_z, 0.5, generator=torch.Generator().manual_seed(seed))[0]

    def render(z: torch.Tensor, y: int) -> np.ndarray:
        with torch.no_grad():
            x = G(z[None], torch.tensor([y]))
        return ((x[0, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()

    body = {"seeds": [3, 4], "classes": [1, 1], "steps": 5, "truncation": 0.5}
    body["checkpoint"] = "step_00000002"
    got = _npz(_post(f"{serve_url}/api/interpolate", {**body, "format": "npz"}))
    assert got["x"].shape == (5, 32, 32, 1) and got["t"].tolist() == [0, 0.25, 0.5, 0.75, 1]
    za, zb = z_of(3), z_of(4)
    for i, t in enumerate(got["t"]):
        want = render(za + float(t) * (zb - za), 1)
        assert np.abs(got["x"][i, ..., 0].astype(int) - want).max() <= 1

    mixed = _npz(
        _post(f"{serve_url}/api/interpolate", {**body, "classes": [0, 2], "format": "npz"})
    )
    assert mixed["y"].tolist() == [0, 0, 2, 2, 2]  # the nearer end class
    assert np.abs(mixed["x"][0, ..., 0].astype(int) - render(za, 0)).max() <= 1
    assert np.abs(mixed["x"][-1, ..., 0].astype(int) - render(zb, 2)).max() <= 1
    assert not np.array_equal(mixed["x"][2], got["x"][2])  # the class mix changes the middle


def test_info_config_and_curves(serve_url, serve_run):
    deadline = time.monotonic() + 60
    while True:  # class names load in a background thread
        info = json.loads(request(f"{serve_url}/api/info")[2])
        if not info["class_names_pending"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert info["class_names"] == CLASS_NAMES
    assert [c["name"] for c in info["checkpoints"]] == ["step_00000002", "step_00000004"]
    assert (info["latest"], info["n_classes"], info["resolution"]) == ("step_00000004", 3, 32)
    # the bounds the requests are checked against, which the page reads
    assert info["limits"] == {"n": 256, "steps": 64, "seed": 2**53 - 1}

    config = json.loads(request(f"{serve_url}/api/config")[2])
    assert config == json.loads(json.dumps(to_dict(load_toml(serve_run / "config.toml"))))

    curves = json.loads(request(f"{serve_url}/api/metrics")[2])
    logs = [r for r in RunDir(serve_run).read_metrics() if "loss_D" in r]
    assert curves["losses"]["loss_D"] == [[r["step"], r["loss_D"]] for r in logs]
    assert set(curves["sigma0"]["G"]) and set(curves["sigma0"]["D"])
    assert [p[0] for p in curves["eval"]["swd"]] == [4] and curves["last_step"] == 4


def test_training_curves_keep_the_last_value_per_step_and_drop_nan():
    records = [
        {"step": 1, "loss_D": 2.0, "sigma0/G/a.weight": 1.5, "sigma1/G/a.weight": 0.3},
        {"step": 2, "loss_D": float("nan"), "loss_G": 1.0},
        {"step": 2, "loss_D": 3.0},  # rolled back and trained again
        {"step": 2, "warning": "D collapse"},
        {"step": 2, "eval": {"fid": 12.5, "note": "text"}},
        {"step": None, "eval": {"fid": 9.0}},  # eval of a checkpoint without a step
        {"step": 1, "eval": {"fid": 20.0}},
        [3, 4],  # not a record
    ]
    c = training_curves(records)
    assert c["losses"] == {"loss_D": [[1, 2.0], [2, 3.0]], "loss_G": [[2, 1.0]]}
    assert c["sigma0"] == {"G": {"a.weight": [[1, 1.5]]}, "D": {}}
    assert c["eval"] == {"fid": [[1, 20.0], [2, 12.5]]}
    assert c["warnings"] == [{"step": 2, "warning": "D collapse"}] and c["last_step"] == 2


def test_curves_skip_unusable_metrics_lines(serve_run, tmp_path):
    """Lines nested too deeply for the JSON parser or holding numbers too large for a float
    are skipped like truncated ones (``/api/metrics``)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(serve_run / "checkpoints")
    deep = "[" * 100000 + "]" * 100000
    huge = "1" + "0" * 400
    lines = [deep, f'{{"step": {huge}, "loss_D": 1.0}}', f'{{"step": 2, "loss_G": {huge}}}']
    (run / "metrics.jsonl").write_text("\n".join([*lines, '{"step": 1, "loss_D": 0.5}']) + "\n")
    curves = RunExplorer(run, device="cpu").curves()
    assert curves["losses"] == {"loss_D": [[1, 0.5]]} and curves["last_step"] == 1


BAD = [
    ("generate", {"n": 0}, 400, "n: expected an integer in 1..256"),
    ("generate", {"n": 257}, 400, "n: expected an integer in 1..256"),
    ("generate", {"n": "4"}, 400, "n: expected an integer"),
    ("generate", {"n": True}, 400, "n: expected an integer"),
    ("generate", {"classes": [3]}, 400, "classes: unknown class 3; the model has classes 0..2"),
    ("generate", {"classes": ["cat"]}, 400, "classes: unknown class 'cat'"),
    ("generate", {"classes": []}, 400, "classes: expected a list of 1..256 class indices"),
    ("generate", {"truncation": -1}, 400, "truncation: expected 0 (off) or a number in [0.1, 4.0]"),
    ("generate", {"truncation": 4.5}, 400, "truncation: expected 0 (off)"),
    ("generate", {"truncation": 0.05}, 400, "truncation: expected 0 (off)"),
    ("generate", b'{"truncation": NaN}', 400, "truncation: expected 0 (off)"),
    ("generate", {"seed": -1}, 400, "seed: expected an integer in 0..9007199254740991"),
    ("generate", {"seed": 1.5}, 400, "seed: expected an integer"),
    ("generate", {"ncol": 9, "n": 4}, 400, "ncol: expected an integer in 1..4"),
    ("generate", {"format": "gif"}, 400, "format: expected one of json, png, npz"),
    ("generate", {"size": 4}, 400, "'size': unknown parameter"),
    ("generate", {"a" * 10000: 4}, 400, "aaa...: unknown parameter"),  # cut
    ("generate", b'{"n": 1, "\\ud800x": 2}', 400, "'\\ud800x': unknown parameter"),
    ("generate", b"{bad", 400, "request body: not valid JSON"),
    ("generate", b"[1, 2]", 400, "request body: expected a JSON object, got list"),
    ("generate", b"\xff\xfe", 400, "request body: not valid JSON"),
    ("generate", b"null", 400, "request body: expected a JSON object, got null"),
    ("generate", b"[" * 30000 + b"]" * 30000, 400, "request body: not valid JSON"),  # depth
    ("generate", b'{"seed": ' + b"9" * 5000 + b"}", 400, "request body: not valid JSON"),
    ("generate", b" " * 70000, 413, "request body: larger than 65536 bytes"),
    ("generate", {"checkpoint": "../config.toml"}, 404, "checkpoint: unknown checkpoint"),
    ("generate", {"checkpoint": "step_00000003"}, 404, "checkpoint: unknown checkpoint"),
    ("generate", {"checkpoint": "best"}, 404, "this run has step_00000002, step_00000004"),
    ("generate", {"checkpoint": 2}, 400, "checkpoint: expected a checkpoint name string"),
    ("interpolate", {"steps": 1}, 400, "steps: expected an integer in 2..64"),
    ("interpolate", {"steps": 65}, 400, "steps: expected an integer in 2..64"),
    ("interpolate", {"seeds": [1]}, 400, "seeds: expected two seeds [a, b]"),
    ("interpolate", {"classes": [0, 1, 2]}, 400, "classes: expected 2 class indices"),
    ("interpolate", {"classes": [0, 7]}, 400, "classes: unknown class 7"),
]


@pytest.mark.parametrize("route, body, status, message", BAD)
def test_bad_parameters_give_one_line_json_errors(serve_url, route, body, status, message):
    got, kind, data = request(f"{serve_url}/api/{route}", body, method="POST")
    error = json.loads(data)["error"]
    assert (got, kind) == (status, "application/json") and message in error
    assert "\n" not in error and len(error) < 200


@pytest.mark.parametrize(
    "path, method, status, message",
    [
        ("/api/generate", "GET", 405, "'/api/generate': Method Not Allowed"),
        ("/api/nothing", "GET", 404, "'/api/nothing': Not Found"),
        ("/" + "a" * 10000, "GET", 404, "aaa...: Not Found"),  # cut
        ("/static/../app.py", "GET", 404, "Not Found"),  # a real file one folder up
        ("/static/%2e%2e/app.py", "GET", 404, "Not Found"),
    ],
)
def test_bad_routes_give_json_errors(serve_url, path, method, status, message):
    got, kind, data = request(serve_url + path, method=method)
    error = json.loads(data)["error"]
    assert (got, kind) == (status, "application/json") and message in error and len(error) < 100


@pytest.mark.parametrize(
    "host, status",
    [
        ("localhost", 200),
        ("LOCALHOST:{port}", 200),
        ("127.0.0.1:{port}", 200),
        ("[::1]:{port}", 200),
        ("evil.example", 403),
        ("evil.example:{port}", 403),
        ("localhost.evil.example", 403),
        ("127.0.0.1.evil.example:{port}", 403),
    ],
)
def test_a_loopback_server_answers_only_loopback_host_names(serve_url, host, status):
    """DNS rebinding: a page of another site reaching 127.0.0.1 sends its own name as Host."""
    host = host.format(port=serve_url.rsplit(":", 1)[1])
    got, kind, data = request(f"{serve_url}/api/info", headers={"Host": host})
    assert (got, kind) == (status, "application/json")
    if status == 403:
        assert json.loads(data)["error"] == (
            f"Host {host!r}: this server answers localhost, 127.0.0.1 or [::1]"
        )


@pytest.mark.parametrize(
    "content_type, status",
    [
        ("text/plain", 415),  # what another site may send without a CORS preflight
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
    ],
)
def test_post_routes_take_json_only(serve_url, content_type, status):
    for route, body in [("generate", {"n": 1}), ("interpolate", {"steps": 2})]:
        got, kind, data = request(
            f"{serve_url}/api/{route}", body, headers={"Content-Type": content_type}
        )
        assert (got, kind) == (status, "application/json")
        if status == 415:
            assert json.loads(data)["error"] == (
                f"Content-Type: expected application/json, got {content_type!r}"
            )


def test_server_survives_bad_requests_and_serves_static_files(serve_url):
    for route, body, _, _ in BAD[:5]:
        request(f"{serve_url}/api/{route}", body, method="POST")
    status, kind, page = request(serve_url + "/")
    assert status == 200 and kind.startswith("text/html") and b"/static/app.js" in page
    for name, kind_prefix in [("app.js", "text/javascript"), ("style.css", "text/css")]:
        status, kind, _ = request(f"{serve_url}/static/{name}")
        assert status == 200 and kind.startswith(kind_prefix)
    links = re.findall(rb'(?:src|href)="([^"]*)"', page)  # no CDN: every asset is local
    assert links and all(link.startswith(b"/static/") for link in links)


def test_declared_oversized_body_is_refused_before_it_arrives(serve_url):
    """A request announcing 100 MB and sending 2 bytes gets its 413 at once (the server does
    not wait for a body that never comes)."""
    host, port = serve_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            b"POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n{}"
        )
        answer = http.client.HTTPResponse(conn)
        answer.begin()
        assert answer.status == 413
        assert json.loads(answer.read()) == {"error": "request body: larger than 65536 bytes"}


def test_20_concurrent_requests_equal_sequential(serve_url):
    """Plain grids and class interpolations (which patch G while they run) interleaved."""
    bodies = []
    for i in range(20):
        if i % 4 == 3:
            body = {"seeds": [i, i + 1], "classes": [i % 3, (i + 1) % 3], "steps": 4}
            bodies.append(("interpolate", {**body, "format": "png"}))
        else:
            body = {"n": 4 + i % 5, "classes": [i % 3], "seed": i, "truncation": (i % 3) * 0.5}
            ckpt = "step_00000002" if i % 2 else "step_00000004"
            bodies.append(("generate", {**body, "checkpoint": ckpt, "format": "png"}))

    def call(item: tuple[str, dict]) -> bytes:
        return _post(f"{serve_url}/api/{item[0]}", item[1])

    sequential = [call(item) for item in bodies]
    with ThreadPoolExecutor(max_workers=20) as pool:
        concurrent = list(pool.map(call, bodies))
    assert concurrent == sequential
    assert len(set(sequential)) == 20


def test_explorer_rejects_a_directory_without_checkpoints(serve_run, tmp_path):
    with pytest.raises(GankitError, match="found none$"):
        RunExplorer(tmp_path)
    with pytest.raises(GankitError, match="found none; this is a checkpoint folder: pass its run"):
        RunExplorer(serve_run / "checkpoints" / "step_00000004")


def _run_without_checkpoints(serve_run, path):
    """A run directory as ``gankit train`` leaves it before its first checkpoint."""
    (path / "checkpoints").mkdir(parents=True)
    shutil.copy(serve_run / "config.toml", path)
    return path


def _add_checkpoint(serve_run, run, name="step_00000004"):
    """Copy a checkpoint of ``serve_run`` into ``run`` as a trainer writes one: whole, by rename."""
    shutil.copytree(serve_run / "checkpoints" / name, run / "checkpoints" / f".tmp-{name}")
    os.rename(run / "checkpoints" / f".tmp-{name}", run / "checkpoints" / name)


def test_serve_waits_while_training_has_not_written_the_first_checkpoint(serve_run, tmp_path):
    """Started beside ``gankit train`` (the run's writer lock held, no checkpoint yet), the
    server says so once and starts when the checkpoint lands; with nobody writing the run it
    does not wait, and a writer gone without a checkpoint ends the wait with one line."""
    run = _run_without_checkpoints(serve_run, tmp_path / "run")
    said: list[str] = []
    wait_for_first_checkpoint(run, say=said.append)  # nobody writes it: no wait
    assert said == []
    ended: list[BaseException] = []

    def wait() -> None:
        try:
            wait_for_first_checkpoint(run, 0.02, said.append)
        except GankitError as err:
            ended.append(err)

    with RunDir(run).writer():
        waiting = threading.Thread(target=wait)
        waiting.start()
        deadline = time.monotonic() + 30
        while not said and time.monotonic() < deadline:
            time.sleep(0.01)
        assert said == [
            f"gankit serve: {run} has no checkpoint yet; waiting for the training process "
            f"(pid {os.getpid()}) to write one; Ctrl+C stops"
        ]
        assert waiting.is_alive()
    waiting.join(30)  # the writer went away without a checkpoint
    assert not waiting.is_alive() and len(said) == 1
    assert [str(e) for e in ended] == [
        f"{run}: the training process (pid {os.getpid()}) ended without writing a checkpoint; "
        "nothing to serve"
    ]


def test_gankit_serve_starts_once_training_writes_its_first_checkpoint(serve_run, tmp_path):
    run = _run_without_checkpoints(serve_run, tmp_path / "run")
    before_url: list[str] = []

    def checkpoint_lands(line: str) -> None:
        before_url.append(line)
        _add_checkpoint(serve_run, run)

    with RunDir(run).writer():
        proc, url = start_server(run, on_line=checkpoint_lands)
    try:
        assert len(before_url) == 1 and "has no checkpoint yet; waiting for" in before_url[0]
        status, _, data = request(f"{url}api/info")
        assert status == 200 and json.loads(data)["latest"] == "step_00000004"
    finally:
        stop_server(proc)


def test_explorer_answers_503_while_the_run_has_no_checkpoint(serve_run, tmp_path):
    """A run whose checkpoints went away after start-up (e.g. a new run started in the same
    directory) gets a 503 naming the run, not an internal error."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(serve_run / "checkpoints")
    explorer = RunExplorer(run, device="cpu")
    (run / "checkpoints").unlink()
    (run / "checkpoints").mkdir()
    calls = (explorer.info, lambda: explorer.generator(None), lambda: explorer.generator("best"))
    for call in calls:
        with pytest.raises(GankitError, match="has no complete checkpoint at the moment") as err:
            call()
        assert err.value.status == 503


def test_broken_run_file_gives_500_and_unchecked_hosts_are_served(serve_run, tmp_path):
    """A run's config.toml that does not load gets a 500 with its message (the request is fine);
    without the Host check (a server bound to 0.0.0.0) any Host is answered."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(serve_run / "checkpoints")
    (run / "config.toml").write_text("[model\n")
    with _serving(app_module.create_app(RunExplorer(run, "cpu"), check_host=False)) as url:
        status, kind, data = request(f"{url}/api/config", headers={"Host": "gan.example"})
        assert (status, kind) == (500, "application/json")
        assert "config.toml: not valid TOML" in json.loads(data)["error"]
        assert request(f"{url}/api/info", headers={"Host": "gan.example"})[0] == 200
        (run / "metrics.jsonl").mkdir()  # not a log that is absent: one that does not load
        status, _, data = request(f"{url}/api/metrics", headers={"Host": "gan.example"})
        assert status == 500 and "metrics.jsonl: not a regular file" in json.loads(data)["error"]
        (run / "config.toml").unlink()
        (run / "config.toml").mkdir()
        status, _, data = request(f"{url}/api/config", headers={"Host": "gan.example"})
        assert status == 500 and "config.toml" in json.loads(data)["error"]


def test_cli_errors_are_one_line(serve_run, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gankit: error: {tmp_path / 'missing'}: no such run directory (expected a run "
        "directory; a `gankit train` just started creates it within seconds)"
    )
    assert main(["serve", str(serve_run / "config.toml")]) == 2
    assert "config.toml: not a directory (expected a run directory)" in capsys.readouterr().err
    assert main(["serve", str(serve_run), "--port", "70000"]) == 2
    assert "--port: expected 0..65535, got 70000" in capsys.readouterr().err
    assert main(["serve", ""]) == 2
    assert "error: RUN_DIR: expected a run or checkpoint directory path, got an empty path" in (
        capsys.readouterr().err
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(serve_run), "--port", str(port), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and err.count("\n") == 1


def test_explorer_caches_generators_and_reports_a_vanished_checkpoint(serve_run, monkeypatch):
    explorer = RunExplorer(serve_run, device="cpu", keep=1)
    name, G = explorer.generator("step_00000002")
    assert name == "step_00000002" and not G.training
    assert explorer.generator("step_00000002")[1] is G  # cached
    assert explorer.generator(None)[0] == "step_00000004"
    assert [key[0] for key in explorer._generators] == ["step_00000004"]  # keep=1 evicted step 2
    with pytest.raises(GankitError, match="^keep: expected a positive number of generators"):
        RunExplorer(serve_run, device="cpu", keep=0)  # would evict the generator in use

    def vanished(path, device):
        raise FileNotFoundError(f"{path}/G_ema.safetensors")

    monkeypatch.setattr("gankit.serve.explorer.load_generator", vanished)
    with pytest.raises(GankitError, match="checkpoint: step_00000002 is gone") as err:
        explorer.generator("step_00000002")
    assert err.value.status == 404


def test_explorer_refuses_a_checkpoint_of_another_model(serve_run, tmp_path):
    """A checkpoint copied in from another run appears while the server runs: asking for it is
    one error naming the keys (its images would not be this run's), never an internal error."""
    run = tmp_path / "run"
    shutil.copytree(serve_run, run)
    explorer = RunExplorer(run, device="cpu")
    foreign = run / "checkpoints" / "step_00000006"
    shutil.copytree(run / "checkpoints" / "step_00000004", foreign)
    cfg = load_toml(foreign / "config.toml")
    cfg.model.dim_z += 1
    save_toml(cfg, foreign / "config.toml")
    G = build(cfg.model)[0]
    save_file(G.state_dict(), str(foreign / "G_ema.safetensors"))
    with pytest.raises(GankitError, match=r"its model differs from the run's .*\(model\.dim_z\)"):
        explorer.generator("step_00000006")


def test_light_routes_answer_while_generation_requests_queue(serve_run, monkeypatch):
    """50 grid requests wait for a blocked generator (more than Starlette's 40 worker threads);
    /api/info still answers: generation queues on a thread of its own."""
    explorer = RunExplorer(serve_run, device="cpu")
    release, arrived = threading.Event(), []
    real_generate, real_params = explorer.generate, app_module.generate_params
    monkeypatch.setattr(explorer, "generate", lambda p: release.wait(60) and real_generate(p))
    monkeypatch.setattr(
        app_module, "generate_params", lambda *a: arrived.append(1) or real_params(*a)
    )
    with _serving(app_module.create_app(explorer)) as url, ThreadPoolExecutor(50) as pool:
        grids = [pool.submit(request, f"{url}/api/generate", {"n": 1}) for _ in range(50)]
        deadline = time.monotonic() + 60
        while len(arrived) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            status, _, body = request(f"{url}/api/info")  # while all 50 wait
            assert status == 200 and json.loads(body)["latest"] == "step_00000004"
        finally:
            release.set()
        assert [f.result()[0] for f in grids] == [200] * 50
