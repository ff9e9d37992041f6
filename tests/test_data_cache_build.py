"""Streaming cache build (gankit.data.build_cache), Prefetcher, loader throughput, data CLI.

Every cache is compared bitwise with the independent in-memory folder load; interruptions are
simulated by an exception in the middle and by SIGKILL of a subprocess.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import gankit.data.cache_build as cache_build
import gankit.data.folder as folder
import gankit.data.loader as loader
from gankit.bench import benchmark
from gankit.cli import main
from gankit.config import DataConfig
from gankit.data import BatchSampler, ImageDataset, Prefetcher, build_cache, load_dataset
from gankit.data.cache import load_cache, lock_path
from gankit.data.cache_build import progress_path
from gankit.data.cache_writer import partial_path
from gankit.data.folder import load_image_folder
from gankit.errors import GankitError

RES = 8
CHUNK = 4  # images per chunk in these tests (set through folder.CHUNK_BYTES)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(folder, "CHUNK_BYTES", CHUNK * 3 * RES * RES)


def make_folder(root: Path, counts=(7, 5, 6), seed=0) -> Path:
    """Class folders of tiny random images: PNG and JPEG, RGB and grey, odd sizes."""
    rng = np.random.default_rng(seed)
    for c, n in enumerate(counts):
        for i in range(n):
            path = root / f"class{c}" / f"{i:02d}.{'jpg' if i % 3 == 0 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            h, w = 9 + i % 4, 11 + c
            shape = (h, w) if i % 4 == 1 else (h, w, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return root


def reference(src: Path, skip_bad: bool = False, res: int = RES) -> ImageDataset:
    """The in-memory load, decoded in this process."""
    return load_image_folder(src.resolve(), res, 3, skip_bad, workers=1, quiet=True)


def assert_same(ds: ImageDataset, ref: ImageDataset) -> None:
    assert np.asarray(ds.x).dtype == np.uint8 and ds.x.shape == ref.x.shape
    np.testing.assert_array_equal(np.asarray(ds.x), ref.x)
    np.testing.assert_array_equal(ds.y, ref.y)
    assert (ds.class_names, ds.skipped, ds.source) == (ref.class_names, ref.skipped, ref.source)


def leftovers(out: Path) -> list[str]:
    names = (p.name for p in out.parent.iterdir())
    return sorted(n for n in names if ".partial" in n or n.endswith(".tmp"))


@pytest.mark.parametrize("suffix", [".npy", ".h5"])
def test_streamed_cache_equals_in_memory_bitwise(tmp_path, suffix):
    if suffix == ".h5":
        pytest.importorskip("h5py")
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "cache" / f"c{suffix}"
    ds = build_cache(src, RES, 3, out, workers=2, quiet=True)  # 5 chunks over 2 processes
    ref = reference(src)
    assert_same(ds, ref)
    assert isinstance(ds.x, np.memmap) == (suffix == ".npy")
    assert leftovers(out) == []
    again = load_dataset(DataConfig(path=str(src), cache=str(out)), RES, 3)  # reused as is
    assert_same(again, ref)
    if suffix == ".npy":
        meta = json.loads((out.parent / "c.meta.json").read_text())
        assert meta["images"] == meta["files"] == 18 and meta["skipped_files"] == []
        assert (meta["resolution"], meta["channels"]) == (RES, 3)
        np.testing.assert_array_equal(np.load(out.parent / "c.labels.npy"), ref.y)


def _failing_after(monkeypatch, chunks: int, action) -> list[int]:
    """Make the build's decoder run ``action()`` before chunk ``chunks``; returns a list that
    counts the chunks decoded."""
    real, decoded = folder.decode_chunks, []

    def decode(*args, **kw):
        for result in real(*args, **kw):
            if len(decoded) == chunks:
                action()
            decoded.append(1)
            yield result

    monkeypatch.setattr(cache_build, "decode_chunks", decode)
    return decoded


def test_interrupted_build_is_detected_and_resumed(tmp_path, monkeypatch, caplog):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "c.npy"

    def interrupt():
        raise KeyboardInterrupt

    _failing_after(monkeypatch, 2, interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_cache(src, RES, 3, out, workers=1, quiet=True)
    progress = json.loads(progress_path(out).read_text())
    assert (progress["chunks_done"], progress["written"]) == (2, 2 * CHUNK)
    assert out.exists() is False and partial_path(out).exists()
    assert load_cache(out, RES, 3, str(src.resolve())) is None  # never looks complete

    decoded = _failing_after(monkeypatch, -1, None)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset(DataConfig(path=str(src), cache=str(out)), RES, 3)
    assert "resuming an interrupted build at file 8 of 18" in caplog.text
    assert len(decoded) == 3  # only chunks 3..5 of 5 were decoded again
    assert_same(ds, reference(src))
    assert leftovers(out) == []


def _killed_build_script(src: Path, out: Path, kill_at: int, workers: int, sleep: float) -> str:
    """A build of ``src`` into ``out`` that SIGKILLs itself when chunk ``kill_at`` is done,
    each chunk taking at least ``sleep`` seconds to decode."""
    return textwrap.dedent(
        f"""
        import os, signal, time
        import gankit.data.cache_build as cb
        import gankit.data.folder as folder
        folder.CHUNK_BYTES = {CHUNK * 3 * RES * RES}
        cb.PROGRESS_EVERY_S = 0.0
        real_chunk, real_chunks = folder.decode_chunk, cb.decode_chunks
        def slow_chunk(*args):
            time.sleep({sleep})
            return real_chunk(*args)
        folder.decode_chunk = slow_chunk
        def decode(*args, **kw):
            for k, result in enumerate(real_chunks(*args, **kw)):
                if k == {kill_at}:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield result
        cb.decode_chunks = decode
        cb.build_cache({str(src)!r}, {RES}, 3, {str(out)!r}, workers={workers}, quiet=True)
        """
    )


def test_killed_build_subprocess_is_resumed(tmp_path, caplog):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "c.npy"
    script = _killed_build_script(src, out, kill_at=3, workers=1, sleep=0)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert not out.exists() and partial_path(out).exists()
    assert json.loads(progress_path(out).read_text())["chunks_done"] == 3
    with caplog.at_level(logging.WARNING):
        ds = build_cache(src, RES, 3, out, workers=2, quiet=True)
    assert "resuming an interrupted build at file 12 of 18" in caplog.text
    assert_same(ds, reference(src))


def _processes_running(marker: str) -> list[int]:
    """Pids of the live processes whose command line contains ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:  # it ended meanwhile
            pass
    return pids


