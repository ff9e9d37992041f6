"""atomic_write: the one temp-file + fsync + rename helper of the caches."""

from __future__ import annotations

import importlib
import os
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from gankit import io_utils
from gankit.io_utils import atomic_write
from gankit.metrics import stats_cache


def test_atomic_write_replaces_or_keeps_old(tmp_path):
    path = tmp_path / "f.bin"
    assert atomic_write(path, lambda f: f.write(b"one")) == path
    assert path.read_bytes() == b"one"

    def fail(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, fail)
    assert path.read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    """Not mkstemp's 0600: a run's files are for other users and servers to read too."""
    umask = os.umask(0o027)
    try:
        path = tmp_path / "f.txt"
        with open(tmp_path / "plain.txt", "w"):
            pass
        importlib.reload(io_utils).atomic_write(path, lambda f: f.write(b"x"))
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o640
    finally:
        os.umask(umask)
        importlib.reload(io_utils)


def test_umask_without_proc(monkeypatch):
    """Where /proc is missing (not Linux) the umask is read by setting it and putting it back."""

    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    umask = os.umask(0o027)
    try:
        monkeypatch.setattr("builtins.open", no_proc)
        assert io_utils._umask() == 0o027
        monkeypatch.undo()
        assert io_utils._umask() == 0o027  # from /proc; and the umask was put back
    finally:
        os.umask(umask)


def test_a_folder_it_cannot_write_names_the_target(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise PermissionError(1, "Operation not permitted", str(tmp_path / ".f.bin.x.tmp"))

    monkeypatch.setattr("gankit.io_utils.tempfile.mkstemp", refuse)
    with pytest.raises(PermissionError) as err:
        atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    assert err.value.filename == str(tmp_path / "f.bin") and err.value.errno == 1


_FULL_DISK = """
import resource, sys
from gankit.io_utils import atomic_write
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 12, 1 << 12))  # a real EFBIG from write()
try:
    atomic_write(sys.argv[1], lambda f: f.write(bytes(1 << 16)))
except OSError as err:
    print(err.errno, err.filename)
"""


def test_a_write_the_os_refuses_names_the_target(tmp_path):
    """ENOSPC/EFBIG from ``write`` carries no file name; the error names the target, and no
    temp file is left."""
    target = tmp_path / "s.npz"
    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(target)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["27", str(target)], out.stderr[-2000:]  # EFBIG
    assert list(tmp_path.iterdir()) == []


def test_save_reference_roundtrip_without_temp_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path))
    path = stats_cache.save_reference("k", {"a": np.arange(3)})
    assert path.name == "k.npz" and [p.name for p in path.parent.iterdir()] == ["k.npz"]
    assert stats_cache.load_reference("k")["a"].tolist() == [0, 1, 2]


def test_classifier_save_roundtrip(tmp_path):
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from gankit.metrics.classifier import SmallClassifier, _save

    model = SmallClassifier(1, 3)
    path = tmp_path / "clf" / "m.safetensors"
    _save(model, path, {"heldout_acc": 0.5})
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["info"]) == {"heldout_acc": 0.5}
    loaded = load_file(str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v)
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]


def test_temp_file_names_the_writer(tmp_path):
    seen = []
    atomic_write(tmp_path / "f.bin", lambda f: seen.extend(os.listdir(tmp_path)))
    assert len(seen) == 1 and seen[0].startswith(f".f.bin.{os.getpid()}.")
    assert seen[0].endswith(".tmp")


def test_temp_files_of_killed_writers_are_removed(tmp_path):
    """The next write of a target removes its temp files whose writer (the pid in the name) no
    longer runs and that were not written to for a while, and nothing else."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()  # its pid now names no process
    dead, alive = proc.pid, 1
    old = time.time() - io_utils.STALE_TEMP_S - 60
    kept = [
        f".f.bin.{alive}.k3j2x9_a.tmp",
        f".f.bin.{os.getpid()}.q8w7e6r5.tmp",  # this process's (another thread's write)
        ".f.bin.k3j2x9_a.tmp",  # no pid: its writer is unknown
        f".f.bin.x.{dead}.k3j2x9_a.tmp",  # of the target f.bin.x
        f".g.bin.{dead}.k3j2x9_a.tmp",
        f"f.bin.{dead}.k3j2x9_a.tmp",
    ]
    for name in [*kept, f".f.bin.{dead}.k3j2x9_a.tmp"]:
        (tmp_path / name).write_bytes(b"partial")
        os.utime(tmp_path / name, (old, old))
    recent = f".f.bin.{dead}.z9y8x7w6.tmp"  # perhaps another machine's write in progress
    (tmp_path / recent).write_bytes(b"partial")
    atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, recent, "f.bin"])
