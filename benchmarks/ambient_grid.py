"""The comparison grid of docs/ambient.md from the runs of ``benchmarks/ambient.sh``.

One row per image set, one column per digit class (the same z in every generator row): the
clean digits, the run trained on them, and for each measurement family the measured data
followed by the EMA samples of the ambient, ignore and unmeasure runs (a run that has no
checkpoint yet is left out). Row labels are drawn on the left.
Usage: ``python benchmarks/ambient_grid.py OUT_DIR docs/ambient_grid.png``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import gankit
from gankit.config import DataConfig
from gankit.data import load_dataset, read_measured, to_uint8
from gankit.generation import make_grid

N_CLASSES = 10
FAMILIES = (("bp", "block_pixels_p_0.5"), ("cn", "conv_noise_sigma_1_noise_0.4"))  # as ambient.sh
LABEL_WIDTH = 150
SCALE = 2  # pixel repeat of the 28x28 tiles


def first_per_class(x: np.ndarray, y: np.ndarray) -> torch.Tensor:
    """uint8 ``(10, C, H, W)``: the first image of every class (float measurements clipped)."""
    picked = torch.from_numpy(np.stack([x[np.flatnonzero(y == c)[0]] for c in range(N_CLASSES)]))
    return picked if picked.dtype == torch.uint8 else to_uint8(picked.clamp(-1, 1))


def samples(run: Path, z: torch.Tensor) -> torch.Tensor:
    G = gankit.load(run)
    with torch.no_grad():
        return to_uint8(G(z, torch.arange(N_CLASSES)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path, help="OUT_DIR of benchmarks/ambient.sh")
    p.add_argument("png", type=Path)
    args = p.parse_args()
    runs, data = args.out_dir / "runs", args.out_dir / "data"
    clean = load_dataset(DataConfig(), 28, 1)
    trained = sorted(r for r in runs.iterdir() if any((r / "checkpoints").glob("step_*")))
    dim_z = gankit.load(trained[0]).dim_z
    z = torch.randn(N_CLASSES, dim_z, generator=torch.Generator().manual_seed(0))
    rows = [("clean digits", first_per_class(clean.x, clean.y))]
    if runs / "clean" in trained:
        rows.append(("clean: GAN", samples(runs / "clean", z)))
    for prefix, npz in FAMILIES:
        measured = read_measured(data / f"{npz}.npz")
        family = measured.measurement.split(":")[0]
        rows.append((f"{family}: data", first_per_class(measured.x, measured.y)))
        for mode in ("ambient", "ignore", "unmeasure"):
            if runs / f"{prefix}_{mode}" in trained:
                rows.append((f"{family}: {mode}", samples(runs / f"{prefix}_{mode}", z)))
    grid = make_grid(torch.cat([r for _, r in rows]), N_CLASSES)[..., 0]
    grid = np.kron(grid, np.ones((SCALE, SCALE), dtype=np.uint8))
    img = Image.new("L", (grid.shape[1] + LABEL_WIDTH, grid.shape[0]), 255)
    img.paste(Image.fromarray(grid), (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(img)
    tile = (28 + 2) * SCALE
    for i, (label, _) in enumerate(rows):
        draw.text((4, 2 * SCALE + i * tile + tile // 2 - 6), label, fill=0)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    img.save(args.png, optimize=True)
    print(args.png)


if __name__ == "__main__":
    main()