@pytest.mark.skipif(sys.platform != "linux", reason="/proc and prctl")
def test_killed_parallel_build_leaves_no_workers(tmp_path, caplog):
    """SIGKILL of a build decoding in 2 worker processes: they die with it (forked, their
    command line is its own, naming ``out``), so none keeps the cache's lock."""
    import fcntl  # (Linux)

    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "c.npy"
    # killed while the workers decode chunks 2 and 3
    script = _killed_build_script(src, out, kill_at=1, workers=2, sleep=0.5)
    with open(tmp_path / "stderr", "wb") as stderr:  # not a pipe: orphans would hold it open
        proc = subprocess.Popen([sys.executable, "-c", script], stderr=stderr)
    try:
        assert proc.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "stderr").read_text()
        for _ in range(50):
            if not _processes_running(str(out)):
                break
            time.sleep(0.1)
        assert _processes_running(str(out)) == []
    finally:
        for pid in _processes_running(str(out)):
            os.kill(pid, signal.SIGKILL)
    with open(lock_path(out), "a+b") as lock:
        # a killed process's memory goes before its files: its command line reads empty a
        # moment before its lock is released, so allow the kernel that moment
        for _ in range(50):
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.1)
        else:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: still held
        fcntl.flock(lock, fcntl.LOCK_UN)
    with caplog.at_level(logging.WARNING):
        ds = build_cache(src, RES, 3, out, workers=2, quiet=True)
    assert "resuming an interrupted build at file 4 of 18" in caplog.text
    assert_same(ds, reference(src))


def _as_worker(parent: str, then: str) -> subprocess.CompletedProcess:
    """A process that runs the decoding workers' set-up as if forked by pid ``parent`` (a
    Python expression), then ``then``."""
    script = "import os, signal\nfrom gankit.data.folder import _init_worker\n"
    script += f"_init_worker({parent})\n{then}\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)


@pytest.mark.skipif(sys.platform != "linux", reason="prctl")
def test_worker_whose_parent_is_gone_exits_at_once():
    """A worker forked just before its parent died (so that prctl came too late) ends."""
    proc = _as_worker("os.getpid()", "print('still running')")  # not its parent
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr


