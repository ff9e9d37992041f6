"""Data cache benchmark: memory and speed of building ``data.cache`` from a JPEG folder, of a
start from the finished cache, and of the loader reading it.

Generates (once) a folder of synthetic class-structured JPEGs outside the repository, then runs
every measurement in a fresh process and prints one JSON line per measurement:

- ``build``: :func:`gankit.data.build_cache` with ``--workers`` 1 and 2 (images/s, seconds);
- ``build-old`` (with ``--old-src``, e.g. ``/work/main/src``): another checkout's
  ``load_dataset(data.cache=...)`` as the before-and-after baseline;
- ``start``: ``load_dataset`` with the finished cache (the second start of ``gankit train``);
- ``memory``: ``load_dataset`` of the folder without a cache (decoded into memory);
- ``loader``: :func:`gankit.data.loader_throughput` on a cache at ``--loader-resolution``.

``cpu_s`` is the CPU time (user + system) of the process and its workers, import included:
on a shared machine it is steadier than the wall-clock speed, which follows the load.
Memory: ``main_peak_GiB`` is the measured process's own peak RSS (``getrusage``),
``worker_peak_GiB`` the largest decoding process's, and ``tree_peak_pss_GiB`` the peak over
time of the summed proportional set size of the process and its workers (sampled every 20 ms
from ``/proc/PID/smaps_rollup``; PSS splits pages shared after ``fork`` between the processes
instead of counting them once per process); ``tree_peak_pss_anon_GiB`` is its anonymous part
(heap, arrays), without file-backed pages such as mapped libraries or a memory-mapped cache,
which the kernel can drop and re-read. Usage::

    python benchmarks/data_cache.py --root /tmp/jpegs --n 20000 [--old-src /work/main/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = 10
GiB = 2**30

CHILD = r"""
import json, os, resource, sys, time
t0 = time.perf_counter()
from gankit.config import DataConfig
from gankit.data import load_dataset
t_import = time.perf_counter()
kind, src, res, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
result = {}
if kind == "build":
    from gankit.data import build_cache
    ds = build_cache(src, res, 3, out, workers=int(workers), quiet=True)
elif kind == "loader":
    from gankit.data import build_cache, loader_throughput
    ds = build_cache(src, res, 3, out, workers=int(workers), quiet=True)
    t_import = time.perf_counter()
    result["loader_imgs_per_s"] = loader_throughput(ds, 256, "cpu", batches=40, warmup=5)
else:  # build-old, start: through data.cache; memory: no cache
    ds = load_dataset(DataConfig(path=src, cache=out if kind != "memory" else ""), res, 3)
t_done = time.perf_counter()
usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
self_kib, child_kib = usage[0].ru_maxrss, usage[1].ru_maxrss
cpu_s = sum(u.ru_utime + u.ru_stime for u in usage)
result.update(images=len(ds), skipped=ds.skipped, import_s=t_import - t0, cpu_s=cpu_s,
              work_s=t_done - t_import, process_s=t_done - t0,
              main_peak_GiB=self_kib / 2**20, worker_peak_GiB=child_kib / 2**20)