def test_interrupted_build_of_other_files_starts_over(tmp_path, monkeypatch, caplog):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "c.npy"

    def interrupt():
        raise RuntimeError("power cut")

    _failing_after(monkeypatch, 2, interrupt)
    with pytest.raises(RuntimeError):
        build_cache(src, RES, 3, out, workers=1, quiet=True)
    make_folder(tmp_path / "more", counts=(1,), seed=5)
    os.replace(tmp_path / "more" / "class0" / "00.jpg", src / "class1" / "99.jpg")
    decoded = _failing_after(monkeypatch, -1, None)
    with caplog.at_level(logging.WARNING):
        ds = build_cache(src, RES, 3, out, workers=1, quiet=True)
    assert "discarding an interrupted build" in caplog.text and len(decoded) == 5
    assert_same(ds, reference(src))
    assert len(ds) == 19


def test_damaged_partial_file_starts_over(tmp_path, monkeypatch, caplog):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "c.npy"

    def interrupt():
        raise KeyboardInterrupt

    _failing_after(monkeypatch, 1, interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_cache(src, RES, 3, out, workers=1, quiet=True)
    partial_path(out).write_bytes(b"\x93NUMPY truncated")
    monkeypatch.undo()
    monkeypatch.setattr(folder, "CHUNK_BYTES", CHUNK * 3 * RES * RES)
    with caplog.at_level(logging.WARNING):
        ds = build_cache(src, RES, 3, out, workers=1, quiet=True)
    assert "cannot resume the interrupted build" in caplog.text
    assert_same(ds, reference(src))


def test_cache_of_other_resolution_is_rebuilt(tmp_path, caplog):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "c.npy"
    build_cache(src, RES, 3, out, workers=1, quiet=True)
    with caplog.at_level(logging.INFO):
        ds = build_cache(src, 12, 3, out, workers=1, quiet=True)
    assert "rebuilding" in caplog.text
    assert_same(ds, reference(src, res=12))
    grey = load_dataset(DataConfig(path=str(src), cache=str(out)), RES, 1)
    assert grey.x.shape == (18, 1, RES, RES)
    assert json.loads((tmp_path / "c.meta.json").read_text())["channels"] == 1


def test_corrupt_file_named_then_skipped_and_counted(tmp_path, caplog):
    src = make_folder(tmp_path / "imgs")
    (src / "class1" / "04.png").write_bytes(b"\x89PNG not really")  # file 11 of 0..17: chunk 2
    out = tmp_path / "c.npy"
    with pytest.raises(GankitError, match=r"class1[/\\]04\.png: not a readable image.*--skip-bad"):
        build_cache(src, RES, 3, out, workers=2, quiet=True)
    assert not out.exists()
    assert json.loads(progress_path(out).read_text())["chunks_done"] == 2
    with caplog.at_level(logging.WARNING):
        ds = build_cache(src, RES, 3, out, skip_bad=True, workers=1, quiet=True)
    assert "resuming" in caplog.text and "skipped 1 unreadable file(s)" in caplog.text
    ref = reference(src, skip_bad=True)
    assert ref.skipped == 1 and len(ref) == 17
    assert_same(ds, ref)
    meta = json.loads((tmp_path / "c.meta.json").read_text())
    assert (meta["skipped"], meta["skipped_files"], meta["images"]) == (1, ["class1/04.png"], 17)
    assert np.load(out, mmap_mode="r").shape == (17, 3, RES, RES)  # header shrunk in place


def test_dangling_link_is_a_bad_file_like_any_other(tmp_path):
    """A link to nothing is named without ``--skip-bad`` and skipped with it."""
    src = make_folder(tmp_path / "imgs")
    (src / "class1" / "99.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(GankitError, match=r"class1[/\\]99\.png: .*--skip-bad"):
        build_cache(src, RES, 3, tmp_path / "a.npy", workers=1, quiet=True)
    ds = build_cache(src, RES, 3, tmp_path / "b.npy", skip_bad=True, workers=1, quiet=True)
    assert len(ds) == 18 and ds.skipped == 1


def test_bad_file_recorded_by_skip_run_is_named_without_skip(tmp_path, monkeypatch):
    src = make_folder(tmp_path / "imgs")
    (src / "class0" / "01.png").write_bytes(b"junk")
    out = tmp_path / "c.npy"

    def interrupt():
        raise KeyboardInterrupt

    _failing_after(monkeypatch, 2, interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_cache(src, RES, 3, out, skip_bad=True, workers=1, quiet=True)
    with pytest.raises(GankitError, match=r"class0[/\\]01\.png"):
        build_cache(src, RES, 3, out, workers=1, quiet=True)


def test_build_errors_name_the_parameter(tmp_path):
    src = make_folder(tmp_path / "imgs", counts=(2,))
    cases = [
        ({"resolution": 4}, r"^resolution = 4: .*8\.\.1024"),
        ({"channels": 2}, r"^channels = 2: expected 1"),
        ({"out": tmp_path / "c.zip"}, r"^out = .*c\.zip': expected a file name ending in \.npy"),
        ({"workers": 0}, r"^workers = 0: expected an integer >= 1"),
        ({"src": tmp_path / "nope"}, r"^src = .*nope' does not exist"),
    ]
    for change, message in cases:
        kw = {"src": src, "resolution": RES, "channels": 3, "out": tmp_path / "c.npy", **change}
        with pytest.raises(GankitError, match=message):
            build_cache(**kw, quiet=True)


def test_build_refuses_a_cache_that_cannot_fit_on_disk(tmp_path, monkeypatch):
    src = make_folder(tmp_path / "imgs")
    monkeypatch.setattr(cache_build.shutil, "disk_usage", lambda _: SimpleNamespace(free=1000))
    with pytest.raises(GankitError, match=r"c\.npy': the cache needs [\d.]+ MB, only 0\.00 MB"):
        build_cache(src, RES, 3, tmp_path / "c.npy", workers=1, quiet=True)
    assert leftovers(tmp_path / "c.npy") == []


def test_in_memory_sources_are_cached_too(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (11, 3, RES, RES), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(11) % 2)
    ds = build_cache(tmp_path / "d.npz", RES, 3, tmp_path / "c.npy", quiet=True)
    assert isinstance(ds.x, np.memmap)
    np.testing.assert_array_equal(ds.x, x)
    assert ds.y.tolist() == (np.arange(11) % 2).tolist() and ds.n_classes == 2


def test_concurrent_builds_decode_once(tmp_path, monkeypatch):
    src = make_folder(tmp_path / "imgs")
    out = tmp_path / "c.npy"
    decoded = _failing_after(monkeypatch, -1, None)
    results: list[ImageDataset] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(build_cache(src, RES, 3, out, workers=1, quiet=True))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and len(decoded) == 5  # the second waited and reused the cache
    for ds in results:
        assert_same(ds, reference(src))


def test_large_folder_without_cache_hints_once(tmp_path, monkeypatch, caplog):
    src = make_folder(tmp_path / "imgs", counts=(3, 2))
    monkeypatch.setattr(loader, "LARGE_FOLDER_IMAGES", 5)
    monkeypatch.setattr(loader, "_hinted", set())
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            load_dataset(DataConfig(path=str(src)), RES, 3)
        load_dataset(DataConfig(path=str(src), cache=str(tmp_path / "c.npy")), RES, 3)
    assert caplog.text.count("data.cache=FILE.npy") == 1


# --- Prefetcher ------------------------------------------------------------------------------


def small_dataset(n=23) -> ImageDataset:
    x = np.random.default_rng(0).integers(0, 256, (n, 3, 4, 4), dtype=np.uint8)
    return ImageDataset(x, np.arange(n) % 3, 3, ["a", "b", "c"], "test")


def test_prefetcher_yields_the_synchronous_batches_in_order():
    ds = small_dataset()
    sync = BatchSampler(ds, 4, torch.Generator().manual_seed(3))
    prefetched = Prefetcher(ds, BatchSampler(ds, 4, torch.Generator().manual_seed(3)), "cpu")
    for _ in range(17):  # 5 batches per epoch: crosses three epoch boundaries
        x_ref, y_ref = ds.batch(next(sync))
        x, y = next(prefetched)
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    prefetched.close()


def test_prefetcher_state_resumes_exactly():
    ds = small_dataset()
    run = Prefetcher(ds, BatchSampler(ds, 4, torch.Generator().manual_seed(3)), "cpu")
    for _ in range(7):
        next(run)
    state = run.state_dict()  # the thread has drawn batches ahead of the consumer
    expected = [next(run) for _ in range(6)]
    resumed = Prefetcher(ds, BatchSampler(ds, 4, torch.Generator()), "cpu")
    resumed.load_state_dict(state)
    for x_ref, y_ref in expected:
        x, y = next(resumed)
        assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
    run.load_state_dict(state)  # a rollback while the thread runs
    assert torch.equal(next(run)[0], expected[0][0])
    run.close()
    resumed.close()
    assert next(iter(run))[1].shape == (4,)  # restarts after close
    run.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefetcher_cuda_batches_equal_the_synchronous_ones():
    ds = small_dataset()
    sync = BatchSampler(ds, 4, torch.Generator().manual_seed(1))
    prefetched = Prefetcher(ds, BatchSampler(ds, 4, torch.Generator().manual_seed(1)), "cuda")
    for _ in range(9):
        x_ref, y_ref = ds.batch(next(sync))
        x, y = next(prefetched)
        assert x.is_cuda and y.is_cuda
        assert torch.equal(x.cpu(), x_ref) and torch.equal(y.cpu(), y_ref)
    prefetched.close()


def test_prefetcher_thread_stops_on_close_and_on_garbage_collection():
    ds = small_dataset()
    prefetched = Prefetcher(ds, BatchSampler(ds, 4, torch.Generator()), "cpu")
    next(prefetched)
    thread = prefetched._thread
    assert thread.is_alive()
    prefetched.close()
    assert not thread.is_alive()
    next(prefetched)
    thread = prefetched._thread
    del prefetched
    gc.collect()
    assert not thread.is_alive()  # joined by the finalizer (which also runs at exit)


def test_prefetcher_raises_errors_of_the_thread():
    ds = small_dataset()

    class Broken(ImageDataset):
        def batch(self, indices):
            raise OSError("disk gone")

    broken = Broken(ds.x, ds.y, 3, ds.class_names, "broken")
    loader_ = Prefetcher(broken, BatchSampler(broken, 4, torch.Generator()), "cpu")
    with pytest.raises(OSError, match="disk gone"):
        next(loader_)


# --- CLI and bench ---------------------------------------------------------------------------


def test_cli_data_build(tmp_path, capsys):
    src = make_folder(tmp_path / "imgs", counts=(3, 2))
    out = tmp_path / "c.npy"
    argv = ["data", "build", str(src), "--resolution", str(RES), "--out", str(out)]
    assert main([*argv, "--workers", "1", "--quiet"]) == 0
    assert "5 images 3x8x8, 2 classes, 0 skipped" in capsys.readouterr().out
    assert_same(load_dataset(DataConfig(path=str(out)), RES, 3), reference(src))
    assert main(["data", "build", str(src), "--resolution", "4", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().startswith("gankit: error: resolution = 4:")
    argv = ["data", "build", str(src), "--resolution", str(RES), "--out"]
    assert main([*argv, ""]) == 2
    assert capsys.readouterr().err == (
        "gankit: error: --out: expected a cache file path (.npy, .h5 or .hdf5), got an empty path\n"
    )
    (tmp_path / "dir.npy").mkdir()
    assert main([*argv, str(tmp_path / "dir.npy")]) == 2
    err = capsys.readouterr().err
    assert err.endswith("dir.npy': is a folder; expected a cache file to write\n")
    assert [p.name for p in tmp_path.glob(".dir.npy*")] == []  # no lock left beside it


def test_bench_data_times_real_loading(tmp_path, one_thread):
    x = np.random.default_rng(2).integers(0, 256, (16, 1, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(16) % 10)
    cache = tmp_path / "c.npy"
    build_cache(tmp_path / "d.npz", 28, 1, cache, quiet=True)
    tiny = ["model.G_ch=4", "model.D_ch=4", "model.dim_z=8"]
    result = benchmark("dcgan-mnist", "cpu", steps=1, warmup=0, overrides=tiny, batch_size=4,
                           data=str(cache))  # fmt: skip
    assert result["data"] == str((tmp_path / "d.npz").resolve())
    assert result["loader_imgs_per_s"] > 0 and result["s_per_iter"] > 0


def test_a_stop_signal_while_the_pool_forks_is_acted_on_after():
    """SIGINT while the decoding pool forks (where Python would drop the KeyboardInterrupt its
    handler raises) is held and raised right after the forks, not lost."""
    seen = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even in a background job
    try:
        with pytest.raises(KeyboardInterrupt):
            with folder._stop_signals_held():
                signal.raise_signal(signal.SIGINT)
                seen.append("still running")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == ["still running"]


@pytest.mark.skipif(sys.platform != "linux", reason="prctl")
def test_workers_leave_stop_signals_to_the_parent():
    """A job's SIGTERM to its whole process group must not kill the decoding workers (the pool
    would break mid-stop): they ignore SIGINT and SIGTERM; the parent stops them."""
    proc = _as_worker(
        "os.getppid()", "print({signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)})"
    )
    assert proc.stdout.strip() == "{<Handlers.SIG_IGN: 1>}", proc.stderr