print(json.dumps(result))
"""


def _draw(args: tuple[Path, int, int, int]) -> None:
    """One JPEG: class-coloured gradient background, a class-shaped blob, noise."""
    path, label, index, size = args
    rng = np.random.default_rng(index)
    hue = np.array([(label * 97) % 256, (label * 53 + 80) % 256, (label * 31 + 160) % 256])
    ramp = np.linspace(0.5, 1.0, size)[:, None, None]
    base = (ramp * hue[None, None, :] + rng.normal(0, 12, (size, size, 3))).clip(0, 255)
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    x0, y0 = rng.integers(0, size // 2, 2)
    w, h = rng.integers(size // 4, size // 2, 2)
    colour = tuple(int(v) for v in 255 - hue)
    box = (int(x0), int(y0), int(x0 + w), int(y0 + h))
    (draw.ellipse if label % 2 else draw.rectangle)(box, fill=colour)
    img.save(path, quality=90)


def generate(root: Path, n: int, size: int, processes: int) -> None:
    """``n`` JPEGs of ``size``² in ``root/class_XX/`` (skipped if already there)."""
    marker = root / f".complete-{n}-{size}"
    if marker.exists():
        return
    jobs = []
    for i in range(n):
        label = i % CLASSES
        folder = root / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((folder / f"{i:07d}.jpg", label, i, size))
    with Pool(processes) as pool:
        pool.map(_draw, jobs, chunksize=256)
    marker.touch()


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def _pss_bytes(pids: list[int]) -> tuple[int, int]:
    """Summed ``(Pss, Pss_Anon)`` of ``pids`` in bytes."""
    total = anon = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                    elif line.startswith("Pss_Anon:"):
                        anon += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total, anon


def run(kind: str, src: Path, res: int, out: Path, workers: int, pythonpath: str) -> dict:
    """Run one measurement in a fresh process; add the sampled tree PSS peak and load."""
    env = {**os.environ, "PYTHONPATH": pythonpath}
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    argv = [sys.executable, "-c", CHILD, kind, str(src), str(res), str(out), str(workers)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = peak_anon = 0
    while proc.poll() is None:
        pss, anon = _pss_bytes(_tree(proc.pid))
        peak, peak_anon = max(peak, pss), max(peak_anon, anon)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{stderr.decode()}")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    result.update(kind=kind, resolution=res, workers=workers, wall_s=wall,
                  tree_peak_pss_GiB=peak / GiB, tree_peak_pss_anon_GiB=peak_anon / GiB,
                  loadavg_before=load_before,
                  loadavg_after=os.getloadavg()[0])  # fmt: skip
    if kind.startswith("build") or kind == "memory":
        result["imgs_per_s"] = result["images"] / result["work_s"]
    return result


def _remove_cache(out: Path) -> None:
    for p in out.parent.glob(out.stem + ".*"):
        p.unlink()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/gankit-jpegs"), help="JPEG folder")
    p.add_argument("--n", type=int, default=20000, help="number of JPEGs")
    p.add_argument("--size", type=int, default=64, help="JPEG side length")
    p.add_argument("--caches", type=Path, default=Path("/tmp/gankit-caches"))
    p.add_argument("--old-src", default=None, help="PYTHONPATH of a baseline checkout")
    p.add_argument("--loader-resolution", type=int, default=128)
    p.add_argument("--only", default="build-old,build,start,memory,loader")
    p.add_argument("--workers", default="1,2", help="worker counts of the build runs")
    args = p.parse_args()
    new_src = str(Path(__file__).resolve().parents[1] / "src")
    root = args.root / f"n{args.n}"
    generate(root, args.n, args.size, os.cpu_count() or 1)
    args.caches.mkdir(parents=True, exist_ok=True)
    only = args.only.split(",")
    res = args.size
    if "build-old" in only and args.old_src:
        out = args.caches / "old.npy"
        _remove_cache(out)
        print(json.dumps(run("build-old", root, res, out, 0, args.old_src)), flush=True)
        _remove_cache(out)
    out = args.caches / "new.npy"
    if "build" in only:
        for workers in (int(w) for w in args.workers.split(",")):
            _remove_cache(out)
            print(json.dumps(run("build", root, res, out, workers, new_src)), flush=True)
    if "start" in only:
        for _ in range(2):
            print(json.dumps(run("start", root, res, out, 0, new_src)), flush=True)
    if "memory" in only:
        print(json.dumps(run("memory", root, res, out, 0, new_src)), flush=True)
    if "loader" in only:
        out = args.caches / f"r{args.loader_resolution}.npy"
        print(json.dumps(run("loader", root, args.loader_resolution, out, 2, new_src)))


if __name__ == "__main__":
    main()
